"""Figures for the pre-training stage: predictions vs ground truth on test frames
(2D overlay on the input crop, 3D root-relative view), and the training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from handlib.skeleton import BONES

GT_COLOR, PRED_COLOR = "tab:green", "tab:red"


def skeleton_2d(ax, j2d: np.ndarray, color: str, label: str) -> None:
    """A (21, 2) px skeleton in one colour (``label`` on its first bone, for a legend)."""
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
        skeleton_2d(ax, pred["gt2d"][i].numpy(), GT_COLOR, "GT")
        skeleton_2d(ax, pred["pred2d"][i].numpy(), PRED_COLOR, "pred")
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


def plot_adversarial_history(hist: pd.DataFrame):
    """The adversarial stage's curves: M's losses (supervised parts, L_MM, lambda_MM), D's mean
    scores on real and predicted windows and its accuracy, validation MPJPE at the evaluations."""
    fig, ax = plt.subplots(1, 3, figsize=(13, 3))
    for k in ("l2d", "lz", "l_mm", "l_smooth", "loss_D"):
        if k in hist and hist[k].notna().any():
            ax[0].plot(hist["step"], hist[k].rolling(10, min_periods=1).mean(), lw=0.8, label=k)
    ax[0].set(xlabel="step", ylabel="loss (10-step mean)", yscale="log")
    ax[0].legend(fontsize=7)
    if "d_real" in hist:
        d = hist.dropna(subset=["d_real"])
        for k, style in (("d_real", "-"), ("d_fake", "-"), ("d_acc", ":")):
            ax[1].plot(d["step"], d[k].rolling(10, min_periods=1).mean(), style, lw=0.8, label=k)
        if "lambda_mm" in hist:
            ax1b = ax[1].twinx()
            ax1b.plot(hist["step"], hist["lambda_mm"], "k--", lw=0.6)
            ax1b.set_ylabel("lambda_MM (dashed)", fontsize=8)
        ax[1].set(xlabel="step", ylabel="D score / accuracy")
        ax[1].legend(fontsize=7)
    else:
        ax[1].set_axis_off()
    if "eval_val_mpjpe_abs" in hist:
        v = hist.dropna(subset=["eval_val_mpjpe_abs"])
        ax[2].plot(v["step"], v["eval_val_mpjpe_abs"], "s-", label="abs")
        ax[2].plot(v["step"], v["eval_val_mpjpe_rr"], "o-", label="root-rel")
        ax[2].set(xlabel="step", ylabel="val MPJPE (mm)")
        ax[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_sequence(store, preds: dict, joint: int = 8, n_skeletons: int = 3):
    """One test sequence over time. Top: ``joint``'s root-relative depth (mm) per frame for the
    ground truth and each model in ``preds`` (name -> ``evaluate.predict`` output on the same
    consecutive rows); bottom: root-relative skeletons (x, y in mm) of a few frames."""
    names = list(preds)
    first = preds[names[0]]
    frames = store.meta["frame"].to_numpy()[first["row"].numpy()]
    fig = plt.figure(figsize=(3 * n_skeletons + 3, 6))
    ax = fig.add_subplot(2, 1, 1)
    gt = first["gt3d"].numpy()
    ax.plot(frames, gt[:, joint, 2] - gt[:, 0, 2], color="k", lw=2, label="ground truth")
    for name in names:
        p = preds[name]["pred3d"].numpy()
        ax.plot(frames, p[:, joint, 2] - p[:, 0, 2], lw=1, label=name)
    seq = store.meta["sequence"].iloc[int(first["row"][0])]
    ax.set(xlabel="frame", ylabel=f"joint {joint} depth - root (mm)", title=str(seq))
    ax.legend(fontsize=7, ncol=len(names) + 1)
    pick = np.linspace(0, len(frames) - 1, n_skeletons).round().astype(int)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, i in enumerate(pick):
        a = fig.add_subplot(2, n_skeletons, n_skeletons + k + 1)
        for name, col in [("ground truth", "k")] + [(n, colors[j % len(colors)]) for j, n in enumerate(names)]:
            j3 = gt[i] if name == "ground truth" else preds[name]["pred3d"][i].numpy()
            j3 = j3 - j3[:1]
            for p, c in BONES:
                a.plot(j3[[p, c], 0], -j3[[p, c], 1], color=col, lw=1.5 if name == "ground truth" else 0.9)
        a.set_title(f"frame {frames[i]}", fontsize=8)
        a.set_aspect("equal")
        a.tick_params(labelsize=6)
    fig.tight_layout()
    return fig
