"""Does D judge motion? Its *paired* sensitivity to perturbations of held-out real windows.

For each held-out real window x and a perturbation P (jitter, bone-length noise, shuffled or
reversed frames), D scores the clean x and the perturbed P(x), encoded alike. Per perturbation:

- ``paired``: the share of windows with D(x) > D(P(x)) (ties count 1/2): 0.5 = blind, 1 = D
  prefers every clean window to its own perturbed copy;
- ``drop``: the mean paired drop D(x) - D(P(x)) in units of the clean scores' std (how large
  the effect is next to how much D's scores differ between windows);
- ``n``: windows.

Unlike the unpaired AUC (``diagnostics.discriminator_auc``), which is pinned near 0.5 whenever a
perturbation moves each score less than scores differ between windows, the paired share sees
every window's own reaction. Perturbations are seeded per check (the same copies for every D).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from handlib.analysis.diagnostics import perturb_windows
from handlib.models.motion import MotionDiscriminator, encode_real

# name -> (perturb_windows kind, amount): 2 / 5 mm jitter, 2 / 5 % bone-length noise, shuffle, reverse
SENSITIVITY_CHECKS: dict[str, tuple[str, float]] = {
    "jitter_2": ("jitter", 2.0), "jitter_5": ("jitter", 5.0), "bone_2": ("bone", 2.0), "bone_5": ("bone", 5.0),
    "shuffle": ("shuffle", 0.0), "reverse": ("reverse", 0.0)}


@torch.no_grad()
def score_windows(D: MotionDiscriminator, j3d: Tensor, K: Tensor, representation: str, center: bool = False,
                  batch_size: int = 256) -> Tensor:
    """D's scores (N,) of real windows j3d (N, S, 21, 3) mm, K (N, S, 3, 3), encoded by
    ``encode_real`` (no augmentation), in D's current mode; on D's device, returned on the CPU."""
    dev = next(D.parameters()).device
    out = [D(encode_real(j3d[i:i + batch_size].to(dev), K[i:i + batch_size].to(dev), representation, center)
             ).float().cpu() for i in range(0, len(j3d), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def paired_stats(clean: Tensor, perturbed: Tensor) -> dict[str, float]:
    """{"paired": share clean > perturbed (ties 1/2), "drop": mean(clean - perturbed) / std(clean),
    "n": windows} for paired scores (N,), (N,)."""
    c, p = np.asarray(clean, np.float64), np.asarray(perturbed, np.float64)
    if c.shape != p.shape or c.ndim != 1:
        raise ValueError(f"paired_stats: scores must be two (N,) arrays, got {c.shape} and {p.shape}")
    if not len(c):
        return {"paired": float("nan"), "drop": float("nan"), "n": 0}
    share = float(((c > p) + 0.5 * (c == p)).mean())
    sd = float(c.std())
    drop = float((c - p).mean() / sd) if sd > 0 else float("nan")
    return {"paired": share, "drop": drop, "n": int(len(c))}


def discriminator_sensitivity(D: MotionDiscriminator, windows: dict[str, Tensor], representation: str = "25d",
                              center: bool = False, seed: int = 0, batch_size: int = 256,
                              checks: dict[str, tuple[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """D's paired sensitivity on real windows ``windows`` = {"j3d": (N, S, 21, 3) mm, "K": (N, S, 3, 3)}
    (held-out, never trained on); see the module docstring. D in eval mode (restored after).

    Returns {check: {"paired", "drop", "n"}} for ``checks`` (default ``SENSITIVITY_CHECKS``);
    check i perturbs with a generator seeded ``seed * 1000 + i``, so every D sees the same copies."""
    checks = SENSITIVITY_CHECKS if checks is None else checks
    j3d, K = windows["j3d"].float(), windows["K"].float()
    if j3d.ndim != 4 or K.shape != (*j3d.shape[:2], 3, 3):
        raise ValueError(f"discriminator_sensitivity: j3d (N, S, 21, 3) and K (N, S, 3, 3), got "
                         f"{tuple(j3d.shape)} and {tuple(K.shape)}")
    was_training = D.training
    D.eval()
    try:
        clean = score_windows(D, j3d, K, representation, center, batch_size)
        out = {}
        for i, (name, (kind, amount)) in enumerate(checks.items()):
            g = torch.Generator().manual_seed(seed * 1000 + i)
            pert = perturb_windows(j3d.double(), kind, amount, g).float()
            out[name] = paired_stats(clean, score_windows(D, pert, K, representation, center, batch_size))
        return out
    finally:
        D.train(was_training)


def score_summary(scores) -> dict[str, float]:
    """Distribution of D's scores: n, mean, std, quantiles 5 / 50 / 95 %, share above 0.5."""
    s = np.asarray(scores, np.float64)
    if not len(s):
        return {"n": 0}
    q5, q50, q95 = np.quantile(s, [0.05, 0.5, 0.95])
    return {"n": int(len(s)), "mean": float(s.mean()), "std": float(s.std()), "q05": float(q5),
            "median": float(q50), "q95": float(q95), "above_half": float((s > 0.5).mean())}


def flat_sensitivity(sens: dict[str, dict[str, float]], prefix: str = "dsens_") -> dict[str, float]:
    """{prefix + check: paired share}: one number per check for a history row."""
    return {f"{prefix}{k}": float(v["paired"]) for k, v in sens.items()}
