"""Supervised pre-training of M on the labelled frames (the paper pre-trains twice: BN with
batch statistics, then BN frozen at its aggregate statistics). One stage = one run record:
``results/runs/<run_id>/{config.json, metrics.json, history.csv, split.csv}``; checkpoints live
in ``cache_dir()/checkpoints/<run_id>/data-<id>-code-<hash>/<phase>/last.pt``, never in git,
and the record names the final one (``metrics.json["checkpoint"]``, read by
``stage.find_pretrain``). The scaffolding shared with later stages is ``handlib.train.stage``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlib.config import ConfigError, StageConfig, param
from handlib.data.datasets import LabelledFrames
from handlib.losses import supervised_loss
from handlib.models.pose import PoseConfig, PoseModel
from handlib.repro import atomic_write_text, seed_everything
from handlib.skeleton import ref_bone_length
from handlib.train.bn import set_train_mode
from handlib.train.evaluate import flat_metrics
from handlib.train.loop import LoopConfig, load_checkpoint, resolve_runtime, train
from handlib.train.stage import (  # noqa: F401  (code_hash, load_data: re-exported for older callers)
    build_split,
    check_image_size,
    checkpoint_block,
    checkpoint_root,
    code_hash,
    final_evaluation,
    load_data,
    make_record,
    run_facts,
    val_eval_fn,
)


@dataclass(frozen=True)
class PretrainConfig(StageConfig):
    stage = "pretrain"
    dataset: str = param("handsim", choices=("handsim", "fphab", "ho3d"))
    root: str | None = param(None, help="dataset root on disk (real datasets)")
    preset: str = param("smoke", choices=("smoke", "quick", "full"), help="HandSim preset")
    appearance_shift: float | None = param(None, range=(0.0, 1.0),
                                           help="HandSim: labelled vs other subjects' look; None = preset's (1.0)")
    protocol: int = param(2, choices=(1, 2))
    fraction: float = param(1.0, range=(0.0, 1.0))
    val_fraction: float = param(0.1, range=(0.0, 0.5))
    seed: int = param(0, range=(0, None))
    split_seed: int | None = param(None, range=(0, None),
                                   help="seed of the labelled/val split; None = seed (vary both together)")
    image_size: int = param(128, range=(64, 256))
    head: str = param("heatmap", choices=("heatmap", "regression"))
    refine: bool = param(True)
    augment: bool = param(False, help="HandSim image augmentation; off: effect not measured yet")
    steps: int = param(2000, range=(1, None), help="phase 1 steps (BN batch statistics)")
    frozen_steps: int = param(500, range=(0, None), help="phase 2 steps (BN frozen), bn_phase='both'")
    batch_size: int = param(32, range=(2, 4096))
    lr: float = param(1e-3, range=(0.0, 1.0))
    frozen_lr: float = param(1e-4, range=(0.0, 1.0), help="phase 2 (BN frozen) peak learning rate")
    weight_decay: float = param(1e-4, range=(0.0, 1.0))
    warmup_steps: int = param(50, range=(0, None))
    grad_clip: float = param(1.0, range=(0.0, None))
    lambda_z: float = param(1.0, range=(0.0, None))
    lambda_root: float = param(0.1, range=(0.0, None))
    bn_phase: str = param("both", choices=("batch", "frozen", "both"),
                          help="batch: phase 1 only; frozen: phase 2 from init_checkpoint; both")
    init_checkpoint: str | None = param(None, help="phase-1 checkpoint for bn_phase='frozen'")
    scale_source: str = param("gt", choices=("gt", "prior"), help="hand scale at test time")
    test_crop: str = param("gt", choices=("gt", "previous"),
                           help="test crops: 'gt' from the frame's labels, 'previous' label-free (t-1, t-2 boxes)")
    missing_images: str = param("raise", choices=("raise", "skip"), help="FPHAB: frames without an image")
    eval_every: int = param(0, range=(0, None))
    eval_max_frames: int = param(512, range=(0, None), help="val frames for periodic eval; 0 = all")
    ckpt_every: int = param(500, range=(0, None))
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    precision: str = param("auto", choices=("auto", "bf16", "fp32"))
    channels_last: str = param("auto", choices=("auto", "on", "off"))
    num_workers: int = param(0, range=(0, 16))
    smoke: bool = param(False, help="smoke run: fresh checkpoints, test on at most 256 frames")
    cache_root: str | None = param(None)
    results: str | None = param(None, help="results directory (default <repo>/results)")
    progress: bool = param(True)
    run_name: str | None = param(None, help="run id given by the study runner; default: derived from the config")

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
        return PoseConfig(image_size=self.image_size, head=self.head, refine=self.refine,
                          scale_source=self.scale_source)

    def phases(self) -> list[tuple[str, int]]:
        """(BN phase, steps) in training order."""
        if self.bn_phase == "batch":
            return [("batch", self.steps)]
        if self.bn_phase == "frozen":
            return [("frozen", self.frozen_steps or self.steps)]
        return [("batch", self.steps)] + ([("frozen", self.frozen_steps)] if self.frozen_steps else [])

    def loop_config(self, steps: int, warmup: int, lr: float) -> LoopConfig:
        return LoopConfig(steps=steps, lr=lr, weight_decay=self.weight_decay, warmup_steps=warmup,
                          grad_clip=self.grad_clip, eval_every=self.eval_every, ckpt_every=self.ckpt_every,
                          seed=self.seed, device=self.device, precision=self.precision,
                          channels_last=self.channels_last, num_workers=self.num_workers,
                          resume=not self.smoke, progress=self.progress)


class SupervisedTask:
    """M on labelled frames: L_2D + lambda_z L_z + lambda_root L_root (training scale = GT bone)."""

    def __init__(self, model: PoseModel, bn_phase: str, lambda_z: float, lambda_root: float,
                 eval_fn=None):
        self.model, self.bn_phase = model, bn_phase
        self.lambda_z, self.lambda_root, self.eval_fn = lambda_z, lambda_root, eval_fn
        self.modules = {"M": model}
        self.optimised = {"M": list(model.parameters())}

    def train_mode(self) -> None:
        set_train_mode(self.model, self.bn_phase)

    def step(self, batch: dict, step: int):
        b = batch["labelled"]
        C = ref_bone_length(b["j3d"])
        out = self.model(b["image"], b["K"], C)
        loss, parts = supervised_loss(out, b, C, self.model.cfg.image_size, self.lambda_z, self.lambda_root)
        return {"M": loss}, {k: float(v.detach()) for k, v in parts.items()}

    def evaluate(self, step: int) -> dict[str, float]:
        return self.eval_fn() if self.eval_fn is not None else {}


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
    transform = None
    if cfg.augment:
        from handlib.data.handsim import HandAugment
        transform = HandAugment()
    streams = {"labelled": (LabelledFrames(store, lab, transform), cfg.batch_size)}
    if cfg.bn_phase == "frozen":
        model.load_state_dict(load_checkpoint(Path(cfg.init_checkpoint))["modules"]["M"])
    history, phases, offset = [], [], 0
    for phase, steps in cfg.phases():
        task = SupervisedTask(model, phase, cfg.lambda_z, cfg.lambda_root, eval_fn)
        lr = cfg.frozen_lr if phase == "frozen" else cfg.lr
        warm = cfg.warmup_steps if phase == "batch" else 0
        h = train(task, streams, cfg.loop_config(steps, warm, lr), ckroot / phase, runtime=rt)
        history += [{"phase": phase, **r, "step": r["step"] + offset} for r in h]
        phases.append({"phase": phase, "steps": steps, "lr": lr, "path": str(ckroot / phase / "last.pt")})
        offset += steps
    ckpt = ckroot / phases[-1]["phase"] / "last.pt"
    train_time = time.perf_counter() - t0

    res = final_evaluation(model, data, split, rt, cfg, out_dir=rec.dir)
    facts = run_facts(cfg, data, model)
    hist = pd.DataFrame(history)
    atomic_write_text(rec.path("history.csv"), hist.to_csv(index=False))
    out_metrics = {**res, "flat": flat_metrics(res), "wall_time_s": time.perf_counter() - t0,
                   "train_time_s": train_time, "n_labelled": int(len(lab)),
                   "runtime": {"device": str(rt.device), "bf16": rt.dtype is not None,
                               "channels_last": rt.channels_last, "threads": torch.get_num_threads()},
                   "bone_prior_mm": float(model.bone_prior),
                   # pre-training uses no motion: the split's motion source is not claimed
                   "split": {**split.summary(), "motion_source": facts["motion_source"]},
                   "run_facts": facts, "checkpoint": checkpoint_block(cfg, data, ckpt, phases)}
    rec.write_metrics(out_metrics)
    return {"run_id": rec.id, "dir": rec.dir, "metrics": out_metrics, "history": hist, "model": model,
            "store": store, "split": split, "runtime": rt, "checkpoint": ckpt}
