"""HandSim camera: intrinsics, egocentric / third-person viewpoints, hand placement, crops.

Camera frame is OpenCV's (x right, y down, z forward), mm. The full sensor is 640x480
with a focal length of 480-620 px (FPHAB's colour camera scaled to VGA). The model input
is a square crop around the hand, resized to ``image_size``; its intrinsics come from
``handlib.data.crop.crop_K`` (the one crop-K function of the data layer).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from handlib.data.crop import propagate_boxes


FRAME_W, FRAME_H = 640, 480
DEPTH = {"ego": (250.0, 600.0), "third": (380.0, 800.0)}  # wrist distance from the camera, mm


def rot_axis(axis: np.ndarray, deg) -> np.ndarray:
    """Rotation about a unit axis (3,) by deg (...) -> (..., 3, 3)."""
    deg = np.asarray(deg, dtype=np.float64)
    th = np.deg2rad(deg)[..., None, None]
    x, y, z = axis
    Kx = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=np.float64)
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * (Kx @ Kx)


def frame_from(d: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hand-to-camera rotation with columns (d, r, b), r = b x d, from rough d and b."""
    d = d / np.linalg.norm(d)
    b = b - (b @ d) * d
    b = b / np.linalg.norm(b)
    return np.stack([d, np.cross(b, d), b], 1)


def intrinsics(rng: np.random.Generator) -> np.ndarray:
    f = rng.uniform(480.0, 620.0)
    cx, cy = FRAME_W / 2 + rng.normal(0, 4), FRAME_H / 2 + rng.normal(0, 4)
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])


def view_params(mode: str, rng: np.random.Generator) -> np.ndarray:
    """Random view angles for one sequence: [yaw, pitch, roll, turn] degrees."""
    if mode == "ego":  # looking down at the back of one's own hand, fingers away / up
        return np.array([rng.uniform(-35, 35), rng.uniform(-25, 25), rng.uniform(-30, 30), rng.uniform(-40, 60)])
    return np.array([rng.uniform(-40, 40), rng.uniform(-25, 25), rng.uniform(-35, 35), rng.uniform(-150, 150)])


def base_rotation(mode: str, angles: np.ndarray) -> np.ndarray:
    """Hand base frame -> camera rotation for view angles [yaw, pitch, roll, turn] (deg)."""
    yaw, pitch, roll, turn = angles
    ex, ey, ez = np.eye(3)
    if mode == "ego":  # d forward-up in the image, back of the hand towards the camera
        R = frame_from(np.array([0.0, -0.55, 0.85]), np.array([0.0, -0.85, -0.55]))
    else:  # third person: fingers up, palm towards the camera, then turned about d
        R = frame_from(np.array([0.0, -1.0, 0.1]), np.array([0.0, 0.1, 1.0]))
    R = R @ rot_axis(ex, turn)  # pronation-like turn about the hand's own long axis
    return rot_axis(ey, yaw) @ rot_axis(ex, pitch) @ rot_axis(ez, roll) @ R


def hand_placement(mode: str, rng: np.random.Generator, K: np.ndarray, centre_offset: np.ndarray) -> np.ndarray:
    """Base wrist position (3,) mm so that the hand centre lands inside the central image area.
    ``centre_offset`` (3,) is the camera-frame vector from the wrist to the hand centre."""
    z = rng.uniform(*DEPTH[mode])
    u = rng.uniform(0.3, 0.7) * FRAME_W
    v = rng.uniform(0.3, 0.7) * FRAME_H
    zc = z + centre_offset[2]
    centre = np.array([(u - K[0, 2]) * zc / K[0, 0], (v - K[1, 2]) * zc / K[1, 1], zc])
    return centre - centre_offset


def wrist_rotation(wrist_deg: np.ndarray) -> np.ndarray:
    """(T, 3) [flexion, radial deviation, pronation] deg -> (T, 3, 3) in the hand frame (d, r, b).
    Pronation turns about d, deviation about b, flexion about r (towards the palm, -b)."""
    ex, ey, ez = np.eye(3)
    return rot_axis(ex, wrist_deg[:, 2]) @ rot_axis(ez, wrist_deg[:, 1]) @ rot_axis(ey, wrist_deg[:, 0])


def crop_boxes(j2d_full: np.ndarray, rng: np.random.Generator, margin: float = 1.45, smooth: float = 1.5,
               min_side: float = 48.0, source: str = "gt") -> np.ndarray:
    """Square crops (T, 4) [x0, y0, side, side] px around 2D joints (T, 21, 2), x0, y0 the
    full-image pixel centre that lands on the crop's first pixel centre (``crop.centre_box``).
    A per-sequence constant offset and scale jitter the box in either mode.

    source "gt": box centre and size of each frame's own joints, smoothed over time (sigma
    ``smooth`` frames, both directions) as an offline tracker would give them.
    source "previous": label-free for frame t: the box of frames t-1 and t-2 propagated at
    constant velocity (size of t-1); frame 0 is the tracker's initialisation (its own box),
    frame 1 takes frame 0's."""
    lo, hi = j2d_full.min(1), j2d_full.max(1)
    c = (lo + hi) / 2
    side = np.maximum((hi - lo).max(1) * margin, min_side)
    if source == "previous":
        b = propagate_boxes(np.concatenate([c - side[:, None] / 2, side[:, None], side[:, None]], 1))
        c, side = b[:, :2] + b[:, 2:] / 2, b[:, 2]
    elif source != "gt":
        raise ValueError(f"crop_boxes: source {source!r} not in ('gt', 'previous')")
    elif len(c) > 1 and smooth > 0:
        c = gaussian_filter1d(c, smooth, axis=0, mode="nearest")
        side = gaussian_filter1d(side, smooth, mode="nearest")
    side = side * rng.uniform(0.95, 1.08)
    c = c + rng.uniform(-0.04, 0.04, 2) * side[:, None]
    return np.concatenate([c - side[:, None] / 2, side[:, None], side[:, None]], 1)
