"""Supervised pre-training of M on the labelled frames (the paper pre-trains twice: BN with
batch statistics, then BN frozen at its aggregate statistics). One stage = one run record:
``results/runs/<run_id>/{config.json, metrics.json, history.csv, split.csv}``; checkpoints live
in ``cache_dir()/checkpoints/<run_id>/data-<id>-code-<hash>/<phase>/last.pt``, never in git,
and the record names the final one (``metrics.json["checkpoint"]``, read by
``stage_record.find_pretrain``). The scaffolding shared with later stages is ``handlib.train.stage``.

Model selection (``select_on``): every evaluation (``eval_every``, both BN phases, on all
validation frames by default) that improves the chosen validation error keeps M's weights in
``<checkpoint root>/best/best-<step>.pt``; the selected M is evaluated and named as the
record's checkpoint, the last step's errors are reported beside it (``at_last_step``).
The record also holds the mean-pose baseline (the labelled frames' mean pose predicted for
every frame: the floor M must clear), the validation noise (spread of the last evaluations)
and sequence-bootstrap intervals of every split's errors (``evaluate.sequence_bootstrap``).

Defaults changed for the second pose regime (finer heatmaps, augmentation, selection on all
validation frames); ``PretrainConfig.legacy`` holds the values older records were made with,
applied by ``PretrainConfig.from_record`` to keys such a record lacks.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlib import metrics as M
from handlib.config import ConfigError, defaults, param
from handlib.data.datasets import LabelledFrames
from handlib.data.handsim.augment import HandAugment
from handlib.geometry import project
from handlib.losses import supervised_loss
from handlib.models.pose import PoseConfig, PoseModel, PoseParams
from handlib.repro import atomic_write_text, seed_everything
from handlib.skeleton import ref_bone_length
from handlib.train.bn import set_train_mode
from handlib.train.evaluate import evaluate_splits, flat_metrics
from handlib.train.loop import LoopConfig, LoopParams, WarmupParams, load_checkpoint, resolve_runtime, train
from handlib.train.stage_data import DataParams, build_split, check_image_size, load_data
from handlib.train.stage_eval import final_evaluation, val_eval_fn
from handlib.train.stage_record import RecordParams, checkpoint_block, checkpoint_root, make_record, run_facts

SELECT_ON = ("val_mpjpe_abs", "val_mpjpe_rr", "val_epe_2d", "last")
VAL_NOISE_LAST = 3  # evaluations whose spread is the validation noise


@dataclass(frozen=True)
@defaults(steps=2000, ckpt_every=500, warmup_steps=50)
class PretrainConfig(RecordParams, WarmupParams, LoopParams, PoseParams, DataParams):
    """Data (``DataParams``), pose model (``PoseParams``), loop (``LoopParams``: ``steps`` are
    phase 1's, on BN batch statistics; ``warmup_steps`` phase 1's warm-up) and record
    (``RecordParams``) parameters are inherited; the pre-training's own are declared here."""

    stage = "pretrain"
    # values of changed defaults that records made before them were made with (``from_record``)
    legacy = {"head_stride": 16, "augment": False, "eval_max_frames": 512, "select_on": "last"}
    val_fraction: float = param(0.1, range=(0.0, 0.5))
    split_seed: int | None = param(None, range=(0, None),
                                   help="seed of the labelled/val split; None = seed (vary both together)")
    augment: bool = param(True, help="label-consistent image augmentation (HandAugment) of the labelled batches")
    frozen_steps: int = param(500, range=(0, None), help="phase 2 steps (BN frozen), bn_phase='both'")
    batch_size: int = param(32, range=(2, 4096))
    frozen_lr: float = param(1e-4, range=(0.0, 1.0), help="phase 2 (BN frozen) peak learning rate")
    lambda_z: float = param(1.0, range=(0.0, None))
    lambda_root: float = param(0.1, range=(0.0, None))
    bn_phase: str = param("both", choices=("batch", "frozen", "both"),
                          help="batch: phase 1 only; frozen: phase 2 from init_checkpoint; both")
    init_checkpoint: str | None = param(None, help="phase-1 checkpoint for bn_phase='frozen'")
    test_crop: str = param("gt", choices=("gt", "previous"),
                           help="test crops: 'gt' from the frame's labels, 'previous' label-free (t-1, t-2 boxes)")
    missing_images: str = param("raise", choices=("raise", "skip"), help="FPHAB: frames without an image")
    eval_max_frames: int = param(0, range=(0, None), help="val frames for periodic eval; 0 = all")
    select_on: str = param("val_mpjpe_abs", choices=SELECT_ON,
                           help="validation error whose best evaluation gives the final M; 'last' = last step")

    def validate(self) -> None:
        if self.fraction <= 0:
            raise ConfigError(f"PretrainConfig.fraction: {self.fraction} must be > 0")
        if self.image_size % 32:
            raise ConfigError(f"PretrainConfig.image_size: {self.image_size} must be a multiple of 32")
        if self.bn_phase == "frozen" and not self.init_checkpoint:
            raise ConfigError("PretrainConfig.init_checkpoint: required when bn_phase='frozen'")
        if self.dataset != "handsim" and not (self.root or os.environ.get(f"HANDLIB_{self.dataset.upper()}_ROOT")):
            raise ConfigError(f"PretrainConfig.root: required for dataset {self.dataset!r} (or set "
                              f"HANDLIB_{self.dataset.upper()}_ROOT)")

    def pose_config(self) -> PoseConfig:
        return PoseConfig(image_size=self.image_size, **{f.name: getattr(self, f.name) for f in fields(PoseParams)})

    def phases(self) -> list[tuple[str, int]]:
        """(BN phase, steps) in training order."""
        if self.bn_phase == "batch":
            return [("batch", self.steps)]
        if self.bn_phase == "frozen":
            return [("frozen", self.frozen_steps or self.steps)]
        return [("batch", self.steps)] + ([("frozen", self.frozen_steps)] if self.frozen_steps else [])

    def loop_config(self, steps: int, warmup: int, lr: float) -> LoopConfig:
        """The loop of one BN phase: its steps, warm-up and peak learning rate."""
        return LoopConfig(**{**self.loop_params(), "steps": steps, "lr": lr}, warmup_steps=warmup,
                          resume=not self.smoke)


