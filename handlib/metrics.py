"""Hand pose metrics, all 3D errors in mm, 2D in px. Batched torch, (..., 21, 3).

Each ``*_per_joint`` function returns (..., 21) errors so that per-joint and
per-frame results are available; ``evaluate`` reduces them to a flat dict.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from handlib.skeleton import REF_BONE, ROOT

PCK_THRESHOLDS_MM = torch.linspace(0.0, 50.0, 101)


def joint_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """Euclidean error per joint: (..., J, D) -> (..., J)."""
    return (pred - gt).norm(dim=-1)


def mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """Absolute mean per-joint position error per frame, (..., J, 3) -> (...,) mm."""
    return joint_errors(pred, gt).mean(-1)


def root_relative(j3d: Tensor, root: int = ROOT) -> Tensor:
    return j3d - j3d[..., root : root + 1, :]


def rr_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """Root-relative MPJPE per frame (both skeletons moved to their own root)."""
    return mpjpe(root_relative(pred), root_relative(gt))


def align_sc_tr(pred: Tensor, gt: Tensor, bone: tuple[int, int] = REF_BONE, root: int = ROOT) -> Tensor:
    """Scale-translation alignment (HO3D evaluation): rescale ``pred`` so its reference
    bone has the ground truth's length, then move its root onto the ground-truth root."""
    n, m = bone
    s_p = (pred[..., n, :] - pred[..., m, :]).norm(dim=-1)
    s_g = (gt[..., n, :] - gt[..., m, :]).norm(dim=-1)
    scale = torch.where(s_p > 0, s_g / s_p.clamp_min(1e-12), torch.ones_like(s_p))
    return root_relative(pred, root) * scale[..., None, None] + gt[..., root : root + 1, :]


def align_procrustes(pred: Tensor, gt: Tensor, allow_reflection: bool = False) -> Tensor:
    """Similarity alignment of pred onto gt (scaled orthogonal Procrustes, Umeyama 1991):
    the scale, translation and orthogonal map that minimise the squared error.

    By default the map is a proper rotation (det = +1, Umeyama's sign correction), so a
    mirrored prediction (a left hand for a right one) keeps its error. This differs from the
    FreiHAND / HO3D evaluation code, which uses ``scipy.linalg.orthogonal_procrustes`` without
    a determinant check and hence also allows reflections: ``allow_reflection=True``
    reproduces that behaviour. On non-mirrored predictions the two agree; they differ only
    where the best orthogonal map is a reflection, where ours is larger or equal."""
    mu_p, mu_g = pred.mean(-2, keepdim=True), gt.mean(-2, keepdim=True)
    X, Y = pred - mu_p, gt - mu_g  # (..., J, 3)
    H = X.transpose(-1, -2) @ Y  # (..., 3, 3)
    U, S, Vh = torch.linalg.svd(H)
    D = torch.ones_like(S)
    if not allow_reflection:
        D[..., -1] = torch.sign(torch.linalg.det(Vh.transpose(-1, -2) @ U.transpose(-1, -2)))
    R = Vh.transpose(-1, -2) @ (D[..., None] * U.transpose(-1, -2))  # maps X -> Y
    var = (X**2).sum((-1, -2))
    scale = (S * D).sum(-1) / var.clamp_min(1e-12)
    return scale[..., None, None] * X @ R.transpose(-1, -2) + mu_g


def pa_mpjpe(pred: Tensor, gt: Tensor, allow_reflection: bool = False) -> Tensor:
    """MPJPE after ``align_procrustes`` (rotations only by default; see there)."""
    return mpjpe(align_procrustes(pred, gt, allow_reflection), gt)


def st_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    return mpjpe(align_sc_tr(pred, gt), gt)


def pck_curve(errors: Tensor, thresholds: Tensor = PCK_THRESHOLDS_MM) -> Tensor:
    """Fraction of joint errors (any shape) below each threshold -> (T,)."""
    e = errors.reshape(-1, 1)
    return (e <= thresholds.to(e)).float().mean(0)


