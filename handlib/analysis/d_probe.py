"""Is D's signal informative? A probe of the motion discriminator on validation windows.

During the adversarial stage (and after it) the probe scores:
- M's predictions on non-overlapping windows of the *validation* videos, encoded exactly as
  the windows D trains on (M in eval mode, no augmentation), and
- held-out windows of the real motion source (never seen by D),
and reports D's accuracy and ROC AUC at telling them apart, the mean scores, and the
Spearman rank correlation between D's score of a predicted window and that window's error
(absolute and root-relative MPJPE, from the validation labels). A useful D scores worse
windows lower: a clearly negative correlation. A saturated D (accuracy ~1, AUC ~1) whose
correlation is ~0 separates predictions from real motion without telling M which of its
windows are better: the gradient it gives M carries little direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr
from torch import Tensor

from handlib import metrics as MX
from handlib.data.datasets import FrameStore, MotionWindows, VideoWindows
from handlib.models.motion import MotionDiscriminator, encode_motion, encode_real
from handlib.skeleton import ref_bone_length


@dataclass
class ProbeWindows:
    """Fixed windows for a probe: validation video windows (with their labels) and real ones."""
    video: VideoWindows
    video_idx: list[int]
    real: dict[str, Tensor] | None  # j3d (N, S, 21, 3) mm, K (N, S, 3, 3)


def probe_windows(store: FrameStore, sequences, held: tuple[list, list], S: int, max_frames: int = 384
                  ) -> ProbeWindows:
    """Up to ``max_frames`` frames of non-overlapping validation windows (evenly spread over all
    of them, deterministic) and every non-overlapping window of the held-out motion."""
    vw = VideoWindows(store, sequences, S=S, stride=S)
    n = min(len(vw), max(1, max_frames // S))
    idx = np.unique(np.linspace(0, len(vw) - 1, n).round().astype(int)).tolist() if len(vw) else []
    real = None
    if held[0]:
        mw = MotionWindows(*held, S=S, stride=S)
        if len(mw):
            real = mw.__getitems__(list(range(len(mw))))
    return ProbeWindows(vw, idx, real)


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    if not len(pos) or not len(neg):
        return float("nan")
    r = rankdata(np.concatenate([pos, neg]))
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def predict_probe(model, windows: ProbeWindows, runtime, representation: str, center: bool = False,
                  batch_windows: int = 8) -> dict[str, Tensor]:
    """M's encoded validation windows and their errors: {"x": (N, S, 21, 3), "err_abs", "err_rr",
    "err_vel": (N,) mm}. ``err_vel`` is the window's motion error: the mean distance between the
    predicted and the true frame-to-frame displacement of each root-relative joint (mm / frame),
    blind to a constant per-window pose offset, which a per-frame error is not.

    M (eval mode, restored) runs with each frame's ground-truth hand scale, as the validation
    evaluation does, and its windows are encoded with that same scale, so channel 2 of "25d" is
    M's own normalised depth output, exactly as in the windows D trains on (there M runs and is
    encoded with its scale prior)."""
    m_mode = model.training
    model.eval()
    xs, err_abs, err_rr, err_vel = [], [], [], []
    try:
        store, dev = windows.video.store, runtime.device
        for i in range(0, len(windows.video_idx), batch_windows):
            idx = windows.video_idx[i:i + batch_windows]
            b = windows.video.__getitems__(idx)
            rows = b["start"].numpy()[:, None] + np.arange(windows.video.S)  # (Bw, S) store rows
            Bw, S = rows.shape
            gt = torch.from_numpy(np.asarray(store.j3d[rows.ravel()])).float()  # (Bw*S, 21, 3) mm
            C = ref_bone_length(gt).to(dev)  # (Bw*S,) mm: val eval's scale
            img, K = runtime.to({"image": b["images"].flatten(0, 1)})["image"], b["K"].to(dev)
            with runtime.autocast():
                out = model(img, K.flatten(0, 1), C)
            j2d, z_rel, z_root = (t.float().unflatten(0, (Bw, S)) for t in (out.j2d, out.z_rel, out.z_root))
            xs.append(encode_motion(j2d, z_rel, K, C.unflatten(0, (Bw, S)), representation, z_root=z_root,
                                    center=center).cpu())
            pred = out.j3d.float().cpu()
            err_abs.append(MX.mpjpe(pred, gt).reshape(Bw, S, -1).mean((1, 2)))
            err_rr.append(MX.rr_mpjpe(pred, gt).reshape(Bw, S, -1).mean((1, 2)))
            rel = MX.root_relative(pred) - MX.root_relative(gt)  # (Bw*S, 21, 3) mm
            err_vel.append(rel.unflatten(0, (Bw, S)).diff(dim=1).norm(dim=-1).mean((1, 2)))
    finally:
        model.train(m_mode)
    if not xs:
        return {"x": torch.zeros(0), "err_abs": torch.zeros(0), "err_rr": torch.zeros(0), "err_vel": torch.zeros(0)}
    return {"x": torch.cat(xs), "err_abs": torch.cat(err_abs), "err_rr": torch.cat(err_rr),
            "err_vel": torch.cat(err_vel)}


@torch.no_grad()
def d_scores(D: MotionDiscriminator, x: Tensor, batch_windows: int = 256) -> np.ndarray:
    """D's score of each encoded window ``x`` (N, S, 21, 3), in batches, on D's device: (N,)."""
    dev = next(D.parameters()).device
    return torch.cat([D(x[i:i + batch_windows].to(dev)).float().cpu()
                      for i in range(0, len(x), batch_windows)]).numpy()


@torch.no_grad()
def score_probe(D: MotionDiscriminator, pred: dict[str, Tensor], real: dict[str, Tensor] | None,
                representation: str, center: bool = False, batch_windows: int = 256) -> dict[str, float]:
    """D's accuracy / AUC (M's windows ``pred`` from ``predict_probe`` vs real windows), mean
    scores, and the Spearman correlation of its score with each predicted window's error."""
    if not len(pred["x"]):
        return {}
    d_mode = D.training
    D.eval()
    try:
        dev = next(D.parameters()).device
        fake = d_scores(D, pred["x"], batch_windows)
        res = {"n_windows": float(len(fake)), "d_score_pred": float(fake.mean())}
        if len(fake) >= 3:
            res["d_spearman_abs"] = float(spearmanr(fake, pred["err_abs"].numpy()).statistic)
            res["d_spearman_rr"] = float(spearmanr(fake, pred["err_rr"].numpy()).statistic)
            if "err_vel" in pred:
                res["d_spearman_vel"] = float(spearmanr(fake, pred["err_vel"].numpy()).statistic)
        if real is not None:
            r = torch.cat([D(encode_real(real["j3d"][i:i + batch_windows].to(dev),
                                         real["K"][i:i + batch_windows].to(dev), representation, center)).float().cpu()
                           for i in range(0, len(real["j3d"]), batch_windows)]).numpy()
            res.update(d_score_real=float(r.mean()), d_auc=_auc(r, fake),
                       d_acc=0.5 * float((r > 0.5).mean() + (fake < 0.5).mean()))
        return res
    finally:
        D.train(d_mode)


def d_probe(model, D: MotionDiscriminator, windows: ProbeWindows, runtime, representation: str,
            center: bool = False, batch_windows: int = 8) -> dict[str, float]:
    """D on M's validation windows vs held-out real windows; see the module docstring.

    Keys: d_acc, d_auc (real vs predicted), d_score_real, d_score_pred, d_spearman_abs,
    d_spearman_rr, d_spearman_vel (score vs window error, per-frame or motion; negative =
    informative), n_windows."""
    if not windows.video_idx:
        return {}
    pred = predict_probe(model, windows, runtime, representation, center, batch_windows)
    return score_probe(D, pred, windows.real, representation, center)
