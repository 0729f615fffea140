"""HandSim motion: actions as key poses joined by minimum-jerk transitions.

A keyframe is a vector of 26 numbers: 20 joint angles (5, 4) in degrees, 3 wrist angles
(flexion, radial deviation, pronation; degrees) and 3 wrist offsets (mm, in the hand's
base frame). An action is a cycle of keyframe templates; a sequence walks the cycle with
random per-keyframe jitter, random transition and hold times, a per-subject style offset,
then adds physiological tremor (8-12 Hz, < 1 deg) and slow drift. Transitions use the
minimum-jerk profile s(u) = 10u^3 - 15u^4 + 6u^5 (Flash & Hogan 1985), whose velocity is
continuous and zero at the keyframes; peak angular speeds come out at 100-500 deg/s like
real finger movements.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlib.data.handsim.anatomy import LIMITS, clip_angles

FPS = 30
N_KEY = 26  # 20 joint angles, 3 wrist angles, 3 wrist offsets
WRIST_LIMITS = np.array([[-60.0, 60.0], [-25.0, 30.0], [-80.0, 80.0]])  # flex, dev, pron (deg)


def _pose(thumb, index, middle, ring, pinky) -> np.ndarray:
    """Build a (5, 4) pose from per-finger lists; fingers give [mcp, abd, pip] (DIP coupled)."""
    rows = [list(thumb)] + [list(f) + [0.0] for f in (index, middle, ring, pinky)]
    return clip_angles(np.array(rows, dtype=np.float64))


_CURL = ([85, 0, 100],) * 4
KEY_POSES: dict[str, np.ndarray] = {
    "open": _pose([0, 15, 5, 5], [5, 9, 5], [5, 2, 5], [5, 7, 5], [5, 14, 5]),
    "flat": _pose([5, 5, 5, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]),
    "relaxed": _pose([10, 25, 15, 15], [20, 3, 30], [25, 1, 35], [30, 2, 40], [35, 5, 45]),
    "fist": _pose([40, 15, 45, 50], *_CURL),
    "point": _pose([35, 15, 40, 40], [5, 0, 5], *_CURL[1:]),
    "thumbs_up": _pose([-10, 20, 0, 0], *_CURL),
    "pinch": _pose([30, 45, 20, 20], [40, 0, 45], [30, 0, 30], [25, 2, 30], [25, 5, 30]),
    "pinch_open": _pose([15, 40, 10, 5], [25, 2, 20], [25, 0, 25], [25, 2, 30], [25, 5, 30]),
    "tripod": _pose([30, 45, 20, 25], [40, 0, 45], [45, 0, 40], [50, 0, 70], [55, 0, 75]),
    "grasp": _pose([30, 50, 25, 25], [55, 0, 65], [55, 0, 65], [55, 0, 65], [55, 2, 65]),
    "grasp_tight": _pose([35, 50, 30, 30], [62, 0, 72], [62, 0, 72], [62, 0, 72], [62, 2, 72]),
    "one": _pose([45, 10, 40, 40], [5, 0, 5], *_CURL[1:]),
    "two": _pose([45, 10, 40, 40], [5, 10, 5], [5, -5, 5], *_CURL[2:]),
    "three": _pose([45, 10, 40, 40], [5, 10, 5], [5, 0, 5], [5, 8, 5], _CURL[3]),
    "four": _pose([45, 10, 40, 40], [5, 10, 5], [5, 0, 5], [5, 8, 5], [5, 15, 5]),
    "tap_index": _pose([10, 25, 15, 15], [55, 0, 40], [25, 1, 35], [30, 2, 40], [35, 5, 45]),
    "tap_middle": _pose([10, 25, 15, 15], [20, 3, 30], [60, 0, 40], [30, 2, 40], [35, 5, 45]),
    "tap_ring": _pose([10, 25, 15, 15], [20, 3, 30], [25, 1, 35], [60, 0, 45], [35, 5, 45]),
    "tap_pinky": _pose([10, 25, 15, 15], [20, 3, 30], [25, 1, 35], [30, 2, 40], [60, 0, 50]),
}


@dataclass(frozen=True)
class Key:
    """A keyframe template: a key pose, wrist angles (mean, jitter) and offset jitter (mm)."""

    pose: str
    wrist: tuple = (0.0, 0.0, 0.0)
    wrist_jitter: tuple = (4.0, 4.0, 6.0)
    move: tuple = (0.0, 0.0, 0.0)  # offset jitter (mm, std) for this keyframe


@dataclass(frozen=True)
class Action:
    name: str
    cycle: tuple  # Key templates, walked in order and repeated
    obj: str | None = None  # "cylinder", "sphere", "pen" or None
    move_s: tuple = (0.35, 0.8)  # transition duration range (s)
    hold_s: tuple = (0.05, 0.5)  # hold duration range (s)
    pose_jitter: float = 4.0  # deg, per keyframe
    transport: bool = False  # the arm carries the object around (egocentric reaches, see ego.py)


_M = (25.0, 25.0, 20.0)
ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("open_palm", (Key("open", move=_M), Key("flat", (10, 0, 0), move=_M), Key("relaxed", move=_M)),
           move_s=(0.6, 1.2)),
    Action("fist", (Key("open"), Key("fist", (5, 0, 0)), Key("relaxed"), Key("fist")), move_s=(0.3, 0.7)),
    Action("power_grasp", (Key("grasp", move=(30, 30, 30)), Key("grasp_tight", (10, 0, 10), move=(40, 40, 30))),
           obj="cylinder", move_s=(0.6, 1.2), pose_jitter=2.0, transport=True),
    Action("precision_pinch", (Key("pinch_open"), Key("pinch", move=_M), Key("pinch", (10, 5, 15), move=_M)),
           obj="sphere", move_s=(0.4, 0.9), pose_jitter=2.5, transport=True),
    Action("tripod", (Key("tripod", (5, 0, 0), (6, 8, 8), move=(10, 10, 5)), Key("tripod", (-5, 5, 0), (6, 8, 8))),
           obj="pen", move_s=(0.3, 0.6), hold_s=(0.0, 0.2), pose_jitter=2.0),
    Action("point", (Key("point", (0, 0, 0), (12, 12, 10), move=(40, 40, 20)),), move_s=(0.4, 0.9)),
    Action("thumbs_up", (Key("relaxed"), Key("thumbs_up", (0, 0, 20)), Key("thumbs_up", (10, 0, 20)))),
    Action("counting", (Key("fist"), Key("one"), Key("two"), Key("three"), Key("four"), Key("open")),
           move_s=(0.3, 0.6), hold_s=(0.2, 0.6)),
    Action("wave", (Key("open", (0, 25, 0), (5, 5, 5)), Key("open", (0, -20, 0), (5, 5, 5))),
           move_s=(0.22, 0.4), hold_s=(0.0, 0.08), pose_jitter=3.0),
    Action("wrist_rotation", (Key("relaxed", (0, 0, 60), (5, 5, 12)), Key("relaxed", (0, 0, -60), (5, 5, 12))),
           move_s=(0.6, 1.1), hold_s=(0.05, 0.4)),
    Action("tapping", (Key("relaxed"), Key("tap_index"), Key("relaxed"), Key("tap_middle"), Key("relaxed"),
                       Key("tap_ring"), Key("relaxed"), Key("tap_pinky")),
           move_s=(0.15, 0.3), hold_s=(0.0, 0.15), pose_jitter=2.0),
    Action("pour", (Key("grasp", (0, 0, 0), move=(20, 20, 20)), Key("grasp_tight", (0, 10, 70), move=(20, 20, 20))),
           obj="cylinder", move_s=(0.8, 1.5), hold_s=(0.2, 0.8), pose_jitter=1.5, transport=True),
)}
ACTION_NAMES = tuple(ACTIONS)


def min_jerk(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile on u in [0, 1] (clipped outside)."""
    u = np.clip(u, 0.0, 1.0)
    return u**3 * (10 - 15 * u + 6 * u**2)


