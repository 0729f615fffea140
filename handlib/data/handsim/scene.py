"""HandSim scenes: one sequence's motion placed in front of a camera, its object and its look.

Appearance is drawn per sequence and blended with a dataset-wide canonical look by
``shift`` in [0, 1]: 0 makes every sequence look alike (same background, light, skin,
object colour, base viewpoint), 1 draws each independently.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlib.data.handsim import camera, ego
from handlib.data.handsim.anatomy import Subject, forward_kinematics
from handlib.data.handsim.background import STYLES, make_background
from handlib.data.handsim.motion import ACTIONS, KEY_POSES, sample_action_track
from handlib.data.handsim.render import Look
from handlib.data.crop import centre_box, crop_K
from handlib.geometry import project_np


@dataclass
class Canon:
    """The dataset-wide canonical appearance that ``shift`` = 0 collapses every sequence to."""

    view: dict  # mode -> (4,) view angles
    look: dict  # scalar and vector look parameters
    background: np.ndarray


def _look_params(rng: np.random.Generator) -> dict:
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.9, 0.3), -rng.uniform(0.3, 1.0)])
    warm = rng.uniform(0, 1)
    tint = (1 - warm) * np.array([0.88, 0.97, 1.12]) + warm * np.array([1.1, 1.0, 0.85])
    return {"light": light / np.linalg.norm(light), "ambient": rng.uniform(0.3, 0.6),
            "diffuse": rng.uniform(0.35, 0.75), "tint": tint * rng.uniform(0.75, 1.2),
            "sleeve": rng.uniform(20, 230, 3), "obj_color": rng.uniform(20, 240, 3),
            "stripe": rng.uniform(20, 240, 3), "noise": rng.uniform(0.2, 1.0), "blur": rng.uniform(0.0, 1.0),
            "skin": rng.uniform(0, 1)}


def make_canon(rng: np.random.Generator) -> Canon:
    view = {m: camera.view_params(m, rng) for m in ("ego", "third")}
    return Canon(view, _look_params(rng), make_background(rng, "room"))


def _mix(a, b, w: float):
    return (1 - w) * np.asarray(a, dtype=np.float64) + w * np.asarray(b, dtype=np.float64)


def make_look(rng: np.random.Generator, canon: Canon, shift: float, subject: Subject, noise_max: float,
              blur_max: float) -> tuple[Look, str]:
    """Sample a sequence's look and blend it with the canonical one by ``shift``."""
    p, c = _look_params(rng), canon.look
    style = STYLES[int(rng.integers(len(STYLES)))]
    bg = make_background(rng, style)
    if shift < 1.0:
        bg = np.clip(_mix(canon.background, bg, shift), 0, 255).astype(np.uint8)
    m = {k: _mix(c[k], p[k], shift) for k in p}
    tint = m["tint"]
    bg = np.clip(bg * (0.5 + 0.5 * tint), 0, 255).astype(np.uint8)  # the scene light tints the room too
    canon_skin = np.array([224.0, 172.0, 138.0])
    skin = _mix(canon_skin, subject.skin, shift)
    light = m["light"] / np.linalg.norm(m["light"])
    look = Look(skin=skin, sleeve=m["sleeve"], obj_color=m["obj_color"], light=light, ambient=float(m["ambient"]),
                diffuse=float(m["diffuse"]), tint=tint, background=bg, noise=float(m["noise"]) * noise_max,
                blur=float(m["blur"]) * blur_max)
    return look, style