def auc(curve: Tensor, thresholds: Tensor = PCK_THRESHOLDS_MM) -> float:
    """Area under a PCK curve, normalised to [0, 1] over the threshold range."""
    t = thresholds.to(curve)
    return float(torch.trapezoid(curve, t) / (t[-1] - t[0]))


def epe_2d(pred2d: Tensor, gt2d: Tensor) -> Tensor:
    """Mean 2D end-point error per frame, px."""
    return joint_errors(pred2d, gt2d).mean(-1)


def evaluate(
    pred3d: Tensor, gt3d: Tensor, pred2d: Tensor | None = None, gt2d: Tensor | None = None
) -> dict[str, float]:
    """All metrics as means over frames: (N, 21, 3) mm [and (N, 21, 2) px] -> dict."""
    pred3d, gt3d = pred3d.double(), gt3d.double()
    rr = joint_errors(root_relative(pred3d), root_relative(gt3d))
    out = {
        "mpjpe_abs": float(mpjpe(pred3d, gt3d).mean()),
        "mpjpe_rr": float(rr.mean()),
        "mpjpe_st": float(st_mpjpe(pred3d, gt3d).mean()),
        "mpjpe_pa": float(pa_mpjpe(pred3d, gt3d).mean()),
        "auc_rr": auc(pck_curve(rr)),
        "auc_pa": auc(pck_curve(joint_errors(align_procrustes(pred3d, gt3d), gt3d))),
    }
    if pred2d is not None and gt2d is not None:
        out["epe_2d"] = float(epe_2d(pred2d.double(), gt2d.double()).mean())
    return out


def per_frame_table(pred3d: Tensor, gt3d: Tensor) -> dict[str, Tensor]:
    """Per-frame metric vectors (N,), for grouping by action / sequence in pandas."""
    return {
        "mpjpe_abs": mpjpe(pred3d, gt3d),
        "mpjpe_rr": rr_mpjpe(pred3d, gt3d),
        "mpjpe_st": st_mpjpe(pred3d, gt3d),
        "mpjpe_pa": pa_mpjpe(pred3d, gt3d),
    }


def mean_pose(j3d: Tensor, j2d: Tensor) -> tuple[Tensor, Tensor]:
    """The training set's mean pose: mean j3d (21, 3) mm (camera frame, root included) and mean
    j2d (21, 2) px over frames (N, 21, 3) / (N, 21, 2). Its root-relative pose is the mean of the
    root-relative poses (the mean commutes with moving each skeleton to its root)."""
    return j3d.double().mean(0), j2d.double().mean(0)


def mean_pose_baseline(train_j3d: Tensor, train_j2d: Tensor, gt3d: Tensor, gt2d: Tensor) -> dict[str, float]:
    """``evaluate`` of the floor a pose model must clear: the training set's mean pose
    (``mean_pose``) predicted for every frame of (N, 21, 3) / (N, 21, 2) ground truth."""
    p3, p2 = mean_pose(train_j3d, train_j2d)
    return evaluate(p3.expand(gt3d.shape), gt3d, p2.expand(gt2d.shape), gt2d)


def group_bootstrap_ci(values: Tensor, groups, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of per-frame ``values`` (N,) when whole groups (e.g. the
    sequences frames come from; any (N,) labels) are resampled with replacement: frames of one
    video are not independent, so the interval says how much the mean would move on other
    videos like these. The mean of a resample is its groups' summed values over their frames."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    if len(v) != len(g):
        raise ValueError(f"group_bootstrap_ci: {len(v)} values but {len(g)} group labels")
    if not len(v):
        raise ValueError("group_bootstrap_ci: no values")
    sums, counts = np.bincount(g, weights=v), np.bincount(g).astype(np.float64)  # per group
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(sums), np.full(len(sums), 1.0 / len(sums)), size=n_boot)  # (n_boot, G)
    means = (w @ sums) / np.maximum(w @ counts, 1.0)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))
