"""THE training loop, shared by pre-training and the adversarial stage.

A ``Task`` owns the networks and the losses; the loop owns everything else: AdamW per
named optimiser (each with its own lr scale, betas, weight decay, schedule and clipping:
``optim=``), a learning-rate schedule that is a pure function of the step (``get_lr``),
gradient clipping, bf16 autocast + channels_last, step-indexed data (the batch of step s
of stream n is a pure function of (seed, n, s), so a resumed run sees exactly the batches
it would have seen), periodic evaluation, tqdm progress, atomic checkpoints (modules,
optimisers, step, RNG states, task state, history) every N steps and at the end, exact
resume, and a NaN/inf guard that stops with an error naming the step and leaves the last
good checkpoint in place.

    task.modules      dict name -> nn.Module (saved in checkpoints, moved to the device)
    task.optimised    dict name -> list of parameters; one AdamW each
    task.train_mode() put modules in training mode (and apply the BN phase)
    task.step(batch, step) -> (losses: dict name -> scalar Tensor, logs: dict name -> float)
                      ``losses`` keys are optimiser names. For each key, in the order of the
                      returned dict: zero_grad, backward, clip, step. An optimiser whose key
                      is absent is left alone that step (no zero_grad, no step): e.g. D
                      updated every 2nd step. Two players: return M before D. M's loss graph
                      goes through D's parameters, so D must not be updated before M's
                      backward (in-place update of a tensor the graph saved); D's loss is
                      computed on detached fakes; M's backward also fills D's .grad, which
                      D's own zero_grad clears before D's backward.
    task.evaluate(step) -> dict name -> float   (optional; eval mode is the task's business)
    task.state_dict() / task.load_state_dict(d)  (optional: task-owned state, e.g. the
                      torch.Generator of D's augmentation; saved under "task", restored on resume)
"""
from __future__ import annotations

import math
import os
import platform
import random
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm

from handlib.config import StageConfig, param
from handlib.data.datasets import identity_collate


class NonFiniteError(RuntimeError):
    """A loss or gradient norm became NaN/inf; the message names the step and checkpoint."""


@dataclass(frozen=True)
class LoopParams(StageConfig):
    """The loop's settings a stage takes as its own flat parameters (declared here only; a
    stage config inherits them and restates only its own defaults: ``handlib.config.defaults``)."""

    steps: int = param(1000, range=(1, None))
    lr: float = param(1e-3, range=(0.0, 1.0))
    weight_decay: float = param(1e-4, range=(0.0, 1.0))
    grad_clip: float = param(1.0, range=(0.0, None), help="max grad norm; 0 disables clipping")
    eval_every: int = param(0, range=(0, None), help="0: evaluate at the end only")
    ckpt_every: int = param(0, range=(0, None), help="0: checkpoint at the end only")
    seed: int = param(0, range=(0, None))
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    precision: str = param("auto", choices=("auto", "bf16", "fp32"))
    channels_last: str = param("auto", choices=("auto", "on", "off"))
    num_workers: int = param(0, range=(0, 16))
    progress: bool = param(True)

    def loop_params(self) -> dict[str, Any]:
        """This config's values of the loop's parameters (a ``LoopConfig``'s keyword arguments)."""
        return {k: getattr(self, k) for k in LoopParams.field_names()}


@dataclass(frozen=True)
class WarmupParams(StageConfig):
    """The learning rate's linear warm-up, for a stage that takes it as a parameter."""

    warmup_steps: int = param(0, range=(0, None))


@dataclass(frozen=True)
class LoopConfig(LoopParams, WarmupParams):
    stage = "loop"
    schedule: str = param("cosine", choices=("cosine", "constant"))
    min_lr_ratio: float = param(0.05, range=(0.0, 1.0))
    log_every: int = param(10, range=(1, None))
    resume: bool = param(True, help="continue from <ckpt_dir>/last.pt if it exists")