def interpolate_keyframes(times: np.ndarray, values: np.ndarray, hold_until: np.ndarray, n_frames: int,
                          fps: int = FPS) -> np.ndarray:
    """Piecewise min-jerk path. Keyframe k is reached at ``times[k]`` (s) and held until
    ``hold_until[k]``; the transition to k+1 runs from hold_until[k] to times[k+1].
    values (K, D) -> (n_frames, D)."""
    t = np.arange(n_frames) / fps
    out = np.empty((n_frames, values.shape[1]))
    k = np.clip(np.searchsorted(hold_until, t, side="right") - 1, -1, len(times) - 2)  # transition index
    before = k < 0
    out[before] = values[0]
    kk = np.maximum(k, 0)
    u = (t - hold_until[kk]) / np.maximum(times[kk + 1] - hold_until[kk], 1e-9)
    s = min_jerk(u)[:, None]
    path = values[kk] + (values[kk + 1] - values[kk]) * s
    out[~before] = path[~before]
    return out


def smooth_noise(rng: np.random.Generator, n_frames: int, dim: int, band: tuple, amp, n_waves: int = 4,
                 fps: int = FPS) -> np.ndarray:
    """Sum of ``n_waves`` random sinusoids per channel in the band (Hz); std ~ amp."""
    t = np.arange(n_frames)[:, None, None] / fps
    f = rng.uniform(*band, size=(1, dim, n_waves))
    ph = rng.uniform(0, 2 * np.pi, size=(1, dim, n_waves))
    a = rng.uniform(0.5, 1.5, size=(1, dim, n_waves))
    a = a / np.sqrt((a**2).sum(-1, keepdims=True) / 2)
    return (a * np.sin(2 * np.pi * f * t + ph)).sum(-1) * np.asarray(amp)