LEGACY = PretrainConfig.legacy


class BestKeeper:
    """Keeps M's weights at the best (lowest) validation value of ``metric`` over every
    evaluation it is shown, one file per improving step (``best-<step>.pt``: a resumed run whose
    restored state predates the last file written still finds the weights it selected)."""

    def __init__(self, model: PoseModel, metric: str, directory: Path):
        self.model, self.metric, self.directory = model, metric, Path(directory)
        self.best = {"value": math.inf, "step": 0}

    def path(self, step: int | None = None) -> Path:
        return self.directory / f"best-{self.best['step'] if step is None else step:06d}.pt"

    def update(self, step: int, res: dict[str, float]) -> None:
        v = res.get(self.metric)
        if v is None or not math.isfinite(v) or v >= self.best["value"]:
            return
        path = self.path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"step": step, "metric": self.metric, "value": float(v),
                    "modules": {"M": self.model.state_dict()}}, tmp)
        os.replace(tmp, path)
        self.best = {"value": float(v), "step": int(step)}

    def prune(self) -> None:
        """Delete every best-*.pt but the selected one."""
        for f in self.directory.glob("best-*.pt"):
            if f != self.path():
                f.unlink()


class SupervisedTask:
    """M on labelled frames: L_2D + lambda_z L_z + lambda_root L_root (training scale = GT bone).
    With a ``keeper`` (``BestKeeper``), each evaluation at loop step s offers M's weights as
    those of global step ``step_offset + s``."""

    def __init__(self, model: PoseModel, bn_phase: str, lambda_z: float, lambda_root: float,
                 eval_fn=None, keeper: BestKeeper | None = None, step_offset: int = 0):
        self.model, self.bn_phase = model, bn_phase
        self.lambda_z, self.lambda_root, self.eval_fn = lambda_z, lambda_root, eval_fn
        self.keeper, self.step_offset = keeper, step_offset
        self.modules = {"M": model}
        self.optimised = {"M": list(model.parameters())}

    # the loop's optional hooks: the keeper's best so far goes into (and back from) checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.keeper.best)} if self.keeper is not None else {}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if self.keeper is not None and "best" in st:
            self.keeper.best = dict(st["best"])

    def train_mode(self) -> None:
        set_train_mode(self.model, self.bn_phase)

    def step(self, batch: dict, step: int):
        b = batch["labelled"]
        C = ref_bone_length(b["j3d"])
        out = self.model(b["image"], b["K"], C)
        loss, parts = supervised_loss(out, b, C, self.model.cfg.image_size, self.lambda_z, self.lambda_root)
        return {"M": loss}, {k: float(v.detach()) for k, v in parts.items()}

    def evaluate(self, step: int) -> dict[str, float]:
        res = self.eval_fn() if self.eval_fn is not None else {}
        if self.keeper is None:
            return res
        self.keeper.update(self.step_offset + step, res)
        return {**res, "best_step": float(self.keeper.best["step"])}


