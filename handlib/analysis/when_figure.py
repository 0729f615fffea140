"""When does the motion model help? Each method's paired gain over the supervised continuation as
one data setting moves away from the claim's, the others held at the claim's values.

One panel per setting key that varies in the records: label fraction (Fig. 4b analogue),
appearance shift, protocol (Fig. 4a). In each, per method: one dot per seed (method - supervised
on the same pre-trained M, test absolute MPJPE by default; < 0 is better), the mean over seeds
and its 95 % t-interval where 3 or more seeds ran. Reads only the records' table (``aggregate``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from handlib.analysis.aggregate import ci95
from handlib.analysis.claim_figure import MIN_SEEDS_CI, claim_gains

KEYS = ("fraction", "appearance_shift", "protocol")  # the settings a "when" grid moves, one at a time
LABELS = {"fraction": "labelled frames (%)", "appearance_shift": "appearance shift", "protocol": "protocol"}
COLORS = ("tab:red", "tab:purple", "tab:orange", "tab:green", "tab:brown")


def _tick(key: str, v) -> str:
    return f"{100 * v:g}" if key == "fraction" else (f"P{int(v)}" if key == "protocol" else f"{v:g}")


def when_gains(df: pd.DataFrame, base: dict, col: str = "selected/test/mpjpe_abs", baseline: str = "supervised",
               by: str = "method") -> pd.DataFrame:
    """Per panel key, setting value, method and pre-training run: ``col`` of the method minus the
    baseline's (``claim_gains``), among the runs that match ``base`` on every other key of
    ``KEYS``. Columns: key, value, method, pretrain_run, diff. The claim's own setting appears in
    every panel."""
    out = []
    for key in KEYS:
        d = df
        for k in KEYS:
            if k != key:
                d = d[np.isclose(d[k].astype(float), float(base[k]))]
        for v, g in d.groupby(key, sort=True):
            gains = claim_gains(g, col, baseline, by)
            if len(gains):
                out.append(gains.assign(key=key, value=v))
    cols = ["key", "value", "method", "pretrain_run", "diff"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def plot_when(df: pd.DataFrame, base: dict, col: str = "selected/test/mpjpe_abs", baseline: str = "supervised",
              by: str = "method", dpi: int = 100):
    """The figure of the module docstring; ``base``: the claim's setting ({key: value} for each of
    ``KEYS``); panels only for keys with more than one value in the records."""
    g = when_gains(df, base, col, baseline, by)
    keys = [k for k in KEYS if g[g.key == k].value.nunique() > 1]
    methods = list(dict.fromkeys(g.method))
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1) + 0.6, 3.0), dpi=dpi,
                             sharey=True, squeeze=False)
    for ax, key in zip(axes[0], keys):
        gk = g[g.key == key]
        values = sorted(gk.value.unique())
        for i, m in enumerate(methods):
            color, off = COLORS[i % len(COLORS)], 0.12 * (i - (len(methods) - 1) / 2)
            means = []
            for j, v in enumerate(values):
                x = gk[(gk.value == v) & (gk.method == m)]["diff"].to_numpy()
                if not len(x):
                    means.append(np.nan)
                    continue
                ax.scatter(np.full(len(x), j + off), x, s=10, color=color, alpha=0.45)
                mean, lo, hi = ci95(x)
                if len(x) >= MIN_SEEDS_CI and np.isfinite(lo):
                    ax.plot([j + off] * 2, [lo, hi], color=color, lw=1.5)
                means.append(mean)
            ax.plot(np.arange(len(values)) + off, means, "-o", ms=4, color=color, mec="k", mew=0.5,
                    label=m if key == keys[0] else None)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(range(len(values)), [_tick(key, v) for v in values])
        ax.set_xlabel(LABELS[key] + f" (claim: {_tick(key, base[key])})", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {col.rsplit('/', 1)[-1]} - {baseline} (mm)", fontsize=8)
    if keys:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"When does it help? Paired gain over {baseline} per seed (dots), mean and 95 % CI", fontsize=9)
    fig.tight_layout()
    return fig
