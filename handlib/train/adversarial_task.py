"""One step of the adversarial stage for any method (the ``Task`` THE loop trains).

Per step: one pass of M over the labelled frames and the unlabelled windows (BN frozen); for
``adversarial`` / ``pose_prior``, D's k updates (``DTrainer``: real windows, this step's
detached predicted windows and replayed ones, optional NDA fakes and R1) come *first*, then M's
loss is built with the updated D:

    L_M = L_2D + lambda_z L_z + lambda_root L_root + lambda_MM(t) E[(1 - D(aug(M(video))))^2]

D has its own optimiser inside the task (the loop trains M only; D's weights, its optimiser,
generator and replay buffer are in the loop's checkpoint through ``modules`` / ``state_dict``).
D's parameters never receive gradients from M's loss (``requires_grad`` off outside D's update).

At every evaluation step the task also logs the gradient norms, on M's parameters, of the
supervised loss (``gn_sup``) and of the weighted unlabelled term (``gn_mm`` = |grad lambda_MM
L_MM|, or lambda_smooth L_smooth), and their ratio: whether the motion term can move M at all.

Model selection: the best validation absolute MPJPE over all evaluation steps (``best``) and
over the steps with lambda_MM at full strength (``best_full``), each step's weights in their own
file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from handlib.losses import lsgan_g_loss, smoothness_loss, supervised_loss
from handlib.models.motion import MotionDiscriminator, augment_windows, encode_motion
from handlib.models.pose import PoseModel
from handlib.skeleton import ref_bone_length
from handlib.train.adversarial_config import AdversarialConfig, get_lambda
from handlib.train.bn import set_train_mode
from handlib.train.discriminator import DTrainer


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    """|d loss / d params| (graph kept for the loop's backward)."""
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.float().pow(2).sum()) for g in gs if g is not None))