def get_lr(step: int, cfg: LoopConfig) -> float:
    """Learning rate of (0-based) ``step``: linear warm-up, then constant or cosine decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ---------------------------------------------------------------- per-optimiser settings
OPTIM_KEYS = {"lr_scale", "betas", "weight_decay", "schedule", "grad_clip"}


def optim_settings(names, cfg: LoopConfig, optim: dict[str, dict] | None = None,
                   lr_scale: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Full settings per optimiser name: defaults from ``cfg``, then ``lr_scale``, then ``optim``."""
    optim = {k: dict(v) for k, v in (optim or {}).items()}
    for k, v in (lr_scale or {}).items():
        optim[k] = {"lr_scale": v} | optim.get(k, {})
    if bad := sorted(set(optim) - set(names)):
        raise ValueError(f"optim/lr_scale name(s) {bad} not in task.optimised {list(names)}")
    out = {}
    for k in names:
        o = optim.get(k, {})
        if bad := sorted(set(o) - OPTIM_KEYS):
            raise ValueError(f"optim['{k}']: unknown key(s) {bad}; known: {sorted(OPTIM_KEYS)}")
        s = {"lr_scale": 1.0, "betas": (0.9, 0.999), "weight_decay": cfg.weight_decay,
             "schedule": "loop", "grad_clip": cfg.grad_clip} | o
        if s["schedule"] not in ("loop", "constant"):
            raise ValueError(f"optim['{k}']['schedule'] = {s['schedule']!r}: 'loop' or 'constant'")
        if len(s["betas"]) != 2:
            raise ValueError(f"optim['{k}']['betas'] = {s['betas']}: two floats")
        out[k] = s | {"betas": tuple(float(b) for b in s["betas"])}
    return out


def optim_lr(step: int, cfg: LoopConfig, s: dict[str, Any]) -> float:
    """Learning rate of optimiser settings ``s`` at ``step``: the loop's (``get_lr``) or constant."""
    return (get_lr(step, cfg) if s["schedule"] == "loop" else cfg.lr) * s["lr_scale"]


# ---------------------------------------------------------------- runtime: device, precision
@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    channels_last: bool

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.dtype is not None)

    def images(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) or windows (B, S, 3, H, W) on the device; with channels_last, the
        images (for windows: ``x.flatten(0, 1)``, a view) are channels_last-contiguous."""
        x = x.to(self.device, non_blocking=True)
        if not self.channels_last or x.ndim not in (4, 5):
            return x
        if x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        B, S = x.shape[:2]
        return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (B, S))

    def to(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: (self.images(v) if k in ("image", "images") else v.to(self.device, non_blocking=True))
                if isinstance(v, Tensor) else v for k, v in batch.items()}

    def record(self) -> dict[str, Any]:
        """What a run record says about where it ran. bf16 results are not bit-identical across
        CPU models (or CPU vs GPU), so the record names the processor and torch's version."""
        return {"device": str(self.device), "bf16": self.dtype is not None, "channels_last": self.channels_last,
                "threads": torch.get_num_threads(), "processor": processor_name(self.device),
                "torch": torch.__version__}


def processor_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's model name from /proc/cpuinfo (platform's elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def eval_line(step: int, steps: int, row: dict[str, float], elapsed: float) -> str:
    """One progress line per evaluation: step, elapsed time, the validation errors (mm)."""
    vals = [f"{k[len('eval_val_'):]} {v:.1f}" for k, v in row.items()
            if k.startswith(("eval_val_mpjpe", "eval_val_epe")) and math.isfinite(v)]
    return f"  step {step}/{steps} ({elapsed:.0f} s): val " + (", ".join(vals) or "-")


def bar_postfix(row: dict[str, float], shown: dict[str, str]) -> dict[str, str]:
    """The progress bar's postfix: this step's losses and the latest validation errors (the
    headline ones of `eval_line`, not every metric an evaluation returns). ``shown`` carries
    the last evaluation's values between calls; returns it updated."""
    shown.update({k: f"{v:.4g}" for k, v in row.items() if k.startswith("loss_")})
    shown.update({k[len("eval_"):]: f"{v:.1f}" for k, v in row.items()
                  if k.startswith(("eval_val_mpjpe", "eval_val_epe")) and math.isfinite(v)})
    return shown


