"""Can validation tell two settings apart? Two finished continuation runs from the same pre-trained
M, their Ms evaluated on every validation frame, and the difference of their errors with a
*paired* sequence-bootstrap interval (whole validation sequences resampled, both models' frames
together), beside each model's own (unpaired) interval.

A search compares settings on the same validation frames, so what decides whether it can
separate them is the paired interval: sequence difficulty, which dominates the unpaired interval
of a 14-sequence split, cancels in the difference. Test is never read.

    python -m handlib.train.val_paired --runs RUN_A RUN_B [--model selected|last]

Prints one JSON line: n_frames, n_sequences and, per error (abs, rr mm; 2d px), each model's mean
with its unpaired interval, and the mean difference a - b with its paired interval.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlib import metrics
from handlib.paths import results_dir
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.adversarial_data import rebuild_split
from handlib.train.d_correlation import load_m
from handlib.train.evaluate import BOOTSTRAP_N, predict
from handlib.train.loop import resolve_runtime
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import find_pretrain, load_data


def per_frame_errors(pred: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Each frame's absolute / root-relative MPJPE (mm) and 2D error (px): (N,) arrays."""
    return {"abs": metrics.mpjpe(pred["pred3d"], pred["gt3d"]).double().numpy(),
            "rr": metrics.rr_mpjpe(pred["pred3d"], pred["gt3d"]).double().numpy(),
            "2d": metrics.epe_2d(pred["pred2d"], pred["gt2d"]).double().numpy()}


def paired_sequence_ci(err_a: np.ndarray, err_b: np.ndarray, seqs: np.ndarray, n_boot: int = BOOTSTRAP_N,
                       seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Means of two models' per-frame errors on the same frames (N,) and of their difference,
    each with a sequence-bootstrap interval: ``a`` / ``b`` resample sequences for one model
    alone (unpaired), ``diff`` resamples them for the per-frame difference (paired)."""
    err_a, err_b = np.asarray(err_a, float), np.asarray(err_b, float)
    if err_a.shape != err_b.shape or len(err_a) != len(seqs):
        raise ValueError(f"paired_sequence_ci: {err_a.shape}, {err_b.shape} errors for {len(seqs)} frames")
    out: dict[str, Any] = {}
    for name, v in (("a", err_a), ("b", err_b), ("diff", err_a - err_b)):
        lo, hi = metrics.group_bootstrap_ci(torch.from_numpy(v), seqs, n_boot, level, seed)
        out[name] = {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi)}
    out["diff"]["excludes_zero"] = bool(out["diff"]["lo"] > 0 or out["diff"]["hi"] < 0)
    return out


def run_paired(run_a: str, run_b: str, results: str | None = None, model: str = "selected",
               n_boot: int = BOOTSTRAP_N) -> dict[str, Any]:
    """The module docstring's comparison of two finished continuation runs."""
    runs = [results_dir(results) / "runs" / r for r in (run_a, run_b)]
    mets = [json.loads((r / "metrics.json").read_text()) for r in runs]
    if mets[0]["pretrain_run"] != mets[1]["pretrain_run"]:
        raise ValueError(f"val_paired: {run_a} and {run_b} start from different pre-trained Ms "
                         f"({mets[0]['pretrain_run']} vs {mets[1]['pretrain_run']}): not paired")
    cfg = AdversarialConfig.from_record(json.loads((runs[0] / "config.json").read_text())["config"])
    pre = find_pretrain(run_id=mets[0]["pretrain_run"], results=results)
    pre_cfg = PretrainConfig.from_record(pre["config"])
    data = load_data(pre_cfg)
    split = rebuild_split(pre["config"], data.store, Path(pre["split_csv"]))
    rt = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    errs, rows = [], None
    for met in mets:
        M = load_m(met, pre, pre_cfg.pose_config(), model).to(rt.device)
        pred = predict(M, data.store, split.val_rows, rt)
        rows = pred["row"].numpy()
        errs.append(per_frame_errors(pred))
    seqs = data.store.meta["sequence"].astype(str).to_numpy()[rows]
    out: dict[str, Any] = {"a": run_a, "b": run_b, "model": model, "n_frames": int(len(rows)),
                           "n_sequences": int(len(set(seqs.tolist())))}
    for k in errs[0]:
        out[k] = paired_sequence_ci(errs[0][k], errs[1][k], seqs, n_boot, seed=cfg.seed)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.train.val_paired")
    p.add_argument("--runs", required=True, nargs=2, help="two finished continuation runs (same pre-trained M)")
    p.add_argument("--model", default="selected", choices=("selected", "last"))
    p.add_argument("--results", default=None)
    p.add_argument("--boot", type=int, default=BOOTSTRAP_N)
    args = p.parse_args(argv)
    print(json.dumps(run_paired(*args.runs, args.results, args.model, args.boot)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
