"""Is there a gap between two sets of *real* motion that D could exploit?

The adversarial stage trains D to tell the motion source (e.g. HandSim's unpaired corpus) from
M's windows on the unlabelled videos. If D can also tell the motion source from the videos'
*ground-truth* motion, it rewards something other than plausibility (a different camera, a
position in the field of view, a speed, a hand size) and M is pushed away from the truth.
``separability`` measures it: a fresh D is trained to separate set A from set B (LSGAN, the
stage's encoder and augmentation) on half of each set's sequences and scored on the other half
(ROC AUC; 0.5 = no usable gap; a control of A against itself gives the noise floor).
"""
from __future__ import annotations

import numpy as np
import torch

from handlib.analysis.diagnostics import roc_auc
from handlib.data.datasets import MotionWindows
from handlib.losses import lsgan_d_loss
from handlib.models.motion import MotionConfig, MotionDiscriminator, augment_windows, encode_real


def windows_by_sequence(seqs: list[np.ndarray], Ks: list[np.ndarray], S: int, stride: int | None = None):
    """Non-overlapping (default stride S) windows of each sequence: j3d (N, S, 21, 3), K (N, S, 3, 3),
    and the index of the sequence each window came from (N,)."""
    j, k, owner = [], [], []
    for i, (s, K) in enumerate(zip(seqs, Ks)):
        mw = MotionWindows([s], [K], S=S, stride=stride or S)
        if len(mw):
            w = mw.__getitems__(list(range(len(mw))))
            j.append(w["j3d"])
            k.append(w["K"])
            owner.append(np.full(len(mw), i))
    if not j:
        raise ValueError(f"windows_by_sequence: no sequence has {S} frames")
    return torch.cat(j), torch.cat(k), np.concatenate(owner)


def _halves(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows of even-numbered sequences (train) and odd-numbered ones (held out)."""
    seq_ids = np.unique(owner)
    test = np.isin(owner, seq_ids[1::2])
    return np.flatnonzero(~test), np.flatnonzero(test)


@torch.no_grad()
def _scores(D, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([D(x[i:i + batch]) for i in range(0, len(x), batch)])


def separability(a, b, cfg: MotionConfig | None = None, steps: int = 300, batch: int = 64, lr: float = 1e-3,
                 seed: int = 0) -> dict[str, float]:
    """Train a fresh D (A -> 1, B -> 0) on half of each set's sequences; AUC on the other half.

    a, b: (seqs, Ks) lists as ``MotionWindows`` takes them. Returns train/held-out AUC and counts."""
    cfg = cfg or MotionConfig()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    enc = []
    for seqs, Ks in (a, b):
        j, K, owner = windows_by_sequence(seqs, Ks, cfg.S)
        x = encode_real(j, K, cfg.representation, center=cfg.center)
        tr, te = _halves(owner)
        enc.append((x[tr], x[te]))
    (a_tr, a_te), (b_tr, b_te) = enc
    D = MotionDiscriminator(cfg)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        ia = torch.randint(len(a_tr), (batch,), generator=g)
        ib = torch.randint(len(b_tr), (batch,), generator=g)
        xa, xb = a_tr[ia], b_tr[ib]
        if cfg.augment:
            xa, xb = augment_windows(xa, g, cfg.max_rotation_deg), augment_windows(xb, g, cfg.max_rotation_deg)
        loss = lsgan_d_loss(D(xa), D(xb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    D.eval()
    return {"auc_heldout": roc_auc(_scores(D, a_te), _scores(D, b_te)),
            "auc_train": roc_auc(_scores(D, a_tr), _scores(D, b_tr)),
            "n_a": len(a_tr) + len(a_te), "n_b": len(b_tr) + len(b_te), "final_loss": loss.item()}
