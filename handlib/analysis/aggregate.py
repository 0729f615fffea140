"""Aggregation: run records -> tables. Reads only ``results/runs/*/{config,metrics}.json``.

- ``adversarial_runs``: one row per finished adversarial-stage run (its settings, the data
  of its pre-training run, validation and test metrics of the selected / pre-trained / last
  M, diagnostics, D's probe, wall time, commit);
- ``pretrain_runs``: one row per finished pre-training run, shaped like those rows with method
  ``pre-trained`` (its M's metrics under ``selected/``): the starting point of every
  continuation and the only model at 100 % labels;
- ``search_table``: the validation search, best setting per method marked (test not shown);
- ``describe``: mean, std and n over seeds; ``paired``: per-seed differences of two methods
  on the same pre-training run, with a t-based 95 % confidence interval;
- ``to_markdown``: a table as Markdown (tabulate).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from handlib.paths import results_dir
from handlib.repro import read_records

# the settings that tell adversarial-stage runs of one method apart (what a search varies)
D_TRAINING = ("d_lr", "motion_batch", "d_replay", "d_warm_steps")
D_OPTIONS = ("d_nda", "d_input", "d_pool")
SETTINGS = {
    "supervised": ("lr",),
    "smoothness": ("lr", "lambda_smooth"),
    "pose_prior": ("lr", "lambda_mm", *D_TRAINING),
    "adversarial": ("lr", "lambda_mm", "lambda_warmup", "d_warmup", *D_TRAINING, "d_every", "S", "d_depth",
                    "spectral_norm", "rotate", "representation", *D_OPTIONS),
}
# config keys renamed since older records were written (new name: old name)
FORMER_NAMES = {"rotate": "augment"}
# D's paired sensitivity checks (handlib.analysis.d_sensitivity), as recorded in "d_sensitivity"
SENSITIVITY = ("jitter_2", "jitter_5", "bone_2", "bone_5", "shuffle", "reverse")
METRICS = ("mpjpe_abs", "mpjpe_rr", "mpjpe_pa", "epe_2d")
DIAGNOSTICS = ("jitter_ratio", "bone_cv_pred", "angle_viol_pred", "accel_pred")
DATA_KEYS = ("dataset", "preset", "protocol", "fraction", "appearance_shift", "image_size")


OPTIONS = "adversarial + D options"  # the variant name of the adversarial method with D's options
NDA_ONLY = "adversarial + D options, NDA only"  # ... whose D never trains on M's windows (d_nda 1)


# D's motion-aware options: (config key, its off value, its name in tables)
OPTION_ROWS = (("d_nda", 0.0, "NDA"), ("d_input", "pose", "frame differences"), ("d_pool", "score", "window pool"))


def options_on(row) -> list[str]:
    """Names of the motion-aware options of D a run has on (missing / NaN: off, older records)."""
    return [name for k, off, name in OPTION_ROWS if not pd.isna(row.get(k, off)) and row.get(k, off) != off]


def variant(row: dict) -> str:
    """The method with its D: "adversarial + D options" when any motion-aware option of D
    (negative data augmentation, frame differences, window pooling) is on, "..., NDA only" when
    its fakes are only the corrupted real windows (d_nda 1: D never trains on M's windows, a
    learned motion prior rather than an adversary), else the method."""
    if row["method"] != "adversarial" or not options_on(row):
        return row["method"]
    nda = row.get("d_nda", 0.0)
    return NDA_ONLY if not pd.isna(nda) and nda >= 1.0 else OPTIONS


def _setting(config: dict, key: str):
    """A setting of a run's config, read under its former name in records older than the rename."""
    return config.get(key, config.get(FORMER_NAMES.get(key, key)))


def _get(d: dict, *path, default=np.nan):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _head(r: dict, data: dict, **fields) -> dict:
    """The first columns of a run's row: id, commit, ``fields`` (method, seeds, steps), smoke
    and the data setting (``data``: the config that holds the DATA_KEYS)."""
    c = r["config"]["config"]
    row = {"run_id": r["config"]["run_id"], "commit": r["config"].get("commit", "")[:8], **fields,
           "smoke": c.get("smoke", False)}
    row |= {k: data.get(k) for k in DATA_KEYS}
    row["appearance_shift"] = 1.0 if row["appearance_shift"] is None else row["appearance_shift"]
    return row


