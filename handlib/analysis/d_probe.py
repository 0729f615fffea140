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
def d_probe(model, D: MotionDiscriminator, windows: ProbeWindows, runtime, representation: str,
            center: bool = False, batch_windows: int = 8) -> dict[str, float]:
    """D on M's validation windows vs held-out real windows; see the module docstring.

    Keys: d_acc, d_auc (real vs predicted), d_score_real, d_score_pred, d_spearman_abs,
    d_spearman_rr (score vs window error; negative = informative), n_windows."""
    if not windows.video_idx:
        return {}
    m_mode, d_mode = model.training, D.training
    model.eval()
    D.eval()
    dev = next(D.parameters()).device
    scores, err_abs, err_rr = [], [], []
    try:
        store = windows.video.store
        for i in range(0, len(windows.video_idx), batch_windows):
            idx = windows.video_idx[i:i + batch_windows]
            b = windows.video.__getitems__(idx)
            rows = b["start"].numpy()[:, None] + np.arange(windows.video.S)  # (Bw, S) store rows
            Bw, S = rows.shape
            gt = torch.from_numpy(np.asarray(store.j3d[rows.ravel()])).float()  # (Bw*S, 21, 3) mm
            img, K = runtime.to({"image": b["images"].flatten(0, 1)})["image"], b["K"].to(dev)
            with runtime.autocast():
                out = model(img, K.flatten(0, 1), ref_bone_length(gt).to(dev))  # val eval's scale
            j2d, z_rel, z_root = (t.float().unflatten(0, (Bw, S)) for t in (out.j2d, out.z_rel, out.z_root))
            x = encode_motion(j2d, z_rel, K, model.bone_prior, representation, z_root=z_root, center=center)
            scores.append(D(x).float().cpu())
            pred = out.j3d.float().cpu()
            err_abs.append(MX.mpjpe(pred, gt).reshape(Bw, S, -1).mean((1, 2)))
            err_rr.append(MX.rr_mpjpe(pred, gt).reshape(Bw, S, -1).mean((1, 2)))
        fake = torch.cat(scores).numpy()
        ea, er = torch.cat(err_abs).numpy(), torch.cat(err_rr).numpy()
        res = {"n_windows": float(len(fake)), "d_score_pred": float(fake.mean())}
        if len(fake) >= 3:
            res["d_spearman_abs"] = float(spearmanr(fake, ea).statistic)
            res["d_spearman_rr"] = float(spearmanr(fake, er).statistic)
        if windows.real is not None:
            real = D(encode_real(windows.real["j3d"].to(dev), windows.real["K"].to(dev), representation,
                                 center)).float().cpu().numpy()
            res.update(d_score_real=float(real.mean()), d_auc=_auc(real, fake),
                       d_acc=0.5 * float((real > 0.5).mean() + (fake < 0.5).mean()))
        return res
    finally:
        model.train(m_mode)
        D.train(d_mode)
