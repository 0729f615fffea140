"""HandSim anatomy: per-subject bone lengths, joint-angle limits and forward kinematics.

Hand frame (right hand, mm): origin at the wrist joint, ``d`` (axis 0) distal along the
middle metacarpal, ``r`` (axis 1) radial (towards the thumb), ``b`` (axis 2) dorsal (the
back of the hand); ``b = d x r``, a right-handed frame. The palm faces ``-b``.

Anthropometric sources for the reference hand (hand length HL ~ 185 mm, adult average):
- segment lengths as fractions of hand length: Buchholz, Armstrong & Goldstein (1992),
  "Anthropometric data for describing the kinematics of the human hand", Ergonomics 35(3);
- phalanx proportions cross-checked with Alexander & Viktor (2010), "Proportions of hand
  segments", Int. J. Morphology 28(3);
- hand length and breadth of adults: Greiner (1991), "Hand anthropometry of U.S. Army
  personnel" (HL 172-193 mm female-male means), which sets the 0.85-1.15 size-factor range.
Joint-angle ranges follow the biomechanical limits used by Spurr et al. (ECCV 2020,
"Weakly supervised 3D hand pose estimation via biomechanical constraints") and the
classic ranges of Lee & Kunii (1995) / Cobos et al. (2008): MCP flexion -20..90 deg,
PIP 0..110, DIP 0..90 (DIP ~ 2/3 PIP), MCP abduction about +-20 deg, thumb CMC two DOF.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Joint angles are arrays (..., 5, 4) in degrees, fingers in the canonical order
# thumb, index, middle, ring, pinky. Thumb: [cmc_flex, cmc_abd, mcp_flex, ip_flex];
# fingers: [mcp_flex, mcp_abd, pip_flex, dip_flex]. Positive flexion curls towards the
# palm; positive abduction spreads the finger away from the middle finger (thumb:
# palmar abduction, away from the palm plane).
ANGLE_NAMES = (("cmc_flex", "cmc_abd", "mcp_flex", "ip_flex"),) + (("mcp_flex", "mcp_abd", "pip_flex", "dip_flex"),) * 4
LIMITS = np.array([  # (5, 4, 2) degrees [lo, hi]
    [[-15, 55], [0, 70], [-10, 60], [-15, 80]],  # thumb
    [[-20, 90], [-15, 20], [0, 110], [0, 90]],  # index
    [[-20, 90], [-15, 15], [0, 110], [0, 90]],  # middle
    [[-20, 90], [-15, 15], [0, 110], [0, 90]],  # ring
    [[-20, 90], [-15, 25], [0, 110], [0, 90]],  # pinky
], dtype=np.float64)
DIP_COUPLING = 2.0 / 3.0  # DIP = k * PIP for the four fingers (thumb IP is free)

# Reference hand (HL ~ 185 mm), hand-frame coordinates (d, r, n) in mm.
# MCP heads of the fingers (the transverse arch puts index/ring/pinky slightly palmar).
_MCP = np.array([[80.0, 22.0, 3.0], [84.0, 3.0, 0.0], [78.0, -15.0, 2.0], [70.0, -31.0, 6.0]])
_THUMB_CMC = np.array([30.0, 24.0, 10.0])
# Phalanx lengths (mm): thumb metacarpal/proximal/distal; fingers proximal/middle/distal
# (distal measured to the finger tip). From the Buchholz ratios x HL = 185 mm.
_LENGTHS = np.array([[46.0, 34.0, 28.0], [45.0, 26.0, 22.0], [50.0, 31.0, 23.0], [47.0, 30.0, 23.0],
                     [37.0, 21.0, 20.0]])
# Rest directions of the fingers in the palm plane (splay, deg towards radial).
_SPLAY = np.array([8.0, 0.0, -8.0, -16.0])
_ABD_SIGN = np.array([1.0, 1.0, -1.0, -1.0])  # abduction away from the middle finger
# Thumb rest: 45 deg radial from d in the palm plane, tilted 25 deg palmar, pronated 70 deg.
_THUMB_YAW, _THUMB_TILT, _THUMB_PRONATION = 45.0, 25.0, 70.0
# Capsule radii (mm) at the proximal and distal ends of each of the 3 segments per finger.
RADII = np.array([
    [[12.0, 10.0], [10.0, 9.0], [9.0, 7.5]],
    [[9.5, 8.5], [8.5, 7.5], [7.5, 6.5]],
    [[10.0, 9.0], [9.0, 8.0], [8.0, 6.8]],
    [[9.5, 8.5], [8.5, 7.5], [7.5, 6.5]],
    [[8.5, 7.5], [7.5, 6.5], [6.5, 5.5]],
])
# Palm slab outline (d, r) in mm and half thickness; skin tones (sRGB) light to dark.
PALM_OUTLINE = np.array([[0, -22], [0, 20], [25, 31], [52, 31], [80, 29], [87, 16], [89, 2], [85, -13],
                         [76, -33], [56, -39], [26, -33]], dtype=np.float64)
PALM_HALF_THICKNESS = 11.0
SKIN_TONES = np.array([[241, 204, 178], [224, 172, 138], [198, 134, 96], [160, 102, 68], [112, 72, 50],
                       [84, 54, 40]], dtype=np.float64)


@dataclass(frozen=True)
class Subject:
    """One simulated person: hand geometry and skin tone."""

    name: str
    scale: float  # global hand-size factor
    mcp: np.ndarray  # (4, 3) finger MCP positions, hand frame, mm
    thumb_cmc: np.ndarray  # (3,)
    lengths: np.ndarray  # (5, 3) mm
    radii: np.ndarray  # (5, 3, 2) mm
    skin: np.ndarray  # (3,) sRGB 0-255
    palm: np.ndarray  # (11, 2) palm outline (d, r) mm


def make_subject(name: str, rng: np.random.Generator, size_range=(0.85, 1.15), bone_jitter: float = 0.04) -> Subject:
    """Sample a subject: size factor uniform in ``size_range``, per-bone relative jitter
    (normal, std ``bone_jitter``, clipped at 2.5 std), skin tone between two palette entries."""
    s = rng.uniform(*size_range)
    jit = lambda shape: 1.0 + np.clip(rng.normal(0, bone_jitter, shape), -2.5 * bone_jitter, 2.5 * bone_jitter)
    lengths = _LENGTHS * s * jit(_LENGTHS.shape)
    mcp = _MCP * s * jit((4, 1))
    cmc = _THUMB_CMC * s * jit(1)
    radii = RADII * s * jit((5, 1, 1))
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(t)
    skin = SKIN_TONES[i] * (1 - (t - i)) + SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] * (t - i)
    return Subject(name, float(s), mcp, cmc, lengths, radii, skin, PALM_OUTLINE * s)


def clip_angles(angles: np.ndarray) -> np.ndarray:
    """Project (..., 5, 4) angles onto the limits and re-impose the DIP-PIP coupling."""
    a = np.clip(angles, LIMITS[:, :, 0], LIMITS[:, :, 1])
    a[..., 1:, 3] = np.clip(DIP_COUPLING * a[..., 1:, 2], LIMITS[1:, 3, 0], LIMITS[1:, 3, 1])
    return a


def _rot(axis: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Rodrigues: axis (..., 3) unit, deg (...) -> (..., 3, 3)."""
    th = np.deg2rad(deg)[..., None, None]
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    Kx = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), Kx.shape)
    return eye + np.sin(th) * Kx + (1 - np.cos(th)) * (Kx @ Kx)


