"""D's training, decoupled from M's step: a replay buffer of M's windows, k updates per step,
real batches of their own size, optional R1 and negative data augmentation, and a warm start.

One D update (``DTrainer.d_step``), LSGAN (Eq. 4) with two optional terms:

    L_D = E_real[(1 - D(x))^2] + (1 - a) E_M[D(y)^2] + a E_NDA[(D(P(x')) - t)^2] + r1/2 E_real[|dD/dx|^2]

- real x: encoded windows of the real motion source (never corrupted: ``real_windows``);
- M's y: this step's predicted windows and, with ``replay`` > 0, windows drawn from a buffer of
  M's recent predictions (``ReplayBuffer``, refreshed with every step's windows);
- NDA (Sinha et al., ICLR 2021; weight ``a = nda``): real windows corrupted in time (jitter,
  bone-length noise, shuffled / reversed frames, time warps; ``nda_kinds``) shown to D as fake,
  so that its boundary runs close to real motion instead of around a coarse pose prior. Their
  target t is 0 (the paper's fake label) unless ``nda_graded`` g > 0: then a jitter / bone
  corruption drawn at log-position u in its range (0 mildest, 1 strongest) gets t = g (1 - u), so
  D's score falls with the amount instead of saturating at 0 for every corruption it can see;
- R1 (``r1`` > 0): the gradient penalty on real windows.
D's rotation augmentation is applied alike to every window it sees.

The warm start (``warm_start``): before joint training, D trains alone against the frozen
pre-trained M's predicted windows (``predicted_windows``, computed once), until its validation
objective stops improving (``patience`` evaluations without a gain of ``min_delta``) or
``warm_steps``; its steps and curve are recorded.

Everything random (batch draws, NDA, augmentation) comes from the trainer's own generator,
which, with the buffer and D's optimiser, is in ``state_dict``: exact resume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from handlib.analysis.diagnostics import perturb_windows
from handlib.data.datasets import images_to_tensor, window_starts
from handlib.models.motion import MotionDiscriminator, augment_windows, encode_motion, encode_real

NDA_KINDS = ("jitter", "bone", "shuffle", "reverse", "warp")
# per kind: the range of amounts one NDA group draws from (log-uniform; mm, %, or warp strength)
NDA_RANGES = {"jitter": (1.0, 10.0), "bone": (1.0, 10.0), "shuffle": (0.0, 0.0), "reverse": (0.0, 0.0),
              "warp": (1.0, 1.0)}
NDA_SCALED = ("jitter", "bone")  # the kinds whose range ``nda_scale`` multiplies (amounts in mm, %)


@dataclass(frozen=True)
class DTrainConfig:
    """D's training settings; built by ``AdversarialConfig.d_train_config`` (defaults live there)."""
    lr: float
    beta1: float
    weight_decay: float
    grad_clip: float
    updates: int  # k D updates per M step
    real_batch: int  # real windows per D update
    fake_batch: int  # M's windows per D update (this step's + replayed)
    replay: int  # buffer capacity in windows; 0 = this step's windows only
    r1: float
    nda: float  # a: weight of the NDA fakes in the fake term
    nda_kinds: tuple[str, ...]
    augment: bool
    representation: str
    center: bool
    warm_steps: int
    warm_eval_every: int
    warm_patience: int
    warm_min_delta: float = 0.005
    nda_scale: float = 1.0  # multiplies the jitter / bone ranges of NDA_RANGES (e.g. 3: jitter 3-30 mm)
    nda_graded: float = 0.0  # g: NDA target g (1 - u) for a jitter / bone amount at log-position u; 0 = all 0

    def __post_init__(self):
        if bad := sorted(set(self.nda_kinds) - set(NDA_KINDS)):
            raise ValueError(f"DTrainConfig.nda_kinds: {bad} not in {NDA_KINDS}")
        if self.nda > 0 and not self.nda_kinds:
            raise ValueError("DTrainConfig: nda > 0 needs at least one of nda_kinds")
        if self.nda_scale <= 0:
            raise ValueError(f"DTrainConfig.nda_scale: {self.nda_scale} must be > 0")
        if not 0.0 <= self.nda_graded < 1.0:
            raise ValueError(f"DTrainConfig.nda_graded: {self.nda_graded} must be in [0, 1)")


