"""Read-only diagnostics of predicted hand motion: *how* a motion model changes M's output.

Beside MPJPE, for predictions on consecutive frames of test or validation sequences:
- jitter: mean joint acceleration (norm of the 2nd finite difference, mm/frame^2) of the
  prediction and of the ground truth, and their ratio (1 = as smooth as the truth);
- bone-length variation: per run of frames and bone, std/mean of the bone's length (a real
  hand's bones do not change length; a per-frame model's predictions do);
- anatomical angle violations: the fraction of frames with a joint angle outside HandSim's
  limits (``handlib.data.handsim.anatomy.LIMITS``), angles recovered from 3D joints by
  inverting HandSim's kinematic model (``dof_angles``);
and the perturbations of real motion windows (``perturb_windows``: joint jitter, bone-length
noise, shuffled or reversed frames, time warps) with which a discriminator D is probed
(``handlib.analysis.d_sensitivity``, paired) and, as "negative" fakes, trained.
``discriminator_auc`` (unpaired) is kept for old records; see its limit there.

Frames are differenced only within a run of consecutive frame numbers of one sequence
(``sequences_of``): a gap in the frame numbers (e.g. an unlabelled or dropped stretch) cuts
the run. Accelerations and bone variation come from ``handlib.analysis.motion_stats`` (one definition
for datasets and predictions), at the data's own frame rate.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import Tensor

from handlib.analysis.motion_stats import accelerations, bone_length_cv
from handlib.data.handsim import anatomy
from handlib.models.motion import MotionDiscriminator, encode_real
from handlib.skeleton import NUM_JOINTS, PARENTS

PERTURBATIONS = ("none", "jitter", "bone", "shuffle", "reverse", "warp")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


# ----------------------------------------------------------------------------- runs of frames
def sequences_of(pred: dict, meta: pd.DataFrame) -> list[np.ndarray]:
    """Index arrays into ``pred`` (positions, not store rows), one per run of consecutive frames
    of one sequence, ordered by frame; runs ordered by sequence then frame. A run is cut where
    the frame number does not increase by exactly 1 (a gap or a repeated frame)."""
    rows = _np(pred["row"]).astype(np.int64)
    if len(rows) == 0:
        return []
    df = pd.DataFrame({"seq": meta["sequence"].to_numpy()[rows], "frame": meta["frame"].to_numpy()[rows],
                       "i": np.arange(len(rows))}).sort_values(["seq", "frame"], kind="stable")
    seq, frame, idx = df["seq"].to_numpy(), df["frame"].to_numpy(), df["i"].to_numpy()
    cut = (seq[1:] != seq[:-1]) | (np.diff(frame) != 1)
    return np.split(idx, np.flatnonzero(cut) + 1)


def jitter(pred: dict, meta: pd.DataFrame) -> dict[str, float]:
    """Mean joint acceleration (mm/frame^2) of pred3d and gt3d over all runs of >= 3 frames, pooled
    over runs, frames and joints, and their ratio pred/gt (NaN when there is nothing to difference)."""
    out = {}
    runs = [r for r in sequences_of(pred, meta) if len(r) >= 3]
    for key, name in (("pred3d", "accel_pred"), ("gt3d", "accel_gt")):
        j = _np(pred[key]).astype(np.float64)
        acc = [accelerations(j[r]) for r in runs]  # (T-2, 21) each
        out[name] = float(np.concatenate(acc).mean()) if acc else math.nan
    out["jitter_ratio"] = out["accel_pred"] / out["accel_gt"] if out["accel_gt"] > 0 else math.nan
    return out


def bone_length_variation(pred: dict, meta: pd.DataFrame) -> dict[str, float]:
    """std/mean of each bone's length within each run of >= 2 frames, averaged over (run, bone)
    pairs with equal weight: {"bone_cv_pred", "bone_cv_gt"} as fractions (0.01 = 1 %)."""
    runs = [r for r in sequences_of(pred, meta) if len(r) >= 2]
    out = {}
    for key, name in (("pred3d", "bone_cv_pred"), ("gt3d", "bone_cv_gt")):
        j = _np(pred[key]).astype(np.float64)
        cv = [bone_length_cv(j[r]) for r in runs]  # (20,) each
        out[name] = float(np.mean(cv)) if cv else math.nan
    return out


# ----------------------------------------------------------------------------- joint angles
def _rot(axis, deg: float) -> np.ndarray:
    """Rotation about a unit axis (3,) by deg."""
    x, y, z = axis
    Kx = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=np.float64)
    th = math.radians(deg)
    return np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


_EX, _EY, _EZ = np.eye(3)
# HandSim's palm in its internal hand frame (d distal, r radial, n palmar), mm: the wrist->thumb CMC
# and wrist->MCP vectors. A subject scales each vector, never turns it, so their directions fix the frame.
_PALM_JOINTS = (1, 5, 9, 13, 17)
_PALM_DIRS = np.concatenate([anatomy._THUMB_CMC[None], anatomy._MCP])
_PALM_DIRS = _PALM_DIRS / np.linalg.norm(_PALM_DIRS, axis=-1, keepdims=True)
# Each finger's base frame (columns distal, lateral, palmar) before its own joint angles act, and
# the sign that turns the measured angle about the palmar axis into HandSim's abduction.
_THUMB_BASE = (_rot(_EZ, anatomy._THUMB_YAW) @ _rot(-_EY, anatomy._THUMB_TILT)
               @ _rot(_EX, anatomy._THUMB_PRONATION))
_BASES = np.stack([_THUMB_BASE] + [_rot(_EZ, s) for s in anatomy._SPLAY])  # (5, 3, 3)
_ABD_SIGNS = np.concatenate([[1.0], anatomy._ABD_SIGN])  # (5,)
_CHAINS = ((1, 2, 3, 4),) + tuple(tuple(5 + 4 * f + k for k in range(4)) for f in range(4))


def hand_frame(j3d: np.ndarray) -> np.ndarray:
    """(N, 21, 3) camera frame -> (N, 3, 3) rotations R with camera = R @ hand (d, r, b), fitted
    (Kabsch, unit vectors) to the directions from the wrist to the thumb CMC and the four MCPs."""
    v = j3d[:, _PALM_JOINTS] - j3d[:, :1]  # (N, 5, 3)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
    ref = _PALM_DIRS * np.array([1.0, 1.0, -1.0])  # internal (d, r, n) -> output (d, r, b)
    H = np.einsum("ki,nkj->nij", ref, v)  # (N, 3, 3) = sum_k ref_k obs_k^T
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(H)
    D[:, 0, 0], D[:, 1, 1], D[:, 2, 2] = 1.0, 1.0, d
    return np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)


def _signed_angle(u: np.ndarray, v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle (deg) from u to v about ``axis`` (all (..., 3), axis unit), in the plane normal to it."""
    pu = u - (u * axis).sum(-1, keepdims=True) * axis
    pv = v - (v * axis).sum(-1, keepdims=True) * axis
    return np.degrees(np.arctan2((np.cross(pu, pv) * axis).sum(-1), (pu * pv).sum(-1)))