def adversarial_runs(results=None) -> pd.DataFrame:
    """One row per finished adversarial-stage run; see the module docstring."""
    pre = {r["config"]["run_id"]: r for r in read_records(results, stage="pretrain")}
    rows = []
    for r in read_records(results, stage="adversarial"):
        c, m = r["config"]["config"], r["metrics"]
        p = pre.get(m.get("pretrain_run"), {})
        pc = _get(p, "config", "config", default={})
        row = _head(r, {k: pc.get(k, c.get(k)) for k in DATA_KEYS}, method=c["method"], seed=c["seed"],
                    pretrain_run=m.get("pretrain_run"), pretrain_seed=pc.get("seed", c.get("pretrain_seed")),
                    steps=c["steps"])
        row |= {k: _setting(c, k) for k in sorted({k for v in SETTINGS.values() for k in v})}
        row["variant"] = variant(row)
        row["selected_step"] = m.get("selected_step")
        row["selected_full_step"] = m.get("selected_full_step", np.nan)
        for model in ("selected", "pretrained", "last"):
            for split in ("val", "test"):
                for k in METRICS:
                    row[f"{model}/{split}/{k}"] = _get(m, "results", model, split, "overall", k)
                    # the model selected among steps with lambda_MM at full strength (newer records)
                    if model == "selected":
                        row[f"selected_full/{split}/{k}"] = _get(m, "selected_full", split, "overall", k)
        for k in DIAGNOSTICS:
            row[f"test/{k}"] = _get(m, "results", "selected", "test", "diagnostics", k)
            row[f"pretrained/test/{k}"] = _get(m, "results", "pretrained", "test", "diagnostics", k)
        for model in ("selected", "pretrained"):  # per-action absolute error on test
            for a, v in (_get(m, "results", model, "test", "per_action", default={}) or {}).items():
                row[f"action/{model}/{a}"] = v.get("mpjpe_abs", np.nan)
        for k in ("d_acc", "d_auc", "d_spearman_abs", "d_spearman_rr", "d_spearman_vel"):
            row[f"probe/{k}"] = _get(m, "d_probe", "last", k)
        for when in ("warm_start", "final"):  # share of held-out real windows D scores above their perturbed copy
            for k in SENSITIVITY:
                row[f"dsens/{when}/{k}"] = _get(m, "d_sensitivity", when, k, "paired")
        for k, v in (m.get("discriminator_auc") or {}).items():
            if k != "n_windows":
                row[f"auc/{k}"] = v
        row |= _probe_history(results_dir(results) / "runs" / row["run_id"] / "history.csv")
        row["wall_s"] = m.get("wall_time_s")
        rows.append(row)
    return pd.DataFrame(rows)


def pretrain_runs(results=None) -> pd.DataFrame:
    """One row per finished pre-training run; see the module docstring."""
    rows = []
    for r in read_records(results, stage="pretrain"):
        c, m = r["config"]["config"], r["metrics"]
        row = _head(r, c, method="pre-trained", seed=c["seed"], pretrain_run=r["config"]["run_id"],
                    pretrain_seed=c["seed"], steps=c.get("steps", np.nan) + c.get("frozen_steps", 0))
        for split in ("val", "test"):
            for k in METRICS:
                row[f"selected/{split}/{k}"] = _get(m, split, "overall", k)
        mean_pose = (m.get("mean_pose") or {}).get("test") or {}  # the floor: the labelled frames' mean pose
        for k in METRICS:
            row[f"mean_pose/test/{k}"] = mean_pose.get(k, np.nan)
        row["selected_step"] = (m.get("selection") or {}).get("selected_step", np.nan)
        row["wall_s"] = m.get("wall_time_s")
        rows.append(row)
    return pd.DataFrame(rows)


