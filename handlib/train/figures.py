"""Figures for the pre-training stage: predictions vs ground truth on test frames
(2D overlay on the input crop, 3D root-relative view), and the training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from handlib.skeleton import BONES

GT_COLOR, PRED_COLOR = "tab:green", "tab:red"


def _skeleton_2d(ax, j2d: np.ndarray, color: str, label: str) -> None:
    for i, (p, c) in enumerate(BONES):
        ax.plot(j2d[[p, c], 0], j2d[[p, c], 1], color=color, lw=1.2, label=label if i == 0 else None)
    ax.scatter(j2d[:, 0], j2d[:, 1], s=4, color=color)


def _skeleton_3d(ax, j3d: np.ndarray, color: str) -> None:
    for p, c in BONES:
        ax.plot(j3d[[p, c], 0], j3d[[p, c], 2], -j3d[[p, c], 1], color=color, lw=1.2)


def plot_predictions(store, pred: dict, n: int = 4, seed: int = 0):
    """Top row: input crops with GT (green) and predicted (red) 2D skeletons; bottom row:
    root-relative 3D skeletons (mm; x right, z forward, y up). ``pred`` from ``evaluate.predict``."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(pred["row"]), min(n, len(pred["row"])), replace=False))
    fig = plt.figure(figsize=(3 * len(idx), 6))
    for k, i in enumerate(idx):
        row = int(pred["row"][i])
        ax = fig.add_subplot(2, len(idx), k + 1)
        ax.imshow(store.images[row])
        _skeleton_2d(ax, pred["gt2d"][i].numpy(), GT_COLOR, "GT")
        _skeleton_2d(ax, pred["pred2d"][i].numpy(), PRED_COLOR, "pred")
        ax.set_title(f"{store.meta['sequence'].iloc[row]} #{store.meta['frame'].iloc[row]}", fontsize=8)
        ax.set_axis_off()
        if k == 0:
            ax.legend(fontsize=7, loc="lower left")
        ax3 = fig.add_subplot(2, len(idx), len(idx) + k + 1, projection="3d")
        for key, col in (("gt3d", GT_COLOR), ("pred3d", PRED_COLOR)):
            j = pred[key][i].numpy()
            _skeleton_3d(ax3, j - j[:1], col)
        err = float(np.linalg.norm((pred["pred3d"][i] - pred["pred3d"][i][:1]).numpy()
                                   - (pred["gt3d"][i] - pred["gt3d"][i][:1]).numpy(), axis=-1).mean())
        ax3.set_title(f"root-rel err {err:.1f} mm", fontsize=8)
        ax3.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def plot_history(hist: pd.DataFrame):
    """Training loss (and validation root-relative MPJPE where evaluated) against the step."""
    fig, ax = plt.subplots(1, 2, figsize=(9, 3))
    ax[0].plot(hist["step"], hist["loss_M"], lw=0.8)
    ax[0].set(xlabel="step", ylabel="train loss", yscale="log")
    if "eval_val_mpjpe_rr" in hist:
        v = hist.dropna(subset=["eval_val_mpjpe_rr"])
        ax[1].plot(v["step"], v["eval_val_mpjpe_rr"], "o-", label="root-rel")
        ax[1].plot(v["step"], v["eval_val_mpjpe_abs"], "s-", label="abs")
        ax[1].set(xlabel="step", ylabel="val MPJPE (mm)")
        ax[1].legend()
    fig.tight_layout()
    return fig