def dof_angles(j3d) -> np.ndarray:
    """HandSim's 20 degrees of freedom read back from joints: (N, 21, 3) (mm, any rigid frame)
    -> (N, 5, 4) degrees in HandSim's layout (``anatomy.ANGLE_NAMES``): thumb [cmc_flex, cmc_abd,
    mcp_flex, ip_flex], fingers
    [mcp_flex, mcp_abd, pip_flex, dip_flex].

    Inverts HandSim's forward kinematics: the hand frame from the palm (``hand_frame``); per
    finger, abduction is the direction of the finger's plane about the palmar axis of its base
    frame (least squares over its three segments), then each flexion is the signed angle between
    consecutive segments (the first: between the finger's in-plane rest direction and its first
    segment) about the finger's flexion axis, measured in the plane normal to that axis.
    Exact for HandSim poses (up to float error). For other skeletons it measures the in-plane
    component: an out-of-plane bend at a hinge joint (PIP, DIP, thumb MCP/IP), which HandSim
    cannot make, is not measured. Abduction is NaN where it is unobservable (every segment of
    the finger within ~6 deg of the palmar axis); it is read in (-90, 90] deg.
    """
    j = _np(j3d).astype(np.float64)
    R = hand_frame(j)
    h = np.einsum("nji,nkj->nki", R, j - j[:, :1]) * np.array([1.0, 1.0, -1.0])  # (N, 21, 3) (d, r, n)
    out = np.empty((len(j), 5, 4))
    for f, chain in enumerate(_CHAINS):
        B = _BASES[f]
        seg = np.diff(h[:, list(chain)], axis=1) @ B  # (N, 3, 3): segments in the base frame
        seg = seg / np.maximum(np.linalg.norm(seg, axis=-1, keepdims=True), 1e-9)
        w = seg[..., :2]  # in-plane (distal, lateral) components, (N, 3, 2)
        a, b, c = (w[..., 0] ** 2).sum(1), (w[..., 0] * w[..., 1]).sum(1), (w[..., 1] ** 2).sum(1)
        phi = 0.5 * np.arctan2(2 * b, a - c)  # principal direction of the finger's plane, (-90, 90] deg
        lam = 0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b**2)
        zero = np.zeros_like(phi)
        rest = np.stack([np.cos(phi), np.sin(phi), zero], -1)  # finger direction in the palm plane
        axis = np.stack([np.sin(phi), -np.cos(phi), zero], -1)  # flexion axis: turns rest towards palmar
        out[:, f, 0] = _signed_angle(rest, seg[:, 0], axis)
        out[:, f, 1] = np.where(lam > 1e-2, _ABD_SIGNS[f] * np.degrees(phi), np.nan)
        out[:, f, 2] = _signed_angle(seg[:, 0], seg[:, 1], axis)
        out[:, f, 3] = _signed_angle(seg[:, 1], seg[:, 2], axis)
    return out