def _circle_fit(p: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares circle through 2D points (N, 2) -> (centre (2,), radius)."""
    A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
    sol = np.linalg.lstsq(A, (p**2).sum(1), rcond=None)[0]
    return sol[:2], float(np.sqrt(max(sol[2] + sol[:2] @ sol[:2], 1.0)))


def object_in_hand(kind: str, local: np.ndarray, subj: Subject, rng: np.random.Generator) -> dict:
    """Object geometry in the hand frame: centre (T, 3), axis (T, 3) unit, radius, length (mm)."""
    T, s = len(local), subj.scale
    if kind == "cylinder":  # wrapped by the fingers: fit the middle finger's arc in the (d, b) plane
        grasp = forward_kinematics(KEY_POSES["grasp"], subj)[[9, 10, 11, 12]][:, [0, 2]]
        c2, rad = _circle_fit(grasp)
        radius = float(np.clip(rad - 9 * s, 18.0, 45.0))
        centre = np.array([c2[0], rng.uniform(-12, 5) * s, c2[1]])
        return {"kind": kind, "centre": np.broadcast_to(centre, (T, 3)).copy(),
                "axis": np.broadcast_to([0.0, 1.0, 0.0], (T, 3)).copy(), "radius": radius,
                "length": float(rng.uniform(120, 200)), "stripe": rng.random() < 0.7}
    if kind == "sphere":  # between the thumb and index pads
        mid = (local[:, 4] + local[:, 8]) / 2
        gap = np.linalg.norm(local[:, 4] - local[:, 8], axis=-1)
        radius = float(np.clip(np.median(gap) / 2 - 5 * s, 9.0, 25.0))
        return {"kind": kind, "centre": mid + np.array([0.0, 0.0, -0.3 * radius]), "radius": radius}
    # pen held in a tripod grip, leaning back over the web of the thumb
    axis = np.array([-0.45, 0.35, 0.8])
    axis /= np.linalg.norm(axis)
    L = float(rng.uniform(110, 150))
    centre = local[:, [4, 8, 12]].mean(1) + axis * L * 0.3
    return {"kind": "cylinder", "centre": centre, "axis": np.broadcast_to(axis, (T, 3)).copy(),
            "radius": float(rng.uniform(4.5, 7.0)), "length": L, "stripe": False}


def to_camera(obj: dict, R: np.ndarray, pos: np.ndarray) -> dict:
    out = dict(obj)
    out["centre"] = np.einsum("tij,tj->ti", R, obj["centre"]) + pos
    if "axis" in obj:
        out["axis"] = np.einsum("tij,tj->ti", R, obj["axis"])
    return out


def build_sequence(action: str, subj: Subject, style: np.ndarray, n_frames: int, mode: str, size: int,
                   rng: np.random.Generator, canon: Canon, shift: float, tremor_deg: float = 0.5,
                   ego_motion: float = 1.0, ego_rng: np.random.Generator | None = None,
                   crop_source: str = "gt") -> dict:
    """Motion, camera and crop of one sequence (no pixels). Returns a scene dict with
    j3d (T, 21, 3) mm camera frame, R, Rf (T, 3, 3), K (3, 3), box (T, 4), Kc (T, 3, 3) float32,
    subject, obj (camera frame) or None, and for a moving camera bg_H (T, 3, 3).

    ``ego_motion`` scales the egocentric head motion and arm transport (``ego.py``; 0 = fixed
    camera). They are drawn from ``ego_rng`` (default: a child spawned from ``rng``, which
    leaves ``rng``'s stream untouched), so everything else of the sequence is the same for any
    ``ego_motion``. ``crop_source`` "gt" or "previous" (label-free): see ``camera.crop_boxes``."""
    track = sample_action_track(action, rng, n_frames, style, tremor_deg=tremor_deg)
    local = forward_kinematics(track["angles"], subj)  # (T, 21, 3) hand frame
    angles = _mix(canon.view[mode], camera.view_params(mode, rng), shift)
    Rb = camera.base_rotation(mode, angles)
    R = Rb @ camera.wrist_rotation(track["wrist"])  # (T, 3, 3)
    Rf = Rb @ camera.rot_axis(np.eye(3)[0], track["wrist"][:, 2])
    K = camera.intrinsics(rng)
    pos0 = camera.hand_placement(mode, rng, K, Rb @ np.array([60.0 * subj.scale, 0.0, 0.0]))
    pos = pos0 + track["offset"] @ Rb.T  # (T, 3)
    moving = mode == "ego" and ego_motion > 0
    if moving:
        ego_rng = rng.spawn(1)[0] if ego_rng is None else ego_rng
        head_ang, head_shift = ego.head_motion(ego_rng, n_frames, ego_motion)
        if ACTIONS[action].transport:
            pos = pos + ego.arm_transport(ego_rng, n_frames, pos0, K, ego_motion)
    j3d = np.einsum("tij,tnj->tni", R, local) + pos[:, None]
    dz = max(0.0, 150.0 - j3d[..., 2].min())  # keep every joint well in front of the camera
    j3d[..., 2] += dz
    pos[:, 2] += dz
    # forearm (rendering only): between the hand's long axis and the direction of the body
    shoulder = np.array([200.0, 550.0, -50.0]) if mode == "ego" else pos.mean(0) + np.array([120.0, 350.0, 250.0])
    to_body = shoulder - pos
    to_body /= np.linalg.norm(to_body, axis=-1, keepdims=True)
    fore = 0.35 * (-Rf[:, :, 0]) + 0.65 * to_body
    fore /= np.linalg.norm(fore, axis=-1, keepdims=True)
    out = {}
    if moving:  # body frame -> the moving camera's frame: X_cam = Rc^T (X_body - c)
        Rc, c = ego.camera_pose(ego.follow_hand(head_ang, j3d.mean(1), K), head_shift)
        Rt = np.swapaxes(Rc, -1, -2)
        j3d = np.einsum("tij,tnj->tni", Rt, j3d - c[:, None])
        dz = max(0.0, 150.0 - j3d[..., 2].min())  # as above, for the turned head
        j3d[..., 2] += dz
        c = c - Rc[:, :, 2] * dz
        pos = np.einsum("tij,tj->ti", Rt, pos - c)
        R, Rf, fore = Rt @ R, Rt @ Rf, np.einsum("tij,tj->ti", Rt, fore)
        out["bg_H"] = ego.background_homography(K, Rc)
    box = camera.crop_boxes(project_np(j3d, K), rng, source=crop_source)
    obj = None
    kind = ACTIONS[action].obj
    if kind is not None:
        obj = to_camera(object_in_hand(kind, local, subj, rng), R, pos)
    out.update({"j3d": j3d.astype(np.float32), "R": R, "Rf": Rf, "K": K, "box": box,
                "Kc": crop_K(K, centre_box(box, size), size).astype(np.float32), "forearm": fore, "subject": subj, "obj": obj, "mode": mode,
                "pos": pos, "angles": track["angles"]})
    return out
