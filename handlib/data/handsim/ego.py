"""Egocentric motion: the wearer's head moves the camera, the arm transports the hand.

In first-person video the wrist moves relative to the camera for two reasons besides the
hand's own small drift: the head turns and sways (slow rotation of a few deg/s and
translation of a few cm/s, now and then a faster glance of 5-15 deg and back), and the arm carries
the hand and its object (reaching, lifting, pouring: minimum-jerk reaches of 10-30 cm).
Both are drawn here in the *body frame* (the camera frame of the first frame, OpenCV axes,
mm) and applied by ``scene.build_sequence``. ``scale`` multiplies every amplitude
(0 = fixed camera, no transport: HandSim hs1).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from handlib.data.handsim.camera import FRAME_H, FRAME_W
from handlib.data.handsim.motion import FPS, interpolate_keyframes, smooth_noise

HEAD_PIVOT = np.array([0.0, 110.0, -90.0])  # neck pivot in the camera frame (below and behind the eyes), mm
HEAD_ROT_DEG = (4.0, 3.0, 2.0)  # slow yaw, pitch, roll std, deg, 0.1-0.5 Hz (~5-8 deg/s)
HEAD_SHIFT_MM = (15.0, 10.0, 15.0)  # slow sway of the head (std), mm, 0.1-0.4 Hz (~2-4 cm/s)
GLANCE_RATE = 0.5  # faster glances per second (Poisson)
GLANCE_DEG = (5.0, 15.0)  # glance amplitude range, deg
GLANCE_S = (0.25, 0.5)  # glance duration (one way), s
REACH_MM = (100.0, 300.0)  # arm-transport reach length range
REACH_S = (0.5, 1.0)  # reach duration range
REACH_HOLD_S = (0.2, 0.9)  # pause between reaches


def _euler(deg: np.ndarray) -> np.ndarray:
    """(T, 3) [yaw about y, pitch about x, roll about z] deg -> (T, 3, 3) = Ry @ Rx @ Rz."""
    y, x, z = np.deg2rad(deg).T
    c, s = np.cos, np.sin
    one, zero = np.ones_like(y), np.zeros_like(y)
    Ry = np.stack([np.stack([c(y), zero, s(y)], -1), np.stack([zero, one, zero], -1),
                   np.stack([-s(y), zero, c(y)], -1)], -2)
    Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c(x), -s(x)], -1),
                   np.stack([zero, s(x), c(x)], -1)], -2)
    Rz = np.stack([np.stack([c(z), -s(z), zero], -1), np.stack([s(z), c(z), zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return Ry @ Rx @ Rz


def _glances(rng: np.random.Generator, n_frames: int, fps: int) -> np.ndarray:
    """(T, 2) yaw/pitch offsets (deg) of quick look-aways and back, min-jerk both ways."""
    dur = n_frames / fps
    times, holds, vals = [0.0], [], [np.zeros(2)]
    t = rng.exponential(1 / GLANCE_RATE)
    while t < dur:
        d, stay = rng.uniform(*GLANCE_S), rng.uniform(0.15, 1.0)
        ang = rng.uniform(0, 2 * np.pi)
        away = rng.uniform(*GLANCE_DEG) * np.array([np.cos(ang), 0.6 * np.sin(ang)])  # mostly sideways
        holds.append(t)  # rest until the glance starts
        times.append(t + d)
        vals.append(away)
        holds.append(t + d + stay)
        times.append(t + 2 * d + stay)
        vals.append(np.zeros(2))
        t = times[-1] + rng.exponential(1 / GLANCE_RATE)
    if len(times) == 1:
        return np.zeros((n_frames, 2))
    holds.append(max(t, dur) + 1.0)
    return interpolate_keyframes(np.array(times), np.array(vals), np.array(holds), n_frames, fps)


def head_motion(rng: np.random.Generator, n_frames: int, scale: float = 1.0,
                fps: int = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Head angles (T, 3) [yaw, pitch, roll] deg and sway (T, 3) mm of the wearer, zero at frame 0."""
    ang = smooth_noise(rng, n_frames, 3, (0.1, 0.5), HEAD_ROT_DEG)
    ang[:, :2] += _glances(rng, n_frames, fps)
    shift = smooth_noise(rng, n_frames, 3, (0.1, 0.4), HEAD_SHIFT_MM)
    return (ang - ang[:1]) * scale, (shift - shift[:1]) * scale


