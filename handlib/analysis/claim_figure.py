"""The claim's figure: each method's paired gain over the supervised continuation, seed by seed,
beside whether its D judged motion.

Left: test absolute MPJPE of method - supervised (same pre-trained M, same labelled batches),
one dot per seed, the mean and its 95 % t-interval (from 3 seeds), for the model selected on validation and
for the last step (no selection). Right: D's final paired share on held-out real windows (the
mean over jitter 2 / 5 mm, bone 2 / 5 %, shuffle; 0.5 = blind to motion), one dot per seed.
Reads only the records' table (``aggregate``), never a run.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from handlib.analysis.aggregate import ci95

SENSITIVITY = [f"dsens/final/{k}" for k in ("jitter_2", "jitter_5", "bone_2", "bone_5", "shuffle")]
MIN_SEEDS_CI = 3  # a t-interval over 2 seeds spans +-12.7 standard errors: drawn from 3 seeds on
VIEWS = (("selected/test/mpjpe_abs", "selected on validation", "tab:red", "o"),
         ("last/test/mpjpe_abs", "last step", "tab:blue", "s"))


def claim_gains(df: pd.DataFrame, col: str, baseline: str = "supervised", by: str = "method") -> pd.DataFrame:
    """Per (method, pre-training run): ``col`` minus the baseline's on the same pre-trained M.
    Columns: method, pretrain_run, diff."""
    base = df[df[by] == baseline].set_index("pretrain_run")[col]
    rows = [{"method": m, "pretrain_run": r.pretrain_run, "diff": r[col] - base[r.pretrain_run]}
            for m, g in df[df[by] != baseline].groupby(by, sort=False) for _, r in g.iterrows()
            if r.pretrain_run in base.index and np.isfinite(r[col]) and np.isfinite(base[r.pretrain_run])]
    return pd.DataFrame(rows, columns=["method", "pretrain_run", "diff"])


def plot_claim(df: pd.DataFrame, baseline: str = "supervised", by: str = "method", dpi: int = 100):
    """The figure described in the module docstring; ``df``: one row per run (the records'
    table), ``by`` names the method column (the claim uses the variant: the paper's D and D
    with options apart)."""
    methods = [m for m in dict.fromkeys(df[by]) if m != baseline]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.5, 0.45 * len(methods) + 1.4), dpi=dpi, sharey=True,
                                 gridspec_kw={"width_ratios": [2, 1]})
    y = {m: i for i, m in enumerate(methods)}
    for k, (col, label, color, marker) in enumerate(VIEWS):
        if col not in df or df[col].isna().all():
            continue
        g = claim_gains(df, col, baseline, by)
        off = 0.15 * (k - 0.5)
        for m, gm in g.groupby("method", sort=False):
            yy = y[m] + off
            ax.scatter(gm["diff"], np.full(len(gm), yy), s=12, color=color, alpha=0.45, marker=marker,
                       label=None)
            mean, lo, hi = ci95(gm["diff"].to_numpy())
            if len(gm) >= MIN_SEEDS_CI and np.isfinite(lo):
                ax.plot([lo, hi], [yy, yy], color=color, lw=1.5)
            ax.scatter([mean], [yy], s=36, color=color, marker=marker, edgecolor="k", lw=0.5,
                       label=label if m == g["method"].iloc[0] else None)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(len(methods)), methods)
    ax.invert_yaxis()
    ax.set_xlabel(f"test absolute MPJPE - {baseline} (mm; < 0: better)")
    ax.legend(fontsize=7, loc="best")
    sens = [c for c in SENSITIVITY if c in df]
    if sens:
        for m in methods:
            s = df[df[by] == m][sens].mean(axis=1).dropna()
            if len(s):
                bx.scatter(s, np.full(len(s), y[m]), s=14, color="tab:green")
    bx.axvline(0.5, color="gray", lw=0.8, ls="--")
    bx.set_xlim(0.3, 1.05)
    bx.set_xlabel("D's paired share (0.5 = blind)")
    n = df.groupby(by).size()
    fig.suptitle(f"Paired gain over {baseline} per seed (n = {int(n.min())}-{int(n.max())} seeds per method)",
                 fontsize=9)
    fig.tight_layout()
    return fig
