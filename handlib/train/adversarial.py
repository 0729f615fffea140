"""The adversarial stage (paper Sec. 3.3, Eq. 4-6): M, pre-trained on the labelled frames,
keeps training on them while its per-frame predictions on unlabelled video, stacked into
windows of S frames, are scored by a motion discriminator D that learns from unpaired motion.

    L_D = E[(1 - D(real))^2] + E[D(M(video))^2]                      (Eq. 4, D's optimiser)
    L_M = L_2D + lambda_z L_z + lambda_root L_root + lambda_MM(t) E[(1 - D(M(video)))^2]   (Eq. 6)

Methods share the task, the loop, the labelled batches (the labelled stream is seeded by its
name), the schedule and the model selection; they differ only in the unlabelled term:
``adversarial`` (above), ``supervised`` (none), ``smoothness`` (squared velocity of the
predicted windows, the paper's temporal-prior baseline), ``pose_prior`` (adversarial with
S = 1: D judges single poses; as many unlabelled frames per step as with S = 16).

Balance (all recorded parameters): D trains alone for ``d_warmup`` steps (M supervised only),
then lambda_MM ramps linearly to ``lambda_mm`` over ``lambda_warmup`` steps; M's learning rate
is pre-training's phase-2 rate (1e-4, constant); D: Adam betas (0.5, 0.999), lr ``d_lr``,
weight decay ``d_weight_decay``, one update every ``d_every`` steps. M's BatchNorm stays on the
aggregate statistics of pre-training. L_MM never reaches ``z_root`` or its refiner: "25d"
windows do not contain it and "3d" windows are built from a detached root depth.

Model selection: validation absolute MPJPE every ``eval_every`` steps; the best step's M is
kept (``best.pt``) and test is reported at the selected and at the last step, never used to
choose anything.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlib import metrics as MX
from handlib.analysis.d_probe import d_probe, probe_windows
from handlib.analysis.diagnostics import discriminator_auc, motion_diagnostics, root_depth_error
from handlib.config import ConfigError, StageConfig, param
from handlib.data.datasets import LabelledFrames, MotionWindows, VideoWindows
from handlib.losses import lsgan_d_loss, lsgan_g_loss, smoothness_loss, supervised_loss
from handlib.models.motion import MotionConfig, MotionDiscriminator, augment_windows, encode_motion, encode_real
from handlib.models.pose import PoseModel
from handlib.repro import RunRecord, atomic_write_text, read_records, seed_everything
from handlib.skeleton import ref_bone_length
from handlib.train.bn import set_train_mode
from handlib.train.evaluate import predict
from handlib.train.loop import LoopConfig, load_checkpoint, resolve_runtime, train

METHODS = ("adversarial", "supervised", "smoothness", "pose_prior")
AUC_CHECKS = (("jitter", 2.0), ("jitter", 5.0), ("bone", 0.02), ("bone", 0.05), ("shuffle", 0.0))


@dataclass(frozen=True)
class AdversarialConfig(StageConfig):
    stage = "adversarial"
    method: str = param("adversarial", choices=METHODS)
    # the pre-training run M starts from: its id, or the unique finished run with these fields
    pretrain_run: str | None = param(None, help="pre-training run id (results/runs/<id>)")
    dataset: str = param("handsim", choices=("handsim", "fphab", "ho3d"))
    root: str | None = param(None, help="dataset root on disk (real datasets)")
    preset: str = param("smoke", choices=("smoke", "quick", "full"), help="HandSim preset")
    appearance_shift: float | None = param(None, range=(0.0, 1.0), help="HandSim: the pre-training run's")
    protocol: int = param(2, choices=(1, 2))
    fraction: float = param(0.1, range=(0.0, 1.0))
    image_size: int = param(128, range=(64, 256))
    pretrain_seed: int = param(0, range=(0, None))
    pretrain_split_seed: int | None = param(None, range=(0, None), help="the pre-training run's split_seed")
    seed: int = param(0, range=(0, None))
    # D and its data
    representation: str = param("25d", choices=("25d", "3d"))
    S: int = param(16, range=(1, 256), help="window length (pose_prior uses 1)")
    d_depth: int = param(2, range=(1, 16))
    d_channels: int = param(256, range=(8, 2048))
    spectral_norm: bool = param(False)
    augment: bool = param(True, help="one random rotation about the camera z-axis per window")
    center: bool = param(False, help="'25d': rays relative to frame 0's root ray")
    motion_source: str = param("auto", choices=("auto", "corpus", "train_gt"),
                               help="auto: the dataset's unpaired corpus if it has one, else train_gt")
    # steps, batches, balance
    steps: int = param(400, range=(1, None))
    batch_size: int = param(16, range=(1, 4096), help="labelled frames per step")
    unlabelled_frames: int = param(32, range=(1, 4096), help="unlabelled frames per step (windows x S)")
    motion_batch: int = param(0, range=(0, 4096), help="real windows per D step; 0 = as many as fake")
    lr: float = param(1e-4, range=(0.0, 1.0), help="M's learning rate (constant)")
    weight_decay: float = param(1e-4, range=(0.0, 1.0))
    d_lr: float = param(1e-4, range=(0.0, 1.0))
    d_weight_decay: float = param(1e-4, range=(0.0, 1.0))
    d_beta1: float = param(0.5, range=(0.0, 1.0))
    d_every: int = param(1, range=(1, None), help="one D update every n steps")
    d_warmup: int = param(100, range=(0, None), help="steps in which D trains and lambda_MM = 0")
    lambda_mm: float = param(0.01, range=(0.0, None))
    lambda_warmup: int = param(100, range=(0, None), help="linear ramp of lambda_MM after d_warmup")
    lambda_smooth: float = param(100.0, range=(0.0, None),
                                 help="method smoothness; encoded windows move ~1e-2 per frame (velocity^2 ~ 1e-4)")
    grad_clip: float = param(1.0, range=(0.0, None))
    eval_every: int = param(50, range=(0, None), help="validation for model selection; 0 = end only")
    eval_max_frames: int = param(512, range=(0, None), help="val frames per periodic eval; 0 = all")
    ckpt_every: int = param(100, range=(0, None))
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    precision: str = param("auto", choices=("auto", "bf16", "fp32"))
    channels_last: str = param("auto", choices=("auto", "on", "off"))
    num_workers: int = param(0, range=(0, 16))
    smoke: bool = param(False, help="fresh checkpoints, test on at most 256 frames")
    cache_root: str | None = param(None)
    results: str | None = param(None, help="results directory (default <repo>/results)")
    progress: bool = param(True)
    run_name: str | None = param(None, help="run id given by the study runner")

    def validate(self) -> None:
        if self.lr <= 0 or self.d_lr <= 0:
            raise ConfigError(f"AdversarialConfig.lr / d_lr: {self.lr} / {self.d_lr} must be > 0")
        if self.unlabelled_frames < self.window:
            raise ConfigError(f"AdversarialConfig.unlabelled_frames: {self.unlabelled_frames} < S = {self.window}")

    @property
    def window(self) -> int:
        """The effective window length: 1 for the pose prior."""
        return 1 if self.method == "pose_prior" else self.S

    @property
    def uses_video(self) -> bool:
        return self.method != "supervised"

    @property
    def uses_d(self) -> bool:
        return self.method in ("adversarial", "pose_prior")

    def unused_fields(self) -> frozenset[str]:
        """Fields that cannot change this method's run (e.g. D's settings for ``supervised``):
        two configs that differ only there describe the same run."""
        d = {"representation", "S", "d_depth", "d_channels", "spectral_norm", "augment", "center", "motion_source",
             "motion_batch", "d_lr", "d_weight_decay", "d_beta1", "d_every", "lambda_mm"}
        if self.method == "supervised":
            return frozenset(d | {"unlabelled_frames", "d_warmup", "lambda_warmup", "lambda_smooth"})
        if self.method == "smoothness":
            return frozenset((d - {"representation", "S", "center"}) | {"d_warmup", "lambda_warmup"})
        return frozenset({"lambda_smooth"} | ({"S"} if self.method == "pose_prior" else set()))

    def motion_config(self) -> MotionConfig:
        return MotionConfig(S=self.window, depth=self.d_depth, channels=self.d_channels,
                            spectral_norm=self.spectral_norm, representation=self.representation,
                            augment=self.augment, center=self.center)

    def loop_config(self) -> LoopConfig:
        return LoopConfig(steps=self.steps, lr=self.lr, weight_decay=self.weight_decay, schedule="constant",
                          grad_clip=self.grad_clip, eval_every=self.eval_every, ckpt_every=self.ckpt_every,
                          seed=self.seed, device=self.device, precision=self.precision,
                          channels_last=self.channels_last, num_workers=self.num_workers,
                          resume=not self.smoke, progress=self.progress)


def get_lambda(step: int, cfg: AdversarialConfig) -> float:
    """lambda_MM at (0-based) ``step``: 0 during D's warm-up, then a linear ramp to lambda_mm."""
    t = step - cfg.d_warmup
    if t < 0:
        return 0.0
    if cfg.lambda_warmup and t < cfg.lambda_warmup:
        return cfg.lambda_mm * (t + 1) / cfg.lambda_warmup
    return cfg.lambda_mm