def angle_violations(j3d, tol_deg: float = 1.0) -> float:
    """Fraction of frames (N, 21, 3) with any of the 20 joint angles (``dof_angles``) outside
    HandSim's anatomical limits by more than ``tol_deg`` (for float error and the numerics of the
    fit). Only the 20 degrees of freedom HandSim has are tested (flexion and MCP/CMC abduction);
    not the DIP = 2/3 PIP coupling, out-of-plane bends at hinge joints, or the wrist. Limits come
    from HandSim, so on FPHAB/HO3D this reads "outside HandSim's (literature) ranges"."""
    ang = dof_angles(j3d)
    if len(ang) == 0:
        return math.nan
    lo, hi = anatomy.LIMITS[..., 0] - tol_deg, anatomy.LIMITS[..., 1] + tol_deg
    bad = ((ang < lo) | (ang > hi)) & ~np.isnan(ang)  # NaN (unobservable) never counts
    return float(bad.reshape(len(ang), -1).any(1).mean())


def root_depth_error(pred: dict) -> dict[str, float]:
    """Signed mean, mean and median absolute error of the root's depth (mm): absolute MPJPE is
    mostly this term, which the closed-form root depth amplifies from small 2D / z_rel errors."""
    dz = _np(pred["pred3d"])[:, 0, 2] - _np(pred["gt3d"])[:, 0, 2]
    return {"root_z_bias": float(dz.mean()), "root_z_abs": float(np.abs(dz).mean()),
            "root_z_median_abs": float(np.median(np.abs(dz)))}


def motion_diagnostics(pred: dict, meta: pd.DataFrame) -> dict[str, float]:
    """accel_pred, accel_gt, jitter_ratio, bone_cv_pred, bone_cv_gt, angle_viol_pred, angle_viol_gt."""
    return {**jitter(pred, meta), **bone_length_variation(pred, meta),
            "angle_viol_pred": angle_violations(pred["pred3d"]), "angle_viol_gt": angle_violations(pred["gt3d"])}


# ----------------------------------------------------------------------------- D's sensitivity
def _randn(shape, generator, like: Tensor) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=torch.float64).to(like)