def _probe_history(path: Path) -> dict[str, float]:
    """Means over the run's evaluations of D's probe on validation windows (accuracy, AUC,
    score-error Spearman), from history.csv (runs before the probe existed: none)."""
    if not path.exists():
        return {}
    h = pd.read_csv(path)
    cols = {f"eval_val_d_{k}": f"probe_mean/d_{k}" for k in ("acc", "auc", "spearman_abs", "spearman_rr",
                                                               "spearman_vel")}
    return {v: float(h[k].mean()) for k, v in cols.items() if k in h and h[k].notna().any()}


def setting_label(row: pd.Series | dict, keys=None) -> str:
    """'lambda_mm=0.01, S=16' style label of a run's method-specific settings (``keys``, default
    all of the method's)."""
    keys = SETTINGS.get(row["method"], ()) if keys is None else keys
    return ", ".join(f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keys)


def search_table(df: pd.DataFrame, score: str = "selected/val/mpjpe_abs") -> pd.DataFrame:
    """Validation only: each method's settings sorted by ``score``; ``chosen`` marks the best.
    The paper's D and D with options are searched apart (``variant``)."""
    by = "variant" if "variant" in df else "method"
    cols = ["method", "variant", "setting", "selected_step", score, "selected/val/mpjpe_rr", "selected/val/mpjpe_pa",
            "probe/d_acc", "probe/d_spearman_abs", "run_id"]

    def varying(v: str) -> list[str]:
        sub = df[df[by] == v]
        opts = SETTINGS.get(sub.method.iloc[0], ())
        return [k for k in opts if sub[k].astype(str).nunique() > 1] or list(opts[:1])

    keys = {v: varying(v) for v in df[by].unique()}
    t = df.assign(setting=[setting_label(r, keys[r[by]]) for _, r in df.iterrows()])
    t = t.sort_values([by, score])
    t["chosen"] = ~t.duplicated(by)
    return t[[c for c in cols if c in t] + ["chosen"]].reset_index(drop=True)


def describe(df: pd.DataFrame, cols, by="method") -> pd.DataFrame:
    """Mean, std and n of ``cols`` per group."""
    g = df.groupby(by, sort=False)[list(cols)]
    out = pd.concat({"mean": g.mean(), "std": g.std(ddof=1)}, axis=1)
    out[("n", "")] = g.size()
    return out


def ci95(x) -> tuple[float, float, float]:
    """Mean and the two-sided 95 % t-interval of the mean (NaN bounds for n < 2)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan,) * 3
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def paired(df: pd.DataFrame, a: str, b: str, col: str, on: str = "pretrain_run") -> tuple[pd.DataFrame, dict]:
    """Per-``on`` differences ``a - b`` of ``col`` (runs of methods a and b from the same
    pre-training run), and their summary: n, mean, std, 95 % CI, whether it excludes 0."""
    x = df[df.method == a].set_index(on)[col]
    y = df[df.method == b].set_index(on)[col]
    if x.index.duplicated().any() or y.index.duplicated().any():
        raise ValueError(f"paired: more than one {a!r} or {b!r} run per {on}; filter to one setting first")
    both = x.index.intersection(y.index)
    d = pd.DataFrame({a: x[both], b: y[both]})
    d["diff"] = d[a] - d[b]
    m, lo, hi = ci95(d["diff"])
    summ = {"a": a, "b": b, "metric": col, "n": len(d), "mean_diff": m,
            "std_diff": float(d["diff"].std(ddof=1)) if len(d) > 1 else math.nan, "ci_low": lo, "ci_high": hi,
            "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0))}
    return d, summ


# Setting columns hold grid values (0.25, 0.05), not measurements: printed as given, not at `floatfmt`.
SETTING_COLUMNS = ("fraction", "appearance_shift")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".1f", index: bool = True) -> str:
    fmt = [floatfmt] * (1 if index else 0) + [
        "g" if c in SETTING_COLUMNS else floatfmt for c in df.columns]
    return df.to_markdown(floatfmt=fmt, index=index)
