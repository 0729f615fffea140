"""Notebook helpers of the adversarial stage: tables, the pre-training run a notebook starts
from, a finished run's selected M, predictions on a test sequence, the compute-matched baseline.
(Re-exported by ``handlib.train.adversarial``.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from handlib.models.pose import PoseConfig, PoseModel
from handlib.paths import results_dir
from handlib.repro import read_records
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.adversarial_data import find_pretrain_run
from handlib.train.evaluate import predict
from handlib.train.loop import load_checkpoint
from handlib.train.pretrain import PretrainConfig, run_pretrain


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
    if not cfg.smoke:  # smoke runs always pre-train afresh: a stale smoke record must not be reused
        try:
            return find_pretrain_run(cfg)
        except FileNotFoundError:
            if cfg.pretrain_run:
                raise
    elif cfg.pretrain_run:
        return cfg.pretrain_run
    pc = PretrainConfig(**cfg.pretrain_params(), steps=steps, frozen_steps=frozen_steps, batch_size=batch_size,
                        device=cfg.device, cache_root=cfg.cache_root, results=cfg.results, progress=cfg.progress)
    return run_pretrain(pc)["run_id"]


def load_selected(run_id: str, results: str | None = None) -> PoseModel:
    """M at the selected step of a finished adversarial-stage run (e.g. a baseline to compare)."""
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