class ReplayBuffer:
    """A ring buffer of M's encoded windows (capacity, S, 21, 3), on the CPU.

    ``push`` writes a batch over the oldest entries; ``sample`` draws uniformly (with replacement)
    from the filled part with a given generator. Its state (contents, write position, fill) is
    in ``state_dict``."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity {capacity} must be >= 1")
        self.capacity, self.data, self.ptr, self.count = capacity, None, 0, 0

    def __len__(self) -> int:
        return self.count

    def push(self, x: Tensor) -> None:
        x = x.detach().float().cpu()
        if self.data is None:
            self.data = torch.zeros(self.capacity, *x.shape[1:])
        if x.shape[1:] != self.data.shape[1:]:
            raise ValueError(f"ReplayBuffer.push: windows {tuple(x.shape[1:])} vs {tuple(self.data.shape[1:])}")
        x = x[-self.capacity:]
        idx = (self.ptr + torch.arange(len(x))) % self.capacity
        self.data[idx] = x
        self.ptr = int((self.ptr + len(x)) % self.capacity)
        self.count = min(self.count + len(x), self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self.count == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        return self.data[torch.randint(self.count, (n,), generator=generator)]

    def state_dict(self) -> dict[str, Any]:
        return {"data": None if self.data is None else self.data[:self.count].clone(), "ptr": self.ptr,
                "count": self.count, "capacity": self.capacity}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if st["capacity"] != self.capacity:
            raise ValueError(f"ReplayBuffer: checkpoint capacity {st['capacity']} != {self.capacity}")
        self.ptr, self.count = int(st["ptr"]), int(st["count"])
        self.data = None
        if st["data"] is not None:
            self.data = torch.zeros(self.capacity, *st["data"].shape[1:])
            self.data[:self.count] = st["data"]


def nda_windows(j3d: Tensor, kinds: tuple[str, ...], generator: torch.Generator, scale: float = 1.0,
                with_severity: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Real windows j3d (B, S, 21, 3) mm corrupted in time: split into ``len(kinds)`` groups in
    order, group i perturbed by ``kinds[i]`` with an amount drawn log-uniformly from
    ``NDA_RANGES`` (times ``scale`` for the kinds of ``NDA_SCALED``). A new tensor: the input
    (the real batch) is never modified. ``with_severity``: also each window's severity (B,), the
    amount's log-position u in its range (0 mildest, 1 strongest) for the kinds of ``NDA_SCALED``,
    1 for the others (a shuffled or reversed window has no milder version)."""
    out, sev, groups = [], [], torch.tensor_split(torch.arange(len(j3d)), len(kinds))
    for kind, idx in zip(kinds, groups):
        if not len(idx):
            continue
        lo, hi = (scale * r for r in NDA_RANGES[kind]) if kind in NDA_SCALED else NDA_RANGES[kind]
        u = float(torch.rand((), generator=generator))
        amount = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if lo > 0 else 0.0
        out.append(perturb_windows(j3d[idx].double(), kind, amount, generator).to(j3d.dtype))
        sev.append(torch.full((len(idx),), u if kind in NDA_SCALED and hi > lo else 1.0))
    windows = torch.cat(out)
    return (windows, torch.cat(sev)) if with_severity else windows


