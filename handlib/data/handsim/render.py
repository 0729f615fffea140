"""HandSim rendering: tapered capsules, a palm slab and held objects, drawn far-to-near.

Every primitive becomes one or more filled polygons (OpenCV, anti-aliased, sub-pixel
vertices) drawn in painter's order by depth per frame: for each finger segment a dark
rim, a shaded body and a highlight offset towards the light give the round look; the palm
is the convex hull of a projected slab; the forearm and sleeve are wide capsules. All
geometry and colours are computed vectorised per sequence; the per-frame loop only sorts
and draws. Then the frame gets the sequence's blur and sensor noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from handlib.data.handsim.anatomy import palm_vertices

_ARC = np.deg2rad(np.linspace(-90, 90, 7))  # half-circle vertices of a capsule end
SEGMENTS = [(1, 2), (2, 3), (3, 4)] + [(5 + 4 * f + k, 6 + 4 * f + k) for f in range(4) for k in range(3)]
SHIFT = 4  # sub-pixel bits of the polygon vertices
_ONE = float(1 << SHIFT)


@dataclass
class Look:
    """Appearance of one sequence."""

    skin: np.ndarray  # (3,) RGB 0-255
    sleeve: np.ndarray  # (3,)
    obj_color: np.ndarray  # (3,)
    light: np.ndarray  # (3,) unit vector towards the light, camera frame
    ambient: float
    diffuse: float
    tint: np.ndarray  # (3,) RGB gains of the light colour
    background: np.ndarray  # (FRAME_H, FRAME_W, 3) uint8
    noise: float  # sensor noise std (grey levels)
    blur: float  # blur sigma in px at 128 px output (scaled with the size)


def _capsule_polys(c0, c1, r0, r1) -> np.ndarray:
    """2D capsule outlines. c0, c1 (..., 2) px, r0, r1 (...) px -> (..., 14, 2) polygon."""
    d = c1 - c0
    phi = np.arctan2(d[..., 1], d[..., 0])[..., None]
    a1 = phi + _ARC  # far end: -90..90 around the direction
    a0 = phi + np.pi + _ARC  # near end: the other half
    p1 = c1[..., None, :] + r1[..., None, None] * np.stack([np.cos(a1), np.sin(a1)], -1)
    p0 = c0[..., None, :] + r0[..., None, None] * np.stack([np.cos(a0), np.sin(a0)], -1)
    return np.concatenate([p1, p0], -2)


def _shade(base: np.ndarray, normal: np.ndarray, look: Look) -> np.ndarray:
    """Lambert shading: base (..., 3) RGB, normal (..., 3) unit -> (..., 3) RGB."""
    lam = np.clip((normal * look.light).sum(-1, keepdims=True), 0.0, 1.0)
    return np.clip(base * look.tint * (look.ambient + look.diffuse * lam), 0, 255)


def _front_normal(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Normal of a cylinder's silhouette-centre line facing the camera: (..., 3)."""
    a = p1 - p0
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-6)
    v = -(p0 + p1) / 2
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    n = v - (v * a).sum(-1, keepdims=True) * a
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, n / np.maximum(norm, 1e-6), v)