class AdversarialTask:
    """M (and D) for one step of any method; see the module docstring."""

    def __init__(self, model: PoseModel, D: MotionDiscriminator | None, cfg: AdversarialConfig,
                 lambda_z: float, lambda_root: float, eval_fn=None, best_dir: Path | None = None):
        self.model, self.D, self.cfg = model, D, cfg
        self.lambda_z, self.lambda_root, self.eval_fn, self.best_dir = lambda_z, lambda_root, eval_fn, best_dir
        self.modules = {"M": model} | ({"D": D} if D is not None else {})
        self.optimised = {"M": list(model.parameters())}  # D: its own optimiser (DTrainer)
        self.trainer = DTrainer(D, cfg.d_train_config(), cfg.seed) if D is not None else None
        if D is not None:
            D.requires_grad_(False)  # only DTrainer's update turns them on
        self.gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)  # augmentation of M's windows
        self.best = {"val_mpjpe_abs": float("inf"), "step": 0}
        self.best_full = {"val_mpjpe_abs": float("inf"), "step": 0}

    # -- the loop's optional hooks: task-owned state goes into the checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "best": dict(self.best), "best_full": dict(self.best_full),
                "trainer": self.trainer.state_dict() if self.trainer is not None else None}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.gen.set_state(st["gen"])
        self.best = dict(st["best"])
        self.best_full = dict(st.get("best_full", st["best"]))
        if self.trainer is not None and st.get("trainer") is not None:
            self.trainer.load_state_dict(st["trainer"])

    def train_mode(self) -> None:
        set_train_mode(self.model, "frozen")  # BN on pre-training's aggregate statistics
        if self.D is not None:
            self.D.train()

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment_windows(x, self.gen) if self.cfg.rotate else x

    def is_eval_step(self, step: int) -> bool:
        done = step + 1
        return bool((self.cfg.eval_every and done % self.cfg.eval_every == 0) or done == self.cfg.steps)

    def full_strength(self, step: int) -> bool:
        """lambda_MM at its full value at (0-based) ``step`` (always, for methods without a ramp)."""
        return not self.cfg.uses_d or get_lambda(step, self.cfg) >= self.cfg.lambda_mm

    def terms(self, batch: dict, step: int, with_mm: bool = True) -> dict[str, torch.Tensor]:
        """The loss terms of one step, with graphs: ``sup`` (+ its parts), and per method
        ``fake`` (M's encoded windows, not augmented), ``l_mm`` (with ``with_mm``) or ``l_smooth``."""
        cfg, lab = self.cfg, batch["labelled"]
        C = ref_bone_length(lab["j3d"])  # (B,) mm: training scale = ground truth
        if not cfg.uses_video:
            out = self.model(lab["image"], lab["K"], C)
            sup, parts = supervised_loss(out, lab, C, self.model.cfg.image_size, self.lambda_z, self.lambda_root)
            return {"sup": sup, **parts}
        vid = batch["unlabelled"]  # images (Bw, S, 3, H, W), K (Bw, S, 3, 3): no labels
        Bw, S = vid["images"].shape[:2]
        B = lab["image"].shape[0]
        prior = self.model.bone_prior.float().expand(Bw * S)  # no labels: M's own scale prior
        out = self.model(torch.cat([lab["image"], vid["images"].flatten(0, 1)]),  # one pass, BN frozen
                         torch.cat([lab["K"], vid["K"].flatten(0, 1)]), torch.cat([C, prior]))
        sup, parts = supervised_loss(type(out)(*(t[:B] for t in out)), lab, C, self.model.cfg.image_size,
                                     self.lambda_z, self.lambda_root)
        j2d, z_rel, z_root = (t[B:].unflatten(0, (Bw, S)) for t in (out.j2d, out.z_rel, out.z_root))
        # (Bw, S, 21, 3): M's windows, encoded exactly as real ones; the root depth stays out of L_MM
        fake = encode_motion(j2d, z_rel, vid["K"], self.model.bone_prior, cfg.representation,
                             z_root=z_root.detach(), center=cfg.center)
        if cfg.method == "smoothness":
            return {"sup": sup, **parts, "fake": fake, "l_smooth": smoothness_loss(fake)}
        t = {"sup": sup, **parts, "fake": fake}
        if with_mm:
            t["l_mm"] = lsgan_g_loss(self.D(self._augment(fake)))
        return t

    def step(self, batch: dict, step: int):
        cfg = self.cfg
        t = self.terms(batch, step, with_mm=False)
        logs = {k: float(t[k].detach()) for k in ("l2d", "lz", "lroot", "l_smooth") if k in t}
        if cfg.method == "supervised":
            return {"M": t["sup"]}, logs
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.method == "smoothness":
            if self.is_eval_step(step):
                gs, gm = grad_norm(t["sup"], params), grad_norm(cfg.lambda_smooth * t["l_smooth"], params)
                logs.update(gn_sup=gs, gn_mm=gm, gn_ratio=gm / gs if gs > 0 else math.nan)
            return {"M": t["sup"] + cfg.lambda_smooth * t["l_smooth"]}, logs
        if step % cfg.d_every == 0:  # D first: real windows vs M's detached (and replayed) windows
            m = batch["motion"]
            logs.update(self.trainer.update(m["j3d"], m["K"], t["fake"].detach()))
        l_mm = lsgan_g_loss(self.D(self._augment(t["fake"])))  # Eq. 5 with the updated D
        lam = get_lambda(step, cfg)
        logs.update(l_mm=float(l_mm.detach()), lambda_mm=lam)
        if self.is_eval_step(step):
            gs, g1 = grad_norm(t["sup"], params), grad_norm(l_mm, params)
            logs.update(gn_sup=gs, gn_lmm=g1, gn_mm=lam * g1, gn_ratio=lam * g1 / gs if gs > 0 else math.nan)
        return {"M": t["sup"] + lam * l_mm if lam > 0 else t["sup"]}, logs

    def best_path(self, step: int | None = None) -> Path:
        """M's weights at a selected step; one file per step, so a resumed run (whose restored
        ``best`` may predate the last file written) always finds the weights it selected."""
        return Path(self.best_dir) / f"best-{self.best['step'] if step is None else step:06d}.pt"

    def _keep(self, step: int) -> None:
        path = self.best_path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"step": step, "M": self.model.state_dict()}, tmp)
        os.replace(tmp, path)

    def evaluate(self, step: int) -> dict[str, float]:
        """Validation metrics; keeps M's weights at the best validation absolute MPJPE, over all
        evaluation steps and over those with lambda_MM at full strength."""
        res = self.eval_fn() if self.eval_fn is not None else {}
        v = res.get("val_mpjpe_abs")
        if v is not None and self.best_dir is not None:
            if v < self.best["val_mpjpe_abs"]:
                self._keep(step)
                self.best = {"val_mpjpe_abs": float(v), "step": int(step)}
            if self.full_strength(step - 1) and v < self.best_full["val_mpjpe_abs"]:
                self._keep(step)
                self.best_full = {"val_mpjpe_abs": float(v), "step": int(step)}
        return {**res, "best_step": float(self.best["step"]), "best_full_step": float(self.best_full["step"])}
