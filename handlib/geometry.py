"""Camera geometry for hands: projection, 2.5D <-> 3D, closed-form root depth.

Batched torch with any leading dims. 3D joints in mm in the camera frame
(OpenCV: x right, y down, z forward); 2D in pixels; K is (..., 3, 3).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from handlib.skeleton import REF_BONE, ROOT


def project(j3d: Tensor, K: Tensor) -> Tensor:
    """(..., J, 3) mm, (..., 3, 3) -> (..., J, 2) px."""
    uvw = j3d @ K.transpose(-1, -2)  # (..., J, 3)
    return uvw[..., :2] / uvw[..., 2:3]


def project_np(j3d: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``project`` for numpy arrays (the data readers' side of the boundary), in j3d's dtype."""
    return project(torch.from_numpy(np.asarray(j3d)), torch.from_numpy(np.asarray(K, dtype=j3d.dtype))).numpy()


def normalize_points(j2d: Tensor, K: Tensor) -> Tensor:
    """K^-1 [u, v, 1]: (..., J, 2) px -> (..., J, 3) rays with z = 1."""
    ones = torch.ones_like(j2d[..., :1])
    return torch.cat([j2d, ones], -1) @ torch.linalg.inv(K).transpose(-1, -2)


def unproject(j2d: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """(..., J, 2) px, (..., J) mm depth -> (..., J, 3) mm."""
    return normalize_points(j2d, K) * depth[..., None]


def to_25d(j3d: Tensor, K: Tensor, root: int = ROOT) -> tuple[Tensor, Tensor]:
    """3D -> (j2d (..., J, 2) px, z_rel (..., J) mm) with z_rel = z - z_root."""
    z = j3d[..., 2]
    return project(j3d, K), z - z[..., root : root + 1]


def from_25d(j2d: Tensor, z_rel: Tensor, z_root: Tensor, K: Tensor) -> Tensor:
    """(j2d px, z_rel mm, z_root (...,) mm, K) -> (..., J, 3) mm (Eq. 3 of the paper)."""
    return unproject(j2d, z_rel + z_root[..., None], K)


def root_depth(
    j2d: Tensor,
    z_rel: Tensor,
    K: Tensor,
    bone_length: Tensor | float,
    bone: tuple[int, int] = REF_BONE,
    eps: float = 1e-9,
) -> tuple[Tensor, Tensor]:
    """Closed-form absolute root depth (Iqbal et al. ECCV'18, Sec. 3.2).

    With x_n = K^-1 [u_n, v_n, 1] and P_n = x_n (Z + z_n), the reference bone
    (n, m) must have length C: |P_n - P_m|^2 = C^2, a quadratic a Z^2 + b Z + c = 0
    in the root depth Z. We take the larger root; the discriminant is clamped at 0.
    Solved in normalised units (z / C), which is the same as mm up to the scale C.

    Returns (z_root (...,) mm, valid (...,) bool). ``valid`` is False where the
    bone is degenerate (both ends project to one ray, a ~ 0) or the discriminant
    was negative (the 2.5D input admits no exact solution).
    """
    n, m = bone
    C = torch.as_tensor(bone_length, dtype=j2d.dtype, device=j2d.device)
    x = normalize_points(j2d, K)  # (..., J, 3)
    zs = z_rel / C[..., None] if C.ndim else z_rel / C  # scale-normalised
    xn, yn = x[..., n, 0], x[..., n, 1]
    xm, ym = x[..., m, 0], x[..., m, 1]
    zn, zm = zs[..., n], zs[..., m]
    dx, dy = xn - xm, yn - ym
    ex, ey = xn * zn - xm * zm, yn * zn - ym * zm
    a = dx**2 + dy**2
    b = 2 * (dx * ex + dy * ey)
    c = ex**2 + ey**2 + (zn - zm) ** 2 - 1.0
    disc = b**2 - 4 * a * c
    valid = (a > eps) & (disc >= 0)
    Z = (-b + disc.clamp_min(0).sqrt()) / (2 * a.clamp_min(eps))
    return Z * C, valid


def rotation_z(angle: Tensor) -> Tensor:
    """(...,) radians -> (..., 2, 2) in-plane rotation matrices."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotate_about_camera_z(seq: Tensor, angle: Tensor | float, root: int = ROOT) -> Tensor:
    """Rotate pose sequences about the camera z-axis through the first frame's root.

    seq: (..., S, J, 3): either 3D (x, y, z) mm or 2.5D (u, v, z_rel). The first two
    channels are rotated in the image plane about the root of frame 0, the third is
    left alone, so bone lengths (3D) and the magnitude of every inter-frame
    displacement are preserved. One angle per sequence: ``angle`` is a float or (...,).
    """
    angle = torch.as_tensor(angle, dtype=seq.dtype, device=seq.device)
    R = rotation_z(angle)  # (..., 2, 2)
    centre = seq[..., :1, root : root + 1, :2]  # (..., 1, 1, 2)
    xy = (seq[..., :2] - centre) @ R[..., None, :, :].transpose(-1, -2) + centre
    return torch.cat([xy, seq[..., 2:]], -1)


def random_angles(n: int, max_deg: float = 180.0, generator: torch.Generator | None = None) -> Tensor:
    """n angles uniform in [-max_deg, max_deg] degrees, as radians."""
    u = torch.rand(n, generator=generator)
    return (2 * u - 1) * math.radians(max_deg)


def crop_intrinsics(K: Tensor, box: Tensor, out_size: int) -> Tensor:
    """Intrinsics of a square crop ``box`` = (..., 4) [x0, y0, side, side] px resized to out_size."""
    s = out_size / box[..., 2]
    Kc = K.clone()
    Kc[..., 0, :] = (K[..., 0, :] - box[..., 0, None] * K[..., 2, :]) * s[..., None]
    Kc[..., 1, :] = (K[..., 1, :] - box[..., 1, None] * K[..., 2, :]) * s[..., None]
    return Kc
