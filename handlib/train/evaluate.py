"""Evaluate M on store rows: every metric of ``handlib.metrics`` per split, per action, overall.

The hand scale used to de-normalise z_rel and the root depth is either the ground-truth
reference bone of each test frame (``scale_source="gt"``, as most papers) or M's bone-length
prior (``"prior"``); it is recorded next to the metrics.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from handlib import metrics
from handlib.data.datasets import FrameStore, LabelledFrames, batch_loader
from handlib.skeleton import ref_bone_length


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
                     ("row", b["row"])):
            out[k].append(v.float().cpu() if v.is_floating_point() else v.cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def evaluate_predictions(pred: dict[str, Tensor], meta: pd.DataFrame) -> dict:
    """{'overall': metrics, 'per_action': {action: metrics}, 'n_frames': N}."""
    res = {"n_frames": int(len(pred["row"])),
           "overall": metrics.evaluate(pred["pred3d"], pred["gt3d"], pred["pred2d"], pred["gt2d"])}
    actions = meta["action"].to_numpy()[pred["row"].numpy()]
    per = {}
    for a in sorted(set(actions.tolist()), key=str):
        sel = torch.from_numpy(actions == a)
        per[str(a)] = metrics.evaluate(pred["pred3d"][sel], pred["gt3d"][sel], pred["pred2d"][sel],
                                       pred["gt2d"][sel])
    res["per_action"] = per
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
    return {f"{prefix}{s}/{k}": v for s, r in res.items() if isinstance(r, dict)
            for k, v in r["overall"].items()}
