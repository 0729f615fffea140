"""Evaluate M on store rows: every metric of ``handlib.metrics`` per split, per action, overall.

The hand scale used to de-normalise z_rel and the root depth is either the ground-truth
reference bone of each test frame (``scale_source="gt"``, as most papers) or M's bone-length
prior (``"prior"``); it is recorded next to the metrics.

Each split's result also counts M's closed-form root solutions without an exact solution
(``closed_form_root``: invalid / clamped counts and fractions, see ``models.pose``).
Frames without 3D labels (HO3D's evaluation split) are predicted by ``predict_unlabelled``
(hand scale from the prior, no metrics).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from handlib import metrics
from handlib.data.datasets import FrameStore, LabelledFrames, batch_loader, images_to_tensor
from handlib.skeleton import ref_bone_length

BOOTSTRAP_N = 2000  # sequence-bootstrap resamples of every evaluated split


@torch.no_grad()
def predict(model: nn.Module, store: FrameStore, rows: np.ndarray, runtime, batch_size: int = 64,
            scale_source: str = "gt") -> dict[str, Tensor]:
    """Run M in eval mode over ``rows``: pred/gt j3d (N,21,3) mm, j2d (N,21,2) px, rows (N,)."""
    if scale_source not in ("gt", "prior"):
        raise ValueError(f"scale_source: {scale_source!r} not in ('gt', 'prior')")
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {k: [] for k in ("pred3d", "pred2d", "gt3d", "gt2d", "row")}
    for b in batch_loader(LabelledFrames(store, np.sort(rows)), batch_size, shuffle=False):
        b = runtime.to(b)
        C = ref_bone_length(b["j3d"]) if scale_source == "gt" else None
        with runtime.autocast():
            p = model(b["image"], b["K"], C)
        for k, v in (("pred3d", p.j3d), ("pred2d", p.j2d), ("gt3d", b["j3d"]), ("gt2d", b["j2d"]),
                     ("row", b["row"]), *_root_flags(model)):
            out.setdefault(k, []).append(v.float().cpu() if v.is_floating_point() else v.cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items() if v}


def _root_flags(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The last forward's closed-form root flags, where the model keeps them (PoseModel)."""
    valid, clamped = getattr(model, "last_root_valid", None), getattr(model, "last_root_clamped", None)
    return [] if valid is None or clamped is None else [("root_valid", valid), ("root_clamped", clamped)]


@torch.no_grad()
def predict_unlabelled(model: nn.Module, store: FrameStore, rows: np.ndarray, runtime,
                       batch_size: int = 64) -> dict[str, Tensor]:
    """M in eval mode on frames that may lack labels: pred3d (N,21,3) mm, pred2d (N,21,2) px,
    row (N,), root flags. The hand scale is M's bone-length prior (no label is read)."""
    was_training = model.training
    model.eval()
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    out: dict[str, list[Tensor]] = {}
    for i in range(0, len(rows), batch_size):
        r = rows[i:i + batch_size]
        b = runtime.to({"image": images_to_tensor(store.images[r]),
                        "K": torch.from_numpy(np.asarray(store.K[r])).float()})
        with runtime.autocast():
            p = model(b["image"], b["K"], None)
        for k, v in (("pred3d", p.j3d), ("pred2d", p.j2d), ("row", torch.from_numpy(r)), *_root_flags(model)):
            out.setdefault(k, []).append(v.float().cpu() if v.is_floating_point() else v.cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def root_summary(pred: dict[str, Tensor]) -> dict | None:
    """Counts and fractions of invalid / clamped closed-form root solutions in a prediction."""
    if "root_valid" not in pred:
        return None
    n = int(len(pred["root_valid"]))
    inv, cl = int((~pred["root_valid"]).sum()), int(pred["root_clamped"].sum())
    return {"n_frames": n, "invalid": inv, "invalid_fraction": inv / n if n else 0.0,
            "clamped": cl, "clamped_fraction": cl / n if n else 0.0}


def sequence_bootstrap(pred: dict[str, Tensor], meta: pd.DataFrame, n_boot: int = BOOTSTRAP_N,
                       level: float = 0.95, seed: int = 0) -> dict:
    """95 % intervals of the mean abs / root-relative MPJPE (mm) and 2D EPE (px) over the
    predicted frames when whole sequences are resampled (``metrics.group_bootstrap_ci``)."""
    seqs = meta["sequence"].astype(str).to_numpy()[pred["row"].numpy()]
    per_frame = {"mpjpe_abs": metrics.mpjpe(pred["pred3d"], pred["gt3d"]),
                 "mpjpe_rr": metrics.rr_mpjpe(pred["pred3d"], pred["gt3d"]),
                 "epe_2d": metrics.epe_2d(pred["pred2d"], pred["gt2d"])}
    out: dict = {"by": "sequence", "n_sequences": int(len(set(seqs.tolist()))), "level": level, "n_boot": n_boot}
    for k, v in per_frame.items():
        out[k] = list(metrics.group_bootstrap_ci(v.double(), seqs, n_boot, level, seed))
    return out


def evaluate_predictions(pred: dict[str, Tensor], meta: pd.DataFrame) -> dict:
    """{'overall': metrics, 'per_action': {action: metrics}, 'n_frames': N, 'bootstrap':
    sequence-bootstrap intervals of the headline errors (``sequence_bootstrap``)}."""
    res = {"n_frames": int(len(pred["row"])),
           "overall": metrics.evaluate(pred["pred3d"], pred["gt3d"], pred["pred2d"], pred["gt2d"])}
    if len(pred["row"]) and "sequence" in meta:
        res["bootstrap"] = sequence_bootstrap(pred, meta)
    actions = meta["action"].to_numpy()[pred["row"].numpy()]
    per = {}
    for a in sorted(set(actions.tolist()), key=str):
        sel = torch.from_numpy(actions == a)
        per[str(a)] = metrics.evaluate(pred["pred3d"][sel], pred["gt3d"][sel], pred["pred2d"][sel],
                                       pred["gt2d"][sel])
    res["per_action"] = per
    roots = root_summary(pred)
    if roots is not None:
        res["closed_form_root"] = roots
    return res


def evaluate_splits(model: nn.Module, store: FrameStore, splits: dict[str, np.ndarray], runtime,
                    batch_size: int = 64, scale_source: str = "gt") -> dict:
    """Metrics for each named split of rows (empty splits skipped) + the scale source used."""
    out: dict = {"scale_source": scale_source}
    for name, rows in splits.items():
        if len(rows):
            out[name] = evaluate_predictions(
                predict(model, store, rows, runtime, batch_size, scale_source), store.meta)
    return out


def flat_metrics(res: dict, prefix: str = "") -> dict[str, float]:
    """The overall metrics of an ``evaluate_splits`` result as a flat dict 'split/metric'."""
    return {f"{prefix}{s}/{k}": v for s, r in res.items() if isinstance(r, dict) and "overall" in r
            for k, v in r["overall"].items()}