def cpu_has_bf16() -> bool:
    """True where the CPU has native bf16 instructions (AVX512-BF16 or AMX) and they are not
    capped away: ``ONEDNN_MAX_CPU_ISA=AVX2`` (with ``ATEN_CPU_CAPABILITY=avx2``) makes a bf16
    machine train as an AVX2-only one would, in fp32, which is how the quick study's sizing
    for such CPUs is measured here."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap not in ("ALL", "DEFAULT") and "BF16" not in cap and "AMX" not in cap:
        return False
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_runtime(device: str = "auto", precision: str = "auto", channels_last: str = "auto") -> Runtime:
    """auto: CUDA if available. bf16 autocast + channels_last on CUDA and on CPUs with native
    bf16 (AVX512-BF16/AMX). On this project's 2-core CPU they trained M ~1.7x faster than fp32
    and, on HandSim smoke (200 steps, 2 seeds), as accurately (an early development measurement, not re-run since)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available")
    dev = torch.device(device)
    fast = dev.type == "cuda" or cpu_has_bf16()
    bf16 = {"auto": fast, "bf16": True, "fp32": False}[precision]
    cl = {"auto": fast, "on": True, "off": False}[channels_last]
    return Runtime(dev, torch.bfloat16 if bf16 else None, cl)


# ---------------------------------------------------------------- step-indexed batches
def stream_seed(seed: int, name: str) -> int:
    """Seed of stream ``name``: stable across processes (crc32, not hash()) and independent
    of the other streams, so adding a stream does not change this one's batches."""
    return zlib.crc32(f"{seed}/{name}".encode())


class StepBatchSampler(torch.utils.data.Sampler):
    """Index batches for steps [start, stop): step s uses epoch e = s // nb of a permutation
    seeded by (seed, e), batch s % nb. A pure function of (seed, s): exact resume."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        if n < 1:
            raise ValueError("StepBatchSampler: empty dataset")
        self.n, self.bs, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.nb = max(1, n // batch_size)
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:  # drawn once per epoch, not once per step
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g)
            if self.n < self.bs:  # tiny sets: repeat to fill the batch
                perm = perm.repeat(-(-self.bs // self.n))
            self._epoch, self._perm = epoch, perm
        return self._perm

    def batch(self, step: int) -> list[int]:
        e, i = divmod(step, self.nb)
        return self.permutation(e)[i * self.bs:(i + 1) * self.bs].tolist()

    def __iter__(self):
        return (self.batch(s) for s in range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def step_loader(ds, batch_size: int, seed: int, start: int, stop: int, num_workers: int = 0):
    """DataLoader over ``ds.__getitems__`` for steps [start, stop) (no per-item collate)."""
    return torch.utils.data.DataLoader(
        ds, batch_sampler=StepBatchSampler(len(ds), batch_size, seed, start, stop),
        collate_fn=identity_collate, num_workers=num_workers,
        # its own generator: creating the iterator must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(seed * 1_000_003 + start),
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False, prefetch_factor=4 if num_workers else None)


# ---------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    st = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "numpy_key": torch.from_numpy(st[1].astype(np.int64)),
           "numpy_pos": int(st[2]), "numpy_gauss": (int(st[3]), float(st[4])),
           "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(("MT19937", st["numpy_key"].numpy().astype(np.uint32), st["numpy_pos"],
                         *st["numpy_gauss"]))
    v, s, g = st["python"]
    random.setstate((v, tuple(s), g))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, step: int, task, optims: dict, history: list[dict]) -> None:
    """Atomic: write a temp file next to ``path`` and rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "modules": {k: m.state_dict() for k, m in task.modules.items()},
             "optims": {k: o.state_dict() for k, o in optims.items()}, "rng": _rng_state(),
             "history": history}
    if hasattr(task, "state_dict"):
        state["task"] = task.state_dict()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


# ---------------------------------------------------------------- the loop
class Task(Protocol):
    modules: dict[str, nn.Module]
    optimised: dict[str, list]

    def train_mode(self) -> None: ...
    def step(self, batch: dict[str, Any], step: int) -> tuple[dict[str, Tensor], dict[str, float]]: ...