def mean_pose_block(store, split, rows: dict[str, np.ndarray]) -> dict:
    """The mean-pose baseline: the labelled frames' mean pose (3D mm camera frame, 2D crop px)
    predicted for every frame of each named split of rows (rows without 3D labels dropped)."""
    lab = np.asarray(split.labelled_rows)
    j3d = torch.from_numpy(np.asarray(store.j3d[lab])).double()
    K = torch.from_numpy(np.asarray(store.K[lab])).double()
    out: dict[str, Any] = {"source": f"mean pose of the {len(lab)} labelled frames, predicted for every frame"}
    for name, r in rows.items():
        r = np.asarray(r)
        g3 = torch.from_numpy(np.asarray(store.j3d[r])).double()
        keep = ~torch.isnan(g3).flatten(1).any(1)
        if keep.any():
            g3, gK = g3[keep], torch.from_numpy(np.asarray(store.K[r])).double()[keep]
            out[name] = M.mean_pose_baseline(j3d, project(j3d, K), g3, project(g3, gK))
    return out


def vs_mean_pose(res: dict, base: dict) -> dict[str, float]:
    """M's error as a fraction below the mean pose's, per split and headline metric."""
    return {f"{s}/{k}": 1.0 - res[s]["overall"][k] / base[s][k] for s in ("val", "test")
            if s in base and "overall" in res.get(s, {}) for k in ("mpjpe_abs", "mpjpe_rr", "mpjpe_pa", "epe_2d")
            if base[s][k] > 0}