class AdversarialTask:
    """M (and D) for one step of any method; see the module docstring."""

    def __init__(self, model: PoseModel, D: MotionDiscriminator | None, cfg: AdversarialConfig,
                 lambda_z: float, lambda_root: float, eval_fn=None, best_dir: Path | None = None):
        self.model, self.D, self.cfg = model, D, cfg
        self.lambda_z, self.lambda_root, self.eval_fn, self.best_dir = lambda_z, lambda_root, eval_fn, best_dir
        self.modules = {"M": model} | ({"D": D} if D is not None else {})
        self.optimised = {k: list(m.parameters()) for k, m in self.modules.items()}
        self.gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)  # D's augmentation
        self.best = {"val_mpjpe_abs": float("inf"), "step": 0}

    # -- the loop's optional hooks: task-owned state goes into the checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "best": dict(self.best)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.gen.set_state(st["gen"])
        self.best = dict(st["best"])

    def train_mode(self) -> None:
        set_train_mode(self.model, "frozen")  # BN on pre-training's aggregate statistics
        if self.D is not None:
            self.D.train()

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment_windows(x, self.gen) if self.cfg.augment else x

    def terms(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """The loss terms of one step, with graphs: ``sup`` (+ its parts), and per method
        ``fake`` (M's encoded, augmented windows), ``l_mm`` or ``l_smooth``."""
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
        fake = self._augment(fake)
        return {"sup": sup, **parts, "fake": fake, "l_mm": lsgan_g_loss(self.D(fake))}

    def step(self, batch: dict, step: int):
        cfg = self.cfg
        t = self.terms(batch, step)
        logs = {k: float(t[k].detach()) for k in ("l2d", "lz", "lroot", "l_mm", "l_smooth") if k in t}
        if cfg.method == "supervised":
            return {"M": t["sup"]}, logs
        if cfg.method == "smoothness":
            return {"M": t["sup"] + cfg.lambda_smooth * t["l_smooth"]}, logs
        lam = get_lambda(step, cfg)
        logs["lambda_mm"] = lam
        losses = {"M": t["sup"] + lam * t["l_mm"] if lam > 0 else t["sup"]}
        if step % cfg.d_every == 0:  # D on real windows and on M's detached windows (Eq. 4)
            m = batch["motion"]
            real = self._augment(encode_real(m["j3d"], m["K"], cfg.representation, cfg.center))
            d_real, d_fake = self.D(real), self.D(t["fake"].detach())
            losses["D"] = lsgan_d_loss(d_real, d_fake)
            d_real, d_fake = d_real.detach(), d_fake.detach()
            logs.update(d_real=float(d_real.mean()), d_fake=float(d_fake.mean()),
                        d_acc=0.5 * float((d_real > 0.5).float().mean() + (d_fake < 0.5).float().mean()))
        return losses, logs

    def best_path(self, step: int | None = None) -> Path:
        """M's weights at a selected step; one file per step, so a resumed run (whose restored
        ``best`` may predate the last file written) always finds the weights it selected."""
        return Path(self.best_dir) / f"best-{self.best['step'] if step is None else step:06d}.pt"

    def evaluate(self, step: int) -> dict[str, float]:
        """Validation metrics; keeps M's weights at the best validation absolute MPJPE."""
        res = self.eval_fn() if self.eval_fn is not None else {}
        v = res.get("val_mpjpe_abs")
        if v is not None and self.best_dir is not None and v < self.best["val_mpjpe_abs"]:
            path = self.best_path(step)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save({"step": step, "M": self.model.state_dict()}, tmp)
            os.replace(tmp, path)
            self.best = {"val_mpjpe_abs": float(v), "step": int(step)}
        return {**res, "best_step": float(self.best["step"])}


# ---------------------------------------------------------------- the pre-training run
def find_pretrain_run(cfg: AdversarialConfig) -> str:
    """The pre-training run id: ``cfg.pretrain_run``, or the unique finished pre-training record
    whose dataset, preset, protocol, fraction, seed and image size match ``cfg``."""
    if cfg.pretrain_run:
        return cfg.pretrain_run
    want = {"dataset": cfg.dataset, "preset": cfg.preset, "protocol": cfg.protocol, "fraction": cfg.fraction,
            "seed": cfg.pretrain_seed, "image_size": cfg.image_size, "smoke": cfg.smoke,
            "appearance_shift": cfg.appearance_shift, "split_seed": cfg.pretrain_split_seed}
    found = [r["config"]["run_id"] for r in read_records(cfg.results, stage="pretrain")
             if all(r["config"]["config"].get(k) == v for k, v in want.items())]
    if len(found) != 1:
        what = "no finished pre-training run" if not found else f"{len(found)} pre-training runs ({', '.join(found)})"
        raise FileNotFoundError(f"{what} matches {want} in {cfg.results or 'results/'}runs: run the pre-training "
                                f"stage first, or name one with AdversarialConfig.pretrain_run")
    return found[0]


def rebuild_split(pre_cfg, store, split_csv: Path):
    """The pre-training run's split, rebuilt from its config and checked against its split.csv."""
    from handlib.data.protocols import make_split
    from handlib.train.stage import split_seed_of

    split = make_split(store.meta, protocol=pre_cfg["protocol"], fraction=pre_cfg["fraction"],
                       seed=split_seed_of(pre_cfg), val_fraction=pre_cfg["val_fraction"])
    saved = pd.read_csv(split_csv)
    now = split.to_frame()
    if len(saved) != len(now) or not (saved["role"].to_numpy() == now["role"].to_numpy()).all():
        raise RuntimeError(f"the split rebuilt from the pre-training config differs from {split_csv}: "
                           "data or protocol code changed since pre-training")
    return split


def motion_source(cfg: AdversarialConfig, data, split) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """(name, sequences, Ks) of the real motion D learns from; see AdversarialConfig.motion_source."""
    from handlib.data.realdata import train_motion

    name = cfg.motion_source
    if name == "auto":
        name = "corpus" if getattr(data, "motion", None) is not None else "train_gt"
    if name == "corpus":
        if getattr(data, "motion", None) is None:
            raise ConfigError(f"AdversarialConfig.motion_source: dataset {cfg.dataset!r} has no motion corpus")
        seqs, Ks = data.motion
        return name, list(seqs), list(Ks)
    seqs, Ks = train_motion(data.store, exclude=set(split.val_sequences))
    return name, seqs, Ks


def hold_out(seqs: list, Ks: list, every: int = 10) -> tuple[tuple[list, list], tuple[list, list]]:
    """Every ``every``-th sequence held out of D's training (for ``discriminator_auc``)."""
    n = len(seqs)
    held = [i for i in range(n) if i % every == every - 1] or ([n - 1] if n >= 2 else [])
    keep = [i for i in range(n) if i not in held]
    return ([seqs[i] for i in keep], [Ks[i] for i in keep]), ([seqs[i] for i in held], [Ks[i] for i in held])


# ---------------------------------------------------------------- evaluation
def _eval_rows(model, store, rows, rt, scale_source: str) -> dict:
    """Overall metrics + motion diagnostics of M on ``rows`` (the diagnostics need whole runs)."""
    from handlib.train.evaluate import evaluate_predictions

    p = predict(model, store, rows, rt, 64, scale_source)
    res = evaluate_predictions(p, store.meta)
    return {"n_frames": res["n_frames"], "overall": res["overall"], "per_action": res["per_action"],
            "diagnostics": {**motion_diagnostics(p, store.meta), **root_depth_error(p)}}


def _auc(D: MotionDiscriminator, held: tuple[list, list], S: int, representation: str, seed: int,
         center: bool = False) -> dict:
    """discriminator_auc on the held-out motion windows (non-overlapping), per perturbation."""
    if not held[0]:
        return {}
    mw = MotionWindows(*held, S=S, stride=S)
    if not len(mw):
        return {}
    w = mw.__getitems__(list(range(len(mw))))
    g = torch.Generator().manual_seed(seed)
    dev = next(D.parameters()).device
    return {"n_windows": len(mw), **{f"{k}_{a:g}": discriminator_auc(D, w["j3d"].to(dev), w["K"].to(dev),
                                                                        representation, k, a, g, center=center)
                                     for k, a in AUC_CHECKS}}


# ---------------------------------------------------------------- the stage
def run_adversarial(cfg: AdversarialConfig, data=None) -> dict[str, Any]:
    """Start from the pre-training run's final M, train one method, select on validation,
    evaluate pre-trained / selected / last on val and test, write the record.

    Returns run_id, dir, metrics, history (DataFrame), model (selected), models (dict of the
    three state dicts' owners), store, split, runtime, D.
    """
    from handlib.train.pretrain import PretrainConfig
    from handlib.train.stage import checkpoint_root, find_pretrain, load_data, run_facts

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    pre = find_pretrain(run_id=find_pretrain_run(cfg), results=cfg.results)
    pre_cfg = PretrainConfig.from_params({k: v for k, v in pre["config"].items()
                                          if k in PretrainConfig.__dataclass_fields__})
    if data is None:
        data = load_data(pre_cfg)
    store = data.store
    split = rebuild_split(pre["config"], store, Path(pre["split_csv"]))
    if cfg.uses_video and not split.unlabelled_sequences:
        raise ConfigError(f"AdversarialConfig.method: {cfg.method!r} needs unlabelled videos, but the split of "
                          f"{pre['run_id']} has none (protocol {pre_cfg.protocol}, fraction {pre_cfg.fraction})")
    rt = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    rec = RunRecord("adversarial", cfg.to_dict(), cfg.seed, vary=("method", "protocol", "fraction"),
                    results=cfg.results, device=rt.device, run_name=cfg.run_name)
    rec.write_config()
    split.to_csv(rec.path("split.csv"))
    ckroot = checkpoint_root(cfg, rec, data)

    def pretrained() -> PoseModel:
        m = PoseModel(pre_cfg.pose_config())
        m.load_state_dict(load_checkpoint(Path(pre["checkpoint"]))["modules"]["M"])
        return m

    model = pretrained()
    D = MotionDiscriminator(cfg.motion_config()) if cfg.uses_d else None
    S, scale = cfg.window, pre_cfg.scale_source
    streams: dict[str, tuple[Any, int]] = {"labelled": (LabelledFrames(store, split.labelled_rows), cfg.batch_size)}
    n_win = cfg.unlabelled_frames // S
    facts: dict[str, Any] = {"pretrain_run": pre["run_id"], "pretrain_checkpoint": str(pre["checkpoint"]),
                             "S_effective": S, "labelled_per_step": cfg.batch_size,
                             "unlabelled_per_step": n_win * S if cfg.uses_video else 0}
    held: tuple[list, list] = ([], [])
    if cfg.uses_video:
        vw = VideoWindows(store, split.unlabelled_sequences, S=S)
        streams["unlabelled"] = (vw, n_win)
        facts.update(unlabelled_sequences=len(split.unlabelled_sequences), unlabelled_windows=len(vw))
    if cfg.uses_d:
        src, seqs, Ks = motion_source(cfg, data, split)
        train_m, held = hold_out(seqs, Ks)
        mw = MotionWindows(*train_m, S=S)
        streams["motion"] = (mw, cfg.motion_batch or n_win)
        facts.update(motion_source=src, motion_sequences=len(train_m[0]), motion_windows=len(mw),
                     motion_held_out_sequences=len(held[0]))
    val_all = np.asarray(split.val_rows)
    val_rows = val_all if not cfg.eval_max_frames or len(val_all) <= cfg.eval_max_frames else np.sort(
        np.random.default_rng(cfg.seed).choice(val_all, cfg.eval_max_frames, replace=False))

    # D's probe (accuracy, AUC, score-error rank correlation) on fixed validation windows
    probe = probe_windows(store, split.val_sequences, held, S) if D is not None else None

    def probe_fn(m: PoseModel) -> dict[str, float]:
        return d_probe(m.to(rt.device), D, probe, rt, cfg.representation, cfg.center) if probe else {}

    def eval_fn() -> dict[str, float]:
        if not len(val_rows):
            return {}
        p = predict(model, store, val_rows, rt, 64, scale)
        return {"val_mpjpe_abs": float(MX.mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_mpjpe_rr": float(MX.rr_mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_epe_2d": float(MX.epe_2d(p["pred2d"], p["gt2d"]).mean()),
                **{f"val_{k}": v for k, v in probe_fn(model).items()}}

    lz, lr_ = pre_cfg.lambda_z, pre_cfg.lambda_root
    task = AdversarialTask(model, D, cfg, lz, lr_, eval_fn, best_dir=ckroot)
    optim = {"M": {"schedule": "constant"}}
    if D is not None:
        optim["D"] = {"lr_scale": cfg.d_lr / cfg.lr, "betas": (cfg.d_beta1, 0.999),
                      "weight_decay": cfg.d_weight_decay, "schedule": "constant"}
    history = train(task, streams, cfg.loop_config(), ckroot, runtime=rt, optim=optim)
    best = load_checkpoint(task.best_path())
    for f in ckroot.glob("best-*.pt"):  # keep only the selected step's weights
        if f != task.best_path():
            f.unlink()
    train_time = time.perf_counter() - t0
    hist = pd.DataFrame(history)
    atomic_write_text(rec.path("history.csv"), hist.to_csv(index=False))

    # pre-trained, selected (best validation abs MPJPE) and last M, evaluated alike
    test_rows = np.asarray(split.test_rows)
    if cfg.smoke and len(test_rows) > 256:
        test_rows = np.sort(np.random.default_rng(cfg.seed).choice(test_rows, 256, replace=False))
    selected = PoseModel(pre_cfg.pose_config())
    selected.load_state_dict(best["M"])
    test_note = None
    if len(test_rows) and np.isnan(store.j3d[test_rows]).any():  # HO3D: labels held by the official server
        test_rows, test_note = test_rows[:0], "no public test labels: evaluate with the official server"
    models = {"pretrained": pretrained(), "selected": selected, "last": model}
    results = {}
    for name, m in models.items():
        m.to(rt.device)
        results[name] = {s: _eval_rows(m, store, rows, rt, scale) for s, rows in
                         (("val", val_all), ("test", test_rows)) if len(rows)}
    auc = _auc(D, held, S, cfg.representation, cfg.seed, cfg.center) if D is not None else {}
    probe_final = {n: probe_fn(models[n]) for n in ("selected", "last")} if D is not None else {}
    flat = {f"{n}/{s}/{k}": v for n, r in results.items() for s, e in r.items()
            for k, v in {**e["overall"], **e["diagnostics"]}.items()}
    out = {"method": cfg.method, "selected_step": int(best["step"]), "steps": cfg.steps, **facts,
           "selected_checkpoint": str(task.best_path()), "pose_config": pre_cfg.pose_config().__dict__,
           "results": results, "test_note": test_note, "flat": flat, "discriminator_auc": auc, "d_probe": probe_final,
           "scale_source": scale,
           "facts": run_facts(pre_cfg, data, selected),
           "wall_time_s": time.perf_counter() - t0, "train_time_s": train_time,
           "train_step_s": float(hist["time_s"].iloc[-1] / max(1, len(hist))) if len(hist) else None,
           "runtime": {"device": str(rt.device), "bf16": rt.dtype is not None, "channels_last": rt.channels_last,
                       "threads": torch.get_num_threads()}}
    rec.write_metrics(out)
    return {"run_id": rec.id, "dir": rec.dir, "metrics": out, "history": hist, "model": selected,
            "models": models, "store": store, "split": split, "runtime": rt, "D": D}


def summary_table(metrics: dict, split: str = "test") -> pd.DataFrame:
    """Pre-trained / selected / last: MPJPE (abs, root-relative, PA) mm, 2D px, diagnostics."""
    cols = ["mpjpe_abs", "mpjpe_rr", "mpjpe_pa", "epe_2d", "accel_pred", "jitter_ratio", "bone_cv_pred",
            "angle_viol_pred"]
    rows = {n: {**r[split]["overall"], **r[split]["diagnostics"]} for n, r in metrics["results"].items()
            if split in r}
    return pd.DataFrame(rows).T.reindex(columns=cols)


# ---------------------------------------------------------------- notebooks' helpers
def ensure_pretrain(cfg: AdversarialConfig, steps: int = 40, frozen_steps: int = 10, batch_size: int = 16) -> str:
    """The pre-training run ``cfg`` starts from; if none matches (or for smoke runs), run a short
    one with these step counts (a study runs the pre-training stage itself)."""
    from handlib.train.pretrain import PretrainConfig, run_pretrain

    if not cfg.smoke:  # smoke runs always pre-train afresh: a stale smoke record must not be reused
        try:
            return find_pretrain_run(cfg)
        except FileNotFoundError:
            if cfg.pretrain_run:
                raise
    elif cfg.pretrain_run:
        return cfg.pretrain_run
    pc = PretrainConfig(dataset=cfg.dataset, root=cfg.root, preset=cfg.preset, appearance_shift=cfg.appearance_shift,
                        protocol=cfg.protocol,
                        fraction=cfg.fraction, seed=cfg.pretrain_seed, image_size=cfg.image_size, steps=steps,
                        frozen_steps=frozen_steps, batch_size=batch_size, smoke=cfg.smoke, device=cfg.device,
                        cache_root=cfg.cache_root, results=cfg.results, progress=cfg.progress)
    return run_pretrain(pc)["run_id"]


def load_selected(run_id: str, results: str | None = None) -> PoseModel:
    """M at the selected step of a finished adversarial-stage run (e.g. a baseline to compare)."""
    from handlib.models.pose import PoseConfig
    from handlib.paths import results_dir

    met = json.loads((results_dir(results) / "runs" / run_id / "metrics.json").read_text())
    path = Path(met["selected_checkpoint"])
    if not path.exists():
        raise FileNotFoundError(f"{run_id}: selected checkpoint {path} is gone (cache wiped?)")
    m = PoseModel(PoseConfig(**met["pose_config"]))
    m.load_state_dict(load_checkpoint(path)["M"])
    return m


def predict_sequence(out: dict, models: dict[str, PoseModel], length: int = 64) -> dict[str, dict]:
    """Predictions of each model on the first ``length`` consecutive frames of the longest test
    run (``plot_sequence``'s input); ``out`` is ``run_adversarial``'s result."""
    store, split = out["store"], out["split"]
    test_seqs = list(dict.fromkeys(store.meta["sequence"].to_numpy()[split.test_rows]))
    runs = store.frame_runs(test_seqs)
    r = runs.iloc[int(runs["length"].to_numpy().argmax())]
    rows = np.arange(r["start"], r["start"] + min(length, r["length"]))
    scale = out["metrics"]["scale_source"]
    return {name: predict(m.to(out["runtime"].device), store, rows, out["runtime"], 64, scale)
            for name, m in models.items()}


def find_comparison(cfg: AdversarialConfig, pretrain_run: str, method: str = "supervised") -> str | None:
    """The finished run of ``method`` that is this run's compute-matched baseline (same
    pre-training run, seed, steps and batches), or None."""
    keys = ("seed", "steps", "batch_size", "unlabelled_frames", "lr", "smoke")
    for r in read_records(cfg.results, stage="adversarial"):
        c = r["config"]["config"]
        if (c.get("method") == method and c.get("pretrain_run") == pretrain_run
                and all(c.get(k) == getattr(cfg, k) for k in keys)):
            return r["config"]["run_id"]
    return None
