"""Does D call M's worse windows less real? A finished adversarial run's D scored on M's windows
of *all* validation videos, with the Spearman correlation of the score with each window's error
and a bootstrap interval.

The stage's own probe (``d_probe``, at every evaluation) scores ``d_probe_frames`` validation
frames, 64 windows of 16 at the default: its correlations move by +-0.15 between evaluations.
This one reads the run's record, rebuilds its data and split, loads its D (final or warm
start) and M (last step, selected step or the pre-trained M) and scores every non-overlapping
validation window. Test is never read.

    python -m handlib.train.d_correlation --run RUN_ID [--which final|warm_start] [--model last|selected|pretrained]

Prints one JSON line: ``n_windows`` and, per error (``abs``, ``rr``: per-frame MPJPE of the
window; ``vel``: its motion error, see ``predict_probe``), ``{"rho", "lo", "hi"}`` (95 %
bootstrap over windows), plus D's accuracy on these windows vs the held-out real ones.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from handlib.analysis.d_probe import d_scores, predict_probe, probe_windows, score_probe
from handlib.analysis.probe_d import resolve_d
from handlib.models.motion import load_discriminator
from handlib.models.pose import PoseModel
from handlib.paths import results_dir
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.adversarial_data import hold_out, motion_source, rebuild_split
from handlib.train.loop import load_checkpoint, resolve_runtime
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import find_pretrain, load_data

ERRORS = ("abs", "rr", "vel")


def spearman_ci(score: np.ndarray, err: np.ndarray, n_boot: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict[str, float]:
    """Spearman's rho of ``score`` with ``err`` and its percentile bootstrap interval (windows
    resampled with replacement). (N,) arrays, N >= 3."""
    score, err = np.asarray(score, float), np.asarray(err, float)
    if len(score) != len(err) or len(score) < 3:
        raise ValueError(f"spearman_ci: need >= 3 paired values, got {len(score)} and {len(err)}")
    rho = float(spearmanr(score, err).statistic)
    idx = np.random.default_rng(seed).integers(0, len(score), (n_boot, len(score)))
    boot = np.array([spearmanr(score[i], err[i]).statistic for i in idx])
    boot = boot[np.isfinite(boot)]
    a = (1 - level) / 2
    return {"rho": rho, "lo": float(np.quantile(boot, a)), "hi": float(np.quantile(boot, 1 - a))}


def load_m(met: dict, pre: dict, pose_config, model: str = "last") -> PoseModel:
    """M of a finished adversarial run: its last step (the loop's ``last.pt``, the step the final D
    trained against), the selected step, or the pre-trained M it started from."""
    m = PoseModel(pose_config)
    if model == "pretrained":
        m.load_state_dict(load_checkpoint(Path(pre["checkpoint"]))["modules"]["M"])
    elif model == "selected":
        m.load_state_dict(load_checkpoint(Path(met["selected_checkpoint"]))["M"])
    elif model == "last":
        m.load_state_dict(load_checkpoint(Path(met["selected_checkpoint"]).parent / "last.pt")["modules"]["M"])
    else:
        raise ValueError(f"load_m: model {model!r} (last, selected, pretrained)")
    return m


def run_correlation(run_id: str, results: str | None = None, which: str = "final", model: str = "last",
                    max_frames: int = 0, n_boot: int = 2000, data=None) -> dict[str, Any]:
    """D's score vs M's window errors on the run's validation windows (all of them unless
    ``max_frames``); see the module docstring."""
    run = results_dir(results) / "runs" / run_id
    met = json.loads((run / "metrics.json").read_text())
    cfg = AdversarialConfig.from_record(json.loads((run / "config.json").read_text())["config"])
    if not cfg.uses_d:
        raise ValueError(f"d_correlation: {run_id} is a {cfg.method!r} run, it has no D")
    pre = find_pretrain(run_id=met["pretrain_run"], results=results)
    pre_cfg = PretrainConfig.from_record(pre["config"])
    data = data if data is not None else load_data(pre_cfg)
    split = rebuild_split(pre["config"], data.store, Path(pre["split_csv"]))
    rt = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    D, extra = load_discriminator(resolve_d(run_id, which, results))
    D.to(rt.device)
    _, seqs, Ks = motion_source(cfg, data, split)
    _, held = hold_out(seqs, Ks, cfg.d_holdout_every)  # the held-out real windows (never trained on)
    frames = max_frames or len(split.val_rows)
    probe = probe_windows(data.store, split.val_sequences, held, cfg.window, frames)
    M = load_m(met, pre, pre_cfg.pose_config(), model).to(rt.device)
    pred = predict_probe(M, probe, rt, cfg.representation, cfg.center)
    scored = score_probe(D, pred, probe.real, cfg.representation, cfg.center)
    D.eval()
    fake = d_scores(D, pred["x"])
    out: dict[str, Any] = {"run": run_id, "which": which, "model": model, "n_windows": len(fake),
                           "d_acc": scored.get("d_acc"), "d_score_pred": scored.get("d_score_pred"),
                           "d_score_real": scored.get("d_score_real")}
    errors = [e for e in ERRORS if np.isfinite(pred[f"err_{e}"].numpy()).all()]  # S = 1: no motion error
    for e in errors:
        out[e] = spearman_ci(fake, pred[f"err_{e}"].numpy(), n_boot=n_boot, seed=cfg.seed)
    out["mean_error_mm"] = {e: float(pred[f"err_{e}"].mean()) for e in errors}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.train.d_correlation")
    p.add_argument("--run", required=True, nargs="+", help="finished adversarial / pose-prior run id(s)")
    p.add_argument("--which", default="final", choices=("final", "warm_start"))
    p.add_argument("--model", default="last", choices=("last", "selected", "pretrained"))
    p.add_argument("--results", default=None)
    p.add_argument("--max-frames", type=int, default=0, help="validation frames (0: all)")
    p.add_argument("--boot", type=int, default=2000)
    args = p.parse_args(argv)
    for r in args.run:
        print(json.dumps(run_correlation(r, args.results, args.which, args.model, args.max_frames, args.boot)),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