def r1_penalty(D: MotionDiscriminator, x: Tensor) -> tuple[Tensor, Tensor]:
    """(D(x) (B,), mean over windows of |dD/dx|^2) for real windows x (B, S, 21, 3)."""
    x = x.detach().requires_grad_(True)
    s = D(x)
    (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    return s, g.pow(2).flatten(1).sum(1).mean()


class DTrainer:
    """D with its own optimiser (AdamW, constant lr), generator and replay buffer."""

    def __init__(self, D: MotionDiscriminator, cfg: DTrainConfig, seed: int = 0):
        self.D, self.cfg = D, cfg
        self.opt = torch.optim.AdamW(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999),
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(seed * 1_000_003 + 29)
        self.buffer = ReplayBuffer(cfg.replay) if cfg.replay > 0 else None

    # -- state for exact resume
    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "buffer": self.buffer.state_dict() if self.buffer is not None else None}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.opt.load_state_dict(st["opt"])
        self.gen.set_state(st["gen"])
        if self.buffer is not None and st.get("buffer") is not None:
            self.buffer.load_state_dict(st["buffer"])

    # -- batches
    def augment(self, x: Tensor) -> Tensor:
        return augment_windows(x, self.gen) if self.cfg.augment else x

    def real_windows(self, j3d: Tensor, K: Tensor) -> Tensor:
        """Real windows (B, S, 21, 3) mm -> D's encoded input (no corruption, ever)."""
        return encode_real(j3d, K, self.cfg.representation, self.cfg.center)

    def nda_fakes(self, j3d: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
        """Corrupted copies of real windows, encoded: fakes for the NDA term, with their LSGAN
        targets (B,): 0, or ``nda_graded`` (1 - severity) (module docstring)."""
        bad, sev = nda_windows(j3d, self.cfg.nda_kinds, self.gen, self.cfg.nda_scale, with_severity=True)
        return encode_real(bad, K, self.cfg.representation, self.cfg.center), self.cfg.nda_graded * (1 - sev)

    def fake_windows(self, fresh: Tensor | None) -> Tensor:
        """M's windows for one update: this step's (detached) plus, with a buffer, replayed ones
        up to ``fake_batch``."""
        parts = [] if fresh is None else [fresh.detach().float()]
        n = self.cfg.fake_batch - (0 if fresh is None else len(fresh))
        if self.buffer is not None and len(self.buffer) and n > 0:
            dev = parts[0].device if parts else next(self.D.parameters()).device
            parts.append(self.buffer.sample(n, self.gen).to(dev))
        if not parts:
            raise ValueError("DTrainer.fake_windows: no fresh windows and an empty buffer")
        return torch.cat(parts)

    # -- one update and a step's k updates
    def d_step(self, real_j3d: Tensor, real_K: Tensor, fakes: Tensor) -> dict[str, float]:
        """One D update on real windows (B, S, 21, 3) mm and M's encoded windows ``fakes``."""
        D = self.D
        was = [p.requires_grad for p in D.parameters()]
        D.requires_grad_(True)
        try:
            return self._d_step(real_j3d, real_K, fakes)
        finally:
            for p, w in zip(D.parameters(), was):
                p.requires_grad_(w)

    def _d_step(self, real_j3d: Tensor, real_K: Tensor, fakes: Tensor) -> dict[str, float]:
        cfg, D = self.cfg, self.D
        real = self.augment(self.real_windows(real_j3d, real_K))
        fake = self.augment(fakes.detach())
        if cfg.r1 > 0:
            d_real, r1 = r1_penalty(D, real)
        else:
            d_real, r1 = D(real), None
        d_fake = D(fake)
        loss = ((1 - d_real) ** 2).mean() + (1 - cfg.nda) * (d_fake ** 2).mean()
        logs: dict[str, float] = {}
        if cfg.nda > 0:
            bad, target = self.nda_fakes(real_j3d, real_K)
            d_nda = D(self.augment(bad))
            loss = loss + cfg.nda * ((d_nda - target.to(d_nda)) ** 2).mean()
            logs["d_nda"] = float(d_nda.detach().mean())
        if r1 is not None:
            loss = loss + 0.5 * cfg.r1 * r1
            logs["d_r1"] = float(r1.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(D.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not (torch.isfinite(loss) and torch.isfinite(gn)):
            raise FloatingPointError(f"DTrainer: non-finite D loss {float(loss)} or gradient norm {float(gn)}")
        self.opt.step()
        d_real, d_fake = d_real.detach(), d_fake.detach()
        return {"loss_D": float(loss.detach()), "gradnorm_D": float(gn), "d_real": float(d_real.mean()),
                "d_fake": float(d_fake.mean()),
                "d_acc": 0.5 * float((d_real > 0.5).float().mean() + (d_fake < 0.5).float().mean()), **logs}

    def update(self, real_j3d: Tensor, real_K: Tensor, fresh: Tensor) -> dict[str, float]:
        """A step's ``updates`` D updates: the real batch (updates x real_batch windows) in chunks,
        M's fresh windows (detached) with replayed ones; then the fresh windows join the buffer."""
        chunks = torch.tensor_split(torch.arange(len(real_j3d)), self.cfg.updates)
        logs: list[dict[str, float]] = []
        for idx in chunks:
            if len(idx):
                logs.append(self.d_step(real_j3d[idx], real_K[idx], self.fake_windows(fresh)))
        if self.buffer is not None:
            self.buffer.push(fresh)
        out = {k: float(np.mean([r[k] for r in logs])) for k in logs[0]}
        return out | {"d_updates": float(len(logs))}


# ---------------------------------------------------------------- the warm start
@torch.no_grad()
def predicted_windows(model, store, sequences, S: int, runtime, representation: str, center: bool = False,
                      stride: int = 1, batch_frames: int = 128) -> Tensor:
    """The frozen M's encoded windows (N, S, 21, 3) of ``sequences`` (every window of S
    consecutive frames at ``stride``), predicted once per frame (M in eval mode, its own scale
    prior, as in the adversarial step) from images and intrinsics only (labels are never read)."""
    runs = store.frame_runs(list(sequences))
    starts = window_starts(runs, S, stride)
    if not len(starts):
        return torch.zeros(0, S, 21, 3)
    rows = np.unique((starts[:, None] + np.arange(S)).ravel())
    was = model.training
    model.eval()
    try:
        dev = runtime.device
        j2d, z_rel, z_root = [], [], []
        for i in range(0, len(rows), batch_frames):
            r = rows[i:i + batch_frames]
            img = runtime.images(images_to_tensor(store.images[r]))
            K = torch.from_numpy(store.K[r]).float().to(dev)
            with runtime.autocast():
                out = model(img, K, model.bone_prior.float().expand(len(r)))
            j2d.append(out.j2d.float().cpu())
            z_rel.append(out.z_rel.float().cpu())
            z_root.append(out.z_root.float().cpu())
    finally:
        model.train(was)
    pos = np.searchsorted(rows, starts[:, None] + np.arange(S))  # (N, S) positions in rows
    J2, Z, ZR = (torch.cat(t)[torch.from_numpy(pos)] for t in (j2d, z_rel, z_root))
    K = torch.from_numpy(store.K[starts[:, None] + np.arange(S)]).float()
    return encode_motion(J2, Z, K, model.bone_prior.float().cpu(), representation, z_root=ZR, center=center)


def warm_start(trainer: DTrainer, motion, fakes: Tensor, eval_fn: Callable[[], dict[str, float]] | None = None,
               ) -> dict[str, Any]:
    """D alone against cached predicted windows ``fakes`` (N, S, 21, 3) and real windows of the
    dataset ``motion`` (``__getitems__`` -> j3d, K), ``cfg.warm_steps`` updates at most.

    ``eval_fn()`` (every ``warm_eval_every`` updates) returns validation measures with an
    ``objective`` (higher is better); the warm start stops when it has not improved by
    ``warm_min_delta`` for ``warm_patience`` evaluations. Returns {"steps", "stopped",
    "history": [eval rows with step and mean training logs]}; afterwards the buffer (if any)
    holds a random selection of ``fakes``."""
    cfg, D = trainer.cfg, trainer.D
    dev = next(D.parameters()).device
    hist: list[dict[str, float]] = []
    best, since, step, stopped, acc = -math.inf, 0, 0, "steps", []
    D.train()
    for step in range(1, cfg.warm_steps + 1):
        ri = torch.randint(len(motion), (cfg.real_batch,), generator=trainer.gen).tolist()
        real = motion.__getitems__(ri)
        fi = torch.randint(len(fakes), (cfg.fake_batch,), generator=trainer.gen)
        acc.append(trainer.d_step(real["j3d"].to(dev), real["K"].to(dev), fakes[fi].to(dev)))
        if eval_fn is not None and cfg.warm_eval_every and (step % cfg.warm_eval_every == 0 or step == cfg.warm_steps):
            row = {"step": float(step), **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]}, **eval_fn()}
            D.train()
            acc = []
            hist.append(row)
            if row["objective"] > best + cfg.warm_min_delta:
                best, since = row["objective"], 0
            else:
                since += 1
                if cfg.warm_patience and since >= cfg.warm_patience:
                    stopped = "plateau"
                    break
    if trainer.buffer is not None and len(fakes):
        trainer.buffer.push(fakes[torch.randperm(len(fakes), generator=trainer.gen)[:trainer.buffer.capacity]])
    return {"steps": step, "stopped": stopped, "history": hist}