def val_noise(history: list[dict], last: int = VAL_NOISE_LAST) -> dict:
    """Spread (max - min and standard deviation) of each validation error over the last
    ``last`` periodic evaluations: how much the selection signal moves between evaluations."""
    rows = [r for r in history if any(k.startswith("eval_val_") for k in r)][-last:]
    out: dict[str, Any] = {"evaluations": len(rows), "steps": [int(r["step"]) for r in rows]}
    for k in ("val_mpjpe_abs", "val_mpjpe_rr", "val_epe_2d"):
        v = np.array([r[f"eval_{k}"] for r in rows if f"eval_{k}" in r], dtype=np.float64)
        if len(v):
            out[k] = {"values": v.tolist(), "range": float(v.max() - v.min()),
                      "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def run_pretrain(cfg: PretrainConfig, data=None, split=None) -> dict[str, Any]:
    """Build data, train (one or two BN phases), evaluate on val and test, write the record.

    ``data``/``split`` may be passed in (tests, notebooks that already hold them).
    Returns run_id, dir, metrics, history (DataFrame), model, store, split, runtime, checkpoint.
    """
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    data = load_data(cfg) if data is None else data
    store = data.store
    check_image_size(cfg, store)
    split = build_split(cfg, store) if split is None else split
    rt = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    rec = make_record(cfg, rt, split)
    ckroot = checkpoint_root(cfg, rec, data)

    model = PoseModel(cfg.pose_config())
    lab = np.asarray(split.labelled_rows)
    model.bone_prior.fill_(float(ref_bone_length(torch.from_numpy(store.j3d[lab])).mean()))
    eval_fn = val_eval_fn(model, store, split, rt, cfg)
    transform = HandAugment() if cfg.augment else None
    streams = {"labelled": (LabelledFrames(store, lab, transform), cfg.batch_size)}
    if cfg.bn_phase == "frozen":
        model.load_state_dict(load_checkpoint(Path(cfg.init_checkpoint))["modules"]["M"])
    keeper = BestKeeper(model, cfg.select_on, ckroot / "best") if cfg.select_on != "last" else None
    history, phases, offset = [], [], 0
    for phase, steps in cfg.phases():
        task = SupervisedTask(model, phase, cfg.lambda_z, cfg.lambda_root, eval_fn, keeper, offset)
        lr = cfg.frozen_lr if phase == "frozen" else cfg.lr
        warm = cfg.warmup_steps if phase == "batch" else 0
        h = train(task, streams, cfg.loop_config(steps, warm, lr), ckroot / phase, runtime=rt)
        history += [{"phase": phase, **r, "step": r["step"] + offset} for r in h]
        phases.append({"phase": phase, "steps": steps, "lr": lr, "path": str(ckroot / phase / "last.pt")})
        offset += steps
    ckpt = ckroot / phases[-1]["phase"] / "last.pt"
    train_time = time.perf_counter() - t0

    selection: dict[str, Any] = {"select_on": cfg.select_on, "selected_step": offset, "last_step": offset}
    if keeper is not None and keeper.best["step"]:
        selection.update(selected_step=int(keeper.best["step"]), selected_value=keeper.best["value"])
        if keeper.best["step"] != offset:  # the last step's errors beside the selected M's
            test = np.asarray(split.test_rows)
            last = evaluate_splits(model, store, {"val": np.asarray(split.val_rows),
                                                  "test": test[~np.isnan(store.j3d[test]).any(axis=(1, 2))]},
                                   rt, 64, cfg.scale_source)
            selection["at_last_step"] = {s: {"overall": r["overall"], "bootstrap": r.get("bootstrap")}
                                         for s, r in last.items() if isinstance(r, dict)}
        ckpt = keeper.path()
        model.load_state_dict(load_checkpoint(ckpt)["modules"]["M"])
        keeper.prune()
    res = final_evaluation(model, data, split, rt, cfg, out_dir=rec.dir)
    base = mean_pose_block(store, split, {"val": split.val_rows, "test": split.test_rows})
    facts = run_facts(cfg, data, model)
    hist = pd.DataFrame(history)
    atomic_write_text(rec.path("history.csv"), hist.to_csv(index=False))
    out_metrics = {**res, "flat": flat_metrics(res), "selection": selection, "mean_pose": base,
                   "vs_mean_pose": vs_mean_pose(res, base), "val_noise": val_noise(history),
                   "wall_time_s": time.perf_counter() - t0,
                   "train_time_s": train_time, "n_labelled": int(len(lab)),
                   "runtime": rt.record(),
                   "bone_prior_mm": float(model.bone_prior),
                   # pre-training uses no motion: the split's motion source is not claimed
                   "split": {**split.summary(), "motion_source": facts["motion_source"]},
                   "run_facts": facts, "checkpoint": checkpoint_block(cfg, data, ckpt, phases)}
    rec.write_metrics(out_metrics)
    return {"run_id": rec.id, "dir": rec.dir, "metrics": out_metrics, "history": hist, "model": model,
            "store": store, "split": split, "runtime": rt, "checkpoint": ckpt}