def _axis_rot(axis: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Rotation about one fixed axis (3,) for a batch of angles (...) -> (..., 3, 3)."""
    return _rot(np.broadcast_to(axis, deg.shape + (3,)), deg)


def _chain(base: np.ndarray, frame: np.ndarray, rots: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """Walk a 3-segment chain. base (3,), frame (..., 3, 3) columns (dist, lat, palmar),
    rots: 3 local rotations (..., 3, 3) applied before each segment -> (..., 3, 3) joints."""
    out, p, F = [], base, frame
    for R, L in zip(rots, lengths):
        F = F @ R
        p = p + F[..., :, 0] * L
        out.append(p)
    return np.stack(out, -2)


def forward_kinematics(angles: np.ndarray, subj: Subject) -> np.ndarray:
    """(..., 5, 4) degrees -> (..., 21, 3) joints in the hand frame (d, r, b), mm, canonical order.

    Internally we work in (d, r, n) coordinates (n palmar); the output flips the third
    axis to b = -n (dorsal) so that (d, r, b) is a right-handed frame of a right hand.
    """
    a = clip_angles(np.asarray(angles, dtype=np.float64))
    batch = a.shape[:-2]
    ex, ey, ez = np.eye(3)
    # In a segment's local frame (x distal, y radial, z palmar) flexion turns x towards z
    # (rotation about -y) and abduction turns x towards y (rotation about +z).
    flex = lambda deg: _axis_rot(-ey, deg)
    abd = lambda deg: _axis_rot(ez, deg)
    joints = np.zeros(batch + (21, 3))
    # thumb rest frame: yaw radially in the palm plane, tilt palmar, pronate about its axis
    R0 = abd(np.array(_THUMB_YAW)) @ flex(np.array(_THUMB_TILT)) @ _axis_rot(ex, np.array(_THUMB_PRONATION))
    t = a[..., 0, :]
    rots = [abd(t[..., 1]) @ flex(t[..., 0]), flex(t[..., 2]), flex(t[..., 3])]
    joints[..., 1, :] = subj.thumb_cmc
    joints[..., 2:5, :] = _chain(subj.thumb_cmc, np.broadcast_to(R0, batch + (3, 3)), rots, subj.lengths[0])
    for f in range(4):
        Fb = np.broadcast_to(abd(np.array(_SPLAY[f])), batch + (3, 3))
        g = a[..., f + 1, :]
        rots = [abd(_ABD_SIGN[f] * g[..., 1]) @ flex(g[..., 0]), flex(g[..., 2]), flex(g[..., 3])]
        j0 = 5 + 4 * f
        joints[..., j0, :] = subj.mcp[f]
        joints[..., j0 + 1:j0 + 4, :] = _chain(subj.mcp[f], Fb, rots, subj.lengths[f + 1])
    joints[..., 2] *= -1.0
    return joints


def palm_vertices(subj: Subject) -> np.ndarray:
    """(33, 3) points of a bevelled palm slab in the hand frame (d, r, b), mm: the outline at
    mid-thickness and the back and front faces shrunk by 15 % towards the palm centre."""
    o = subj.palm
    c = o.mean(0)
    inner = c + 0.85 * (o - c)
    h = PALM_HALF_THICKNESS * subj.scale
    z = lambda v: np.full((len(o), 1), v)
    return np.concatenate([np.concatenate([o, z(0.0)], 1), np.concatenate([inner, z(h)], 1),
                           np.concatenate([inner, z(-h)], 1)])