def train(task: Task, streams: dict[str, tuple[Any, int]], cfg: LoopConfig, ckpt_dir: str | Path,
          runtime: Runtime | None = None, on_step: Callable[[int, dict], None] | None = None,
          lr_scale: dict[str, float] | None = None,
          optim: dict[str, dict] | None = None) -> list[dict[str, float]]:
    """Train ``task`` for ``cfg.steps`` steps; returns the history (one row per step; rows
    lack ``loss_k``/``gradnorm_k`` for an optimiser k left out of that step).

    streams: name -> (dataset with __getitems__, batch size); the batch handed to
    ``task.step`` is a dict name -> that stream's batch, already on the device.
    optim: optimiser name -> {lr_scale: 1.0, betas: (0.9, 0.999), weight_decay: cfg's,
    schedule: "loop" (get_lr) | "constant" (cfg.lr * lr_scale), grad_clip: cfg's (0: off)};
    ``lr_scale`` (name -> float) is shorthand for optim[name]["lr_scale"]; ``optim`` wins.
    """
    rt = runtime or resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    for m in task.modules.values():
        m.to(rt.device, memory_format=torch.channels_last if rt.channels_last else torch.preserve_format)
    sets = optim_settings(task.optimised, cfg, optim, lr_scale)
    optims = {k: torch.optim.AdamW(ps, lr=cfg.lr, betas=sets[k]["betas"], weight_decay=sets[k]["weight_decay"])
              for k, ps in task.optimised.items()}  # lr: set every step
    ckpt = Path(ckpt_dir) / "last.pt"
    start, history = 0, []
    if cfg.resume and ckpt.exists():
        st = load_checkpoint(ckpt)  # on CPU: RNG states must stay there; load_state_dict moves the rest
        for k, m in task.modules.items():
            m.load_state_dict(st["modules"][k])
        for k, o in optims.items():
            o.load_state_dict(st["optims"][k])
        if hasattr(task, "load_state_dict") and "task" in st:
            task.load_state_dict(st["task"])
        start, history = int(st["step"]), list(st["history"])
        _set_rng_state(st["rng"])
    if start >= cfg.steps:
        return history
    loaders = {k: iter(step_loader(ds, bs, stream_seed(cfg.seed, k), start, cfg.steps, cfg.num_workers))
               for k, (ds, bs) in streams.items()}
    task.train_mode()
    # under the study runner (HANDLIB_PROGRESS=text) the kernel's output goes to a terminal or
    # log, not a notebook frontend: a text bar and one line per evaluation instead of a widget
    text = os.environ.get("HANDLIB_PROGRESS") == "text"
    bar = (text_tqdm if text else tqdm)(total=cfg.steps, initial=start, disable=not cfg.progress, desc="train",
                                        mininterval=30.0 if text else 2.0)
    t0, shown = time.perf_counter(), {}
    for step in range(start, cfg.steps):
        batch = {k: rt.to(next(it)) for k, it in loaders.items()}
        row: dict[str, float] = {"step": step + 1, "lr": get_lr(step, cfg)}
        for k, opt in optims.items():
            row[f"lr_{k}"] = optim_lr(step, cfg, sets[k])
            for g in opt.param_groups:
                g["lr"] = row[f"lr_{k}"]
        with rt.autocast():
            losses, logs = task.step(batch, step)
        if bad := sorted(set(losses) - set(optims)):
            raise ValueError(f"task.step returned loss(es) {bad} with no optimiser in task.optimised")
        for k, loss in losses.items():  # in the task's order; absent optimisers are not touched
            opt, clip = optims[k], sets[k]["grad_clip"]
            if not torch.isfinite(loss):
                raise NonFiniteError(f"non-finite loss '{k}' = {loss.item()} at step {step + 1}; "
                                     f"last good checkpoint: {ckpt if ckpt.exists() else 'none'}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            gn = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
            if not torch.isfinite(gn):
                raise NonFiniteError(f"non-finite gradient norm for '{k}' at step {step + 1}; "
                                     f"last good checkpoint: {ckpt if ckpt.exists() else 'none'}")
            opt.step()
            row[f"loss_{k}"], row[f"gradnorm_{k}"] = float(loss.detach()), float(gn)
        row.update({k: float(v) for k, v in logs.items()})
        done = step + 1
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            if hasattr(task, "evaluate"):
                row.update({f"eval_{k}": float(v) for k, v in task.evaluate(done).items()})
                if text and cfg.progress:
                    bar.write(eval_line(done, cfg.steps, row, time.perf_counter() - t0))
            task.train_mode()
        row["time_s"] = time.perf_counter() - t0
        history.append(row)
        bar_postfix(row, shown)
        if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.steps:
            save_checkpoint(ckpt, done, task, optims, history)
        if done % cfg.log_every == 0:
            bar.set_postfix(shown, refresh=False)
        bar.update(1)
        if on_step is not None:
            on_step(done, row)
    bar.close()
    return history
