"""The canonical 21-joint hand skeleton used everywhere in handlib.

Order: 0 wrist; thumb CMC, MCP, IP, TIP (1-4); then index, middle, ring, pinky,
each as MCP, PIP, DIP, TIP (5-8, 9-12, 13-16, 17-20). Datasets convert to this
order at their boundary with the index maps below: ``canon = theirs[..., MAP, :]``.
"""
from __future__ import annotations

import numpy as np

NUM_JOINTS = 21
ROOT = 0
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
_FINGER_JOINTS = {
    "thumb": ("cmc", "mcp", "ip", "tip"),
    "index": ("mcp", "pip", "dip", "tip"),
    "middle": ("mcp", "pip", "dip", "tip"),
    "ring": ("mcp", "pip", "dip", "tip"),
    "pinky": ("mcp", "pip", "dip", "tip"),
}
JOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{f}_{j}" for f in FINGERS for j in _FINGER_JOINTS[f]
)
JOINT_INDEX = {n: i for i, n in enumerate(JOINT_NAMES)}

# parent of each joint (-1 for the root): first joint of a finger hangs off the wrist
PARENTS: tuple[int, ...] = (-1,) + tuple(
    0 if k == 0 else 1 + 4 * f + k - 1 for f in range(5) for k in range(4)
)
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))
TIPS = (4, 8, 12, 16, 20)
MCPS = (2, 5, 9, 13, 17)  # thumb MCP, then the four finger MCPs

# Reference bone used for hand scale (wrist -> middle MCP), in canonical indices.
REF_BONE = (0, 9)

# FPHAB order: wrist, TMCP IMCP MMCP RMCP PMCP, then (PIP, DIP, TIP) per finger
# thumb..pinky. FPHAB's thumb "MCP, PIP, DIP" are our CMC, MCP, IP.
FPHAB_TO_CANON = np.array(
    [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]
)
# HO3D / MANO order: wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3,
# then tips thumb, index, middle, ring, pinky.
MANO_TO_CANON = np.array(
    [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
)


def inverse_map(m: np.ndarray) -> np.ndarray:
    """Index map back from canonical to the dataset order: ``theirs = canon[..., inv, :]``."""
    inv = np.empty_like(m)
    inv[m] = np.arange(len(m))
    return inv


CANON_TO_FPHAB = inverse_map(FPHAB_TO_CANON)
CANON_TO_MANO = inverse_map(MANO_TO_CANON)


def ref_bone_length(j3d):
    """Length of the reference bone ``REF_BONE`` (the hand's scale), ``(..., 21, 3) -> (...,)``."""
    n, m = REF_BONE
    return ((j3d[..., n, :] - j3d[..., m, :]) ** 2).sum(-1) ** 0.5


def bone_lengths(j3d):
    """Lengths of the 20 bones, ``(..., 21, 3) -> (..., 20)``; numpy or torch."""
    child = [c for _, c in BONES]
    parent = [p for p, _ in BONES]
    d = j3d[..., child, :] - j3d[..., parent, :]
    return (d**2).sum(-1) ** 0.5