def perturb_windows(j3d: Tensor, kind: str, amount: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """A perturbed copy of windows j3d (B, S, 21, 3) mm.

    "jitter": Gaussian noise, std ``amount`` mm, per joint, frame and axis; "bone": every bone's
    length times (1 + N(0, (amount/100)^2)), independently per bone and frame, along the kinematic
    chain (children move with their parents, directions kept); "shuffle": the frames of each window
    in a random order (``amount`` unused); "reverse": the frames in reverse order (``amount``
    unused); "warp": a random monotone time warp t -> (S-1) (t/(S-1))^g, log g uniform in
    +-log(1 + amount) (amount 0 -> 1: g in [1/2, 2]), frames linearly interpolated, so the
    window's poses are kept and its speed changes along it; "none": an unchanged copy."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturb_windows: kind {kind!r} not in {PERTURBATIONS}")
    if j3d.ndim != 4 or j3d.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"perturb_windows: j3d must be (B, S, 21, 3), got {tuple(j3d.shape)}")
    B, S = j3d.shape[:2]
    dev = generator.device if generator is not None else j3d.device
    if kind == "jitter":
        return j3d + amount * _randn(j3d.shape, generator, j3d)
    if kind == "bone":
        scale = 1.0 + (amount / 100.0) * _randn(j3d.shape[:-1], generator, j3d)  # (B, S, 21): per child joint
        out = j3d.clone()
        for c in range(1, NUM_JOINTS):  # parents come before children in the canonical order
            p = PARENTS[c]
            out[..., c, :] = out[..., p, :] + scale[..., c, None] * (j3d[..., c, :] - j3d[..., p, :])
        return out
    if kind == "shuffle":
        perm = torch.argsort(torch.rand(B, S, generator=generator, device=dev), dim=1).to(j3d.device)
        return torch.gather(j3d, 1, perm[:, :, None, None].expand_as(j3d))
    if kind == "reverse":
        return j3d.flip(1)
    if kind == "warp":
        span = math.log(1.0 + (amount or 1.0))
        g = torch.exp((2 * torch.rand(B, 1, generator=generator, device=dev, dtype=torch.float64) - 1) * span)
        t = torch.linspace(0, 1, S, dtype=torch.float64, device=dev)[None] ** g * (S - 1)  # (B, S) source times
        t = t.to(j3d.device)
        lo = t.floor().long().clamp(0, S - 1)
        hi = (lo + 1).clamp(max=S - 1)
        w = (t - lo).to(j3d.dtype)[:, :, None, None]
        idx = torch.stack([lo, hi])[..., None, None].expand(2, *j3d.shape)  # (2, B, S, 21, 3)
        a, b = torch.gather(j3d, 1, idx[0]), torch.gather(j3d, 1, idx[1])
        return (1 - w) * a + w * b
    return j3d.clone()


def roc_auc(pos, neg) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2 (Mann-Whitney U / (n1 n2))."""
    pos, neg = _np(pos).astype(np.float64).ravel(), _np(neg).astype(np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("roc_auc: needs at least one score on each side")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


@torch.no_grad()
def _scores(D: MotionDiscriminator, j3d: Tensor, K: Tensor, representation: str, batch_size: int,
            center: bool = False) -> Tensor:
    device = next(D.parameters()).device
    out = [D(encode_real(j3d[i:i + batch_size], K[i:i + batch_size], representation, center).to(device)).float().cpu()
           for i in range(0, len(j3d), batch_size)]
    return torch.cat(out)


def discriminator_auc(D: MotionDiscriminator, j3d: Tensor, K: Tensor, representation: str, kind: str,
                      amount: float = 0.0, generator: torch.Generator | None = None, batch_size: int = 256,
                      center: bool = False) -> float:
    """Unpaired ROC AUC of "D scores a clean window higher than a perturbed one".

    j3d (B, S, 21, 3) mm, K (B, S, 3, 3): clean windows (S = D's S); each is scored clean and
    perturbed by ``perturb_windows(kind, amount)``, both encoded by ``encode_real`` in
    ``representation`` (no augmentation), D in eval mode without gradients (its mode is restored).
    0.5: D cannot tell; 1: every clean window above every perturbed one.

    Its limit: the AUC compares every clean score with every perturbed one, so it mixes the
    perturbation's effect with how much scores differ *between* windows. When a perturbation
    moves each window's score by less than that spread (the usual case), only the n pairs of the
    same window can change order and the AUC stays within 0.5 +- 1/(2n) whatever D does (n = 42
    windows: [0.488, 0.512]). A value near 0.5 therefore does not show that D ignores the
    perturbation. Use the paired measure, ``d_sensitivity.discriminator_sensitivity``."""
    was_training = D.training
    D.eval()
    try:
        pert = perturb_windows(j3d, kind, amount, generator)
        clean_s = _scores(D, j3d, K, representation, batch_size, center)
        pert_s = _scores(D, pert, K, representation, batch_size, center)
    finally:
        D.train(was_training)
    return roc_auc(clean_s, pert_s)


def auc_series(record_aucs: dict) -> tuple[pd.Series, int | None]:
    """A record's ``discriminator_auc`` block ({"jitter_2": AUC, ..., "n_windows": n}) as the
    AUCs alone (a Series, one per perturbation) and the number of held-out windows each used."""
    aucs = {k: v for k, v in record_aucs.items() if k != "n_windows"}
    n = record_aucs.get("n_windows")
    return pd.Series(aucs, dtype=float, name="ROC AUC"), (int(n) if n is not None else None)