def camera_pose(ang: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera pose in the body frame from head angles and sway: rotation Rc (T, 3, 3) camera ->
    body about the neck pivot, and centre c (T, 3) mm. A body point X is seen at Rc^T (X - c)."""
    Rc = _euler(ang)
    return Rc, shift + HEAD_PIVOT - Rc @ HEAD_PIVOT


def follow_hand(ang: np.ndarray, centre: np.ndarray, K: np.ndarray, keep: float = 0.55,
                smooth: float = 3.0) -> np.ndarray:
    """Turn the head towards the hand when it drifts out of the central ``keep`` share of the
    field of view, as people look at what they handle. ang (T, 3) deg, centre (T, 3) the hand's
    centre in the body frame (mm) -> corrected angles (T, 3)."""
    lim = np.degrees(np.arctan(np.array([FRAME_W / 2, FRAME_H / 2]) / K[[0, 1], [0, 1]])) * keep
    yaw_h = np.degrees(np.arctan2(centre[:, 0], centre[:, 2]))
    pitch_h = np.degrees(np.arctan2(-centre[:, 1], np.hypot(centre[:, 0], centre[:, 2])))
    ang = ang.copy()
    for _ in range(3):  # smoothing spreads each correction; a few passes close the residue
        rel = np.stack([yaw_h - ang[:, 0], pitch_h - ang[:, 1]], 1)
        excess = rel - np.clip(rel, -lim, lim)
        ang[:, :2] += gaussian_filter1d(excess, smooth, axis=0, mode="nearest") * 1.5 if len(ang) > 1 else excess
    return ang


def arm_transport(rng: np.random.Generator, n_frames: int, pos0: np.ndarray, K: np.ndarray,
                  scale: float = 1.0, fps: int = FPS) -> np.ndarray:
    """(T, 3) mm body-frame displacement of the hand: reaches of 10-30 cm out from the start
    and back (min-jerk), pausing in between, each target kept in the central part of the
    image and at 220-750 mm depth. ``pos0`` (3,) is the wrist's start, K (3, 3) full frame."""
    dur = n_frames / fps
    times, holds, vals = [0.0], [rng.uniform(0.0, 0.6)], [np.zeros(3)]
    out = True
    while holds[-1] < dur:
        if out:
            d = rng.normal(0, 1, 3) * np.array([1.0, 0.8, 0.6])
            d *= rng.uniform(*REACH_MM) * scale / np.linalg.norm(d)
            for _ in range(8):  # shrink until the target stays in view and in reach
                p = pos0 + d
                u, v = K[0, 0] * p[0] / p[2] + K[0, 2], K[1, 1] * p[1] / p[2] + K[1, 2]
                if 220 < p[2] < 750 and 0.12 * FRAME_W < u < 0.88 * FRAME_W and 0.12 * FRAME_H < v < 0.88 * FRAME_H:
                    break
                d *= 0.7
            target = d
        else:
            target = rng.normal(0, 20.0, 3) * scale  # back near the start
        t = holds[-1] + rng.uniform(*REACH_S)
        times.append(t)
        holds.append(t + rng.uniform(*REACH_HOLD_S))
        vals.append(target)
        out = not out
    if len(times) == 1:  # the sequence ends before the first reach starts
        return np.zeros((n_frames, 3))
    return interpolate_keyframes(np.array(times), np.array(vals), np.array(holds), n_frames, fps)


def background_homography(K: np.ndarray, Rc: np.ndarray) -> np.ndarray:
    """(T, 3, 3) maps from first-frame image pixels to frame-t pixels of a far background
    under camera rotation Rc (T, 3, 3): H = K Rc^T K^-1 (translation parallax ignored)."""
    return K @ np.swapaxes(Rc, -1, -2) @ np.linalg.inv(K)