def sample_action_track(action: str, rng: np.random.Generator, n_frames: int, style: np.ndarray | None = None,
                        fps: int = FPS, tremor_deg: float = 0.5) -> dict[str, np.ndarray]:
    """One sequence of an action: angles (T, 5, 4) deg, wrist (T, 3) deg, offset (T, 3) mm.
    ``style`` (5, 4) is a per-subject offset of all key poses (deg)."""
    act = ACTIONS[action]
    style = np.zeros((5, 4)) if style is None else style
    dur = n_frames / fps
    times, holds, vals = [0.0], [], []
    k = int(rng.integers(len(act.cycle)))  # start anywhere in the cycle
    t = 0.0
    while True:
        key = act.cycle[k % len(act.cycle)]
        pose = KEY_POSES[key.pose] + style + rng.normal(0, act.pose_jitter, (5, 4))
        pose = clip_angles(pose).reshape(20)
        wrist = np.clip(np.array(key.wrist) + rng.normal(0, 1, 3) * np.array(key.wrist_jitter),
                        WRIST_LIMITS[:, 0], WRIST_LIMITS[:, 1])
        off = rng.normal(0, 1, 3) * np.array(key.move)
        vals.append(np.concatenate([pose, wrist, off]))
        hold = t + rng.uniform(*act.hold_s)
        holds.append(hold)
        if hold >= dur:
            break
        t = hold + rng.uniform(*act.move_s)
        times.append(t)
        k += 1
    times, holds, vals = np.array(times), np.array(holds), np.array(vals)
    if len(times) == 1:  # a single keyframe: duplicate so the interpolator has a segment
        times, holds, vals = np.array([0.0, dur + 1]), np.array([dur + 1, dur + 2]), np.repeat(vals, 2, 0)
    path = interpolate_keyframes(times, vals, holds, n_frames, fps)
    angles = path[:, :20].reshape(-1, 5, 4)
    # physiological tremor (8-12 Hz) and slow drift of posture (0.1-0.6 Hz)
    angles = angles + smooth_noise(rng, n_frames, 20, (8.0, 12.0), tremor_deg).reshape(-1, 5, 4)
    angles = angles + smooth_noise(rng, n_frames, 20, (0.1, 0.6), 2.0).reshape(-1, 5, 4)
    wrist = path[:, 20:23] + smooth_noise(rng, n_frames, 3, (0.1, 0.5), (3.0, 3.0, 4.0))
    wrist = wrist + smooth_noise(rng, n_frames, 3, (8.0, 12.0), tremor_deg * 0.5)
    offset = path[:, 23:26] + smooth_noise(rng, n_frames, 3, (0.05, 0.4), (15.0, 15.0, 20.0))
    return {"angles": clip_angles(angles), "wrist": np.clip(wrist, WRIST_LIMITS[:, 0], WRIST_LIMITS[:, 1]),
            "offset": offset, "key_times": times, "key_holds": holds}


def subject_style(rng: np.random.Generator, std: float = 3.0) -> np.ndarray:
    """A per-subject offset (5, 4) deg added to every key pose: individual motion style."""
    return rng.normal(0, std, (5, 4))


def angle_limits() -> np.ndarray:
    """(5, 4, 2) joint-angle limits in degrees (re-exported for tests and notebooks)."""
    return LIMITS.copy()