def _proj(p: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p (T, N, 3), K (T, 3, 3) -> (uv (T, N, 2) px, focal/z (T, N) px per mm)."""
    uvw = p @ np.swapaxes(K, -1, -2)
    z = np.maximum(uvw[..., 2], 1e-3)
    return uvw[..., :2] / z[..., None], K[:, None, 0, 0] / z


def _clamp_near(p0: np.ndarray, p1: np.ndarray, z_min: float = 60.0) -> np.ndarray:
    """Shorten segments p0 -> p1 whose far end comes closer to the camera than z_min."""
    z0, z1 = p0[..., 2:3], p1[..., 2:3]
    t = np.where(z1 < z_min, (z0 - z_min) / np.maximum(z0 - z1, 1e-6), 1.0)
    return p0 + (p1 - p0) * np.clip(t, 0.0, 1.0)


def capsule_layers(p0, p1, r0, r1, K, base, look: Look, size: int, rim: bool = True):
    """Three layers (rim, body, highlight) of capsules. p0, p1 (T, N, 3) mm, r0, r1 (N,) mm.
    Returns polys (T, N, L, 14, 2) int32 (sub-pixel), colours (T, N, L, 3), depth (T, N)."""
    c0, s0 = _proj(p0, K)
    c1, s1 = _proj(p1, K)
    q0, q1 = r0 * s0, r1 * s1  # (T, N) px radii
    n = _front_normal(p0, p1)
    body = _shade(base, n, look)
    hl_n = n + 0.6 * look.light
    hl_n /= np.linalg.norm(hl_n, axis=-1, keepdims=True)
    light2d = look.light[:2] / max(np.linalg.norm(look.light[:2]), 1e-6)
    off0 = (q0[..., None] * 0.3) * light2d
    off1 = (q1[..., None] * 0.3) * light2d
    rim_px = max(0.5, size / 160)
    layers = [(c0, c1, q0 + rim_px, q1 + rim_px, body * 0.55)] if rim else []
    layers += [(c0, c1, q0, q1, body),
               (c0 + off0, c1 + off1, q0 * 0.45, q1 * 0.45, np.clip(_shade(base, hl_n, look) * 1.12 + 8, 0, 255))]
    polys = np.stack([_capsule_polys(a, b, ra, rb) for a, b, ra, rb, _ in layers], 2)
    cols = np.stack([np.broadcast_to(c, body.shape) for *_, c in layers], 2)
    depth = (p0[..., 2] + p1[..., 2]) / 2
    return np.round(polys * _ONE).astype(np.int32), cols, depth


def _hull_layers(pts3d: np.ndarray, K: np.ndarray, color: np.ndarray):
    """Projected point sets: pts3d (T, V, 3) -> (uv (T, V, 2) sub-px int, colour, mean depth (T,))."""
    uv, _ = _proj(pts3d, K)
    return np.round(uv * _ONE).astype(np.int32), color, pts3d[..., 2].mean(-1)


def render_sequence(scene: dict, look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one sequence: -> (T, size, size, 3) uint8 RGB.

    ``scene`` holds (T = frames): j3d (T, 21, 3) mm camera frame, R (T, 3, 3) hand -> camera,
    forearm (T, 3) unit direction wrist -> elbow, Kc (T, 3, 3) crop intrinsics, box (T, 4) full-frame crops,
    subject, and optionally obj (dict, see ``scene.object_in_hand``) and bg_H (T, 3, 3), the
    background's motion under a turning camera."""
    j3d, R, Kc, subj = scene["j3d"], scene["R"], scene["Kc"], scene["subject"]
    T = len(j3d)
    skin = np.asarray(look.skin, dtype=np.float64)
    # finger segments (15 capsules)
    seg = np.array(SEGMENTS)
    radii = subj.radii.reshape(15, 2)
    cap = [capsule_layers(j3d[:, seg[:, 0]], j3d[:, seg[:, 1]], radii[:, 0], radii[:, 1], Kc, skin, look, size)]
    # forearm and sleeve: from the wrist back along the forearm's long axis
    w = j3d[:, :1]
    back = scene["forearm"][:, None, :]  # (T, 1, 3) unit, from the wrist towards the elbow
    s = subj.scale
    f0, f1 = w + back * 15 * s, _clamp_near(w + back * 15 * s, w + back * 120 * s)
    cap.append(capsule_layers(f0, f1, np.array([24.0 * s]), np.array([28.0 * s]), Kc, skin, look, size))
    s0, s1 = _clamp_near(w, w + back * 150 * s), _clamp_near(w, w + back * 400 * s)
    cap.append(capsule_layers(s0, s1, np.array([36.0 * s]), np.array([42.0 * s]), Kc, look.sleeve, look, size))
    cap_polys = np.concatenate([c[0] for c in cap], 1)  # (T, 17, 3, 14, 2)
    cap_cols = np.concatenate([c[1] for c in cap], 1)
    cap_depth = np.concatenate([c[2] for c in cap], 1)
    # the forearm and sleeve are drawn first (behind the hand): a forearm pointing at the camera
    # would otherwise hide the whole hand, which egocentric views almost never show
    cap_depth[:, 15] = 1e6
    cap_depth[:, 16] = 2e6
    # palm slab: convex hull of its 16 corners; palmar side lighter than the back
    pv = palm_vertices(subj) @ np.swapaxes(R, -1, -2) + j3d[:, :1]  # (T, 16, 3)
    b = R[:, :, 2]  # back-of-hand normal in camera frame
    view = -pv.mean(1)
    view /= np.linalg.norm(view, axis=-1, keepdims=True)
    facing_back = (b * view).sum(-1) > 0
    normal = np.where(facing_back[:, None], b, -b)
    palm_base = np.where(facing_back[:, None], skin, np.clip(skin * 1.06 + [10, 2, 2], 0, 255))
    palm_col = _shade(palm_base, 0.6 * normal + 0.4 * view, look)
    palm_uv, _, palm_depth = _hull_layers(pv, Kc, None)
    palm_hl = np.clip(_shade(palm_base, (normal + look.light) / 2, look) * 1.08 + 6, 0, 255)
    palm_ext = (palm_uv.max(1) - palm_uv.min(1)).max(-1)  # (T,) sub-px extent
    palm_hl_off = 0.12 * palm_ext[:, None, None] * (look.light[:2] / max(np.linalg.norm(look.light[:2]), 1e-6))
    rim_w = max(1, size // 96)
    obj = scene.get("obj")
    obj_prims = _object_prims(obj, Kc, look, size) if obj is not None else None

    M = _bg_transforms(scene["box"], size, scene.get("bg_H"))  # (T, 2, 3) background px -> crop px
    bg_scale = float(np.median(np.abs(np.linalg.det(M[:, :, :2])) ** 0.5))
    bg = cv2.resize(look.background, None, fx=bg_scale, fy=bg_scale, interpolation=cv2.INTER_AREA)
    M[:, :, :2] /= bg_scale
    blur = look.blur * size / 128.0
    noise_bank = [np.round(rng.normal(0, look.noise, (size, size, 3))).astype(np.int16) for _ in range(4)]
    noise_idx = rng.integers(0, 4, T)
    out = np.empty((T, size, size, 3), np.uint8)
    n_cap = cap_polys.shape[1]
    depth = np.concatenate([cap_depth, palm_depth[:, None]] + ([obj_prims[2][:, None]] if obj_prims else []), 1)
    order = np.argsort(-depth, axis=1, kind="stable").tolist()
    cap_cols = cap_cols.tolist()  # python lists: OpenCV wants tuples/lists of numbers per colour
    palm_rim, palm_fill, palm_hl = (palm_col * 0.55).tolist(), palm_col.tolist(), palm_hl.tolist()
    aa = cv2.LINE_AA
    for t in range(T):
        img = cv2.warpAffine(bg, M[t], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        for i in order[t]:
            if i < n_cap:
                polys, cols = cap_polys[t, i], cap_cols[t][i]
                for k in range(len(cols)):
                    cv2.fillPoly(img, [polys[k]], cols[k], aa, SHIFT)
            elif i == n_cap:
                hull = cv2.convexHull(palm_uv[t])
                cv2.polylines(img, [hull], True, palm_rim[t], rim_w, aa, SHIFT)
                cv2.fillPoly(img, [hull], palm_fill[t], aa, SHIFT)
                c = hull.mean(0)  # a soft highlight towards the light gives the palm volume
                inner = (c + 0.55 * (hull - c) + palm_hl_off[t]).astype(np.int32)
                cv2.fillPoly(img, [inner], palm_hl[t], aa, SHIFT)
            else:
                for poly, col in obj_prims[0](t):
                    cv2.fillPoly(img, [poly], col, aa, SHIFT)
        if blur > 0.3:
            k = 2 * int(np.ceil(2 * blur)) + 1
            img = cv2.GaussianBlur(img, (k, k), blur)
        out[t] = cv2.add(img, noise_bank[noise_idx[t]], dtype=cv2.CV_8U)
    return out


def _bg_transforms(box: np.ndarray, size: int, H: np.ndarray | None = None) -> np.ndarray:
    """Affine maps (T, 2, 3) from full-frame background pixels to the crop. ``H`` (T, 3, 3)
    first moves the background as the turning camera sees it (``ego.background_homography``),
    linearised at the box centre: exact there, off by < 2 px at the corners of a 128 px crop
    for a 10 deg turn; only the background's texture is affected, never a label."""
    s = size / box[:, 2]
    A = np.zeros((len(box), 2, 3))
    A[:, 0, 0] = A[:, 1, 1] = 1.0
    if H is not None:  # affine A(x) = H(p) + J (x - p) around p = H^-1(box centre)
        c = np.concatenate([box[:, :2] + box[:, 2:] / 2, np.ones((len(box), 1))], 1)
        p = np.einsum("tij,tj->ti", np.linalg.inv(H), c)
        p = p / p[:, 2:]
        w = np.einsum("tj,tj->t", H[:, 2], p)
        hp = np.einsum("tij,tj->ti", H[:, :2], p) / w[:, None]  # = box centre
        J = (H[:, :2, :2] - hp[:, :, None] * H[:, 2, None, :2]) / w[:, None, None]
        A[:, :, :2] = J
        A[:, :, 2] = hp - np.einsum("tij,tj->ti", J, p[:, :2])
    A[:, :, 2] -= box[:, :2]
    return A * s[:, None, None]


def _object_prims(obj: dict, Kc: np.ndarray, look: Look, size: int):
    """Per-frame polygons of a held object: (draw(t) -> [(poly, colour)], None, depth (T,))."""
    base = np.asarray(look.obj_color, dtype=np.float64)
    centre = obj["centre"]  # (T, 3)
    if obj["kind"] == "sphere":
        r = obj["radius"]
        uv, sc = _proj(centre[:, None], Kc)
        q = r * sc[:, 0]
        ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 17)[:-1]), np.sin(np.linspace(0, 2 * np.pi, 17)[:-1])], -1)
        view = -centre / np.linalg.norm(centre, axis=-1, keepdims=True)
        body = _shade(base, view, look)
        hl = np.clip(_shade(base, (view + look.light) / np.linalg.norm(view + look.light, axis=-1, keepdims=True),
                            look) * 1.15 + 15, 0, 255)
        l2 = look.light[:2] / max(np.linalg.norm(look.light[:2]), 1e-6)
        p_body = np.round((uv + q[:, None, None] * ring) * _ONE).astype(np.int32)
        p_rim = np.round((uv + (q[:, None, None] + max(0.5, size / 160)) * ring) * _ONE).astype(np.int32)
        p_hl = np.round((uv + q[:, None, None] * (0.4 * ring + 0.35 * l2)) * _ONE).astype(np.int32)

        def draw(t):
            return [(p_rim[t], (body[t] * 0.55).tolist()), (p_body[t], body[t].tolist()), (p_hl[t], hl[t].tolist())]

        return draw, None, centre[:, 2]
    # cylinders (bottle, pen): hull of the two end circles, a shaded side and a lit cap
    axis, r, L = obj["axis"], obj["radius"], obj["length"]  # axis (T, 3) unit
    u = np.cross(axis, np.array([0.0, 0.0, 1.0]))
    bad = np.linalg.norm(u, axis=-1) < 1e-3
    u[bad] = np.cross(axis[bad], np.array([1.0, 0.0, 0.0]))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    v = np.cross(axis, u)
    ang = np.linspace(0, 2 * np.pi, 13)[:-1]
    circ = r * (np.cos(ang)[None, :, None] * u[:, None] + np.sin(ang)[None, :, None] * v[:, None])  # (T, 12, 3)
    top = centre[:, None] + axis[:, None] * L / 2 + circ
    bot = centre[:, None] + axis[:, None] * (-L / 2) + circ
    uv_top, _ = _proj(top, Kc)
    uv_bot, _ = _proj(bot, Kc)
    pts = np.round(np.concatenate([uv_top, uv_bot], 1) * _ONE).astype(np.int32)
    side = _shade(base, _front_normal(centre - axis * L / 2, centre + axis * L / 2), look)
    view = -centre / np.linalg.norm(centre, axis=-1, keepdims=True)
    cap_up = (axis * view).sum(-1) > 0  # the top cap faces the camera
    cap_n = np.where(cap_up[:, None], axis, -axis)
    cap_col = np.clip(_shade(base, cap_n, look) * 1.1 + 10, 0, 255)
    caps = np.where(cap_up[:, None, None], np.round(uv_top * _ONE), np.round(uv_bot * _ONE)).astype(np.int32)
    stripe = 255.0 - base if obj.get("stripe") else None
    if stripe is not None:  # a label band round the middle of a bottle
        band = np.concatenate([_proj(centre[:, None] + axis[:, None] * (s * L) + circ * 1.01, Kc)[0]
                               for s in (-0.12, 0.12)], 1)
        band = np.round(band * _ONE).astype(np.int32)
        band_col = _shade(stripe, _front_normal(centre - axis, centre + axis), look)

    def draw(t):
        hull = cv2.convexHull(pts[t])
        prims = [(hull, (side[t] * 0.55).tolist())]
        prims.append((hull, side[t].tolist()))
        if stripe is not None:
            prims.append((cv2.convexHull(band[t]), band_col[t].tolist()))
        prims.append((caps[t], cap_col[t].tolist()))
        return prims

    return draw, None, centre[:, 2]
