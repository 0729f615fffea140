"""Label-consistent image augmentation for the pose model M (any FrameStore source).

``HandAugment`` works on the batch dicts of ``LabelledFrames`` (``transform=...``):
image (B, 3, H, W) float in [0, 1], j3d (B, 21, 3) mm, K (B, 3, 3). Per sample it draws an
in-plane rotation, a zoom and a shift of the crop and applies them as a camera change that
keeps every label exact: the 3D joints turn about the camera's optical axis by the same
angle (j3d' = Rz j3d), the intrinsics get the zoom and the new principal point
(K' = [[s fx, 0, cx'], [0, s fy, cy'], [0, 0, 1]]), and the image is warped by the affine map
K' Rz K^-1 that this camera change induces, so ``project(j3d', K')`` lands on the moved
pixels and z_rel is unchanged. Colour jitter and grayscale come from torchvision.transforms.v2.
Randomness comes from torch's global RNG (seed it with ``repro.seed_everything``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from handlib.config import StageConfig, param


@dataclass(frozen=True)
class AugmentConfig(StageConfig):
    stage = "augment"
    rotate_deg: float = param(20.0, range=(0.0, 180.0), help="max in-plane rotation")
    zoom: tuple[float, float] = param((0.9, 1.1), range=(0.25, 4.0))
    shift: float = param(0.05, range=(0.0, 0.5), help="max crop shift, fraction of the image side")
    brightness: float = param(0.3, range=(0.0, 1.0))
    contrast: float = param(0.3, range=(0.0, 1.0))
    saturation: float = param(0.3, range=(0.0, 1.0))
    hue: float = param(0.03, range=(0.0, 0.5))
    grayscale_p: float = param(0.05, range=(0.0, 1.0))


def camera_change(K: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor, size: int):
    """New intrinsics and the image map for an in-plane camera turn + zoom + shift.

    K (B, 3, 3), angle (B,) rad, zoom (B,), shift (B, 2) px. Returns (Rz (B, 3, 3), K' (B, 3, 3),
    M (B, 3, 3) affine pixel map old -> new) such that for any X: K' Rz X ~ M K X and the crop
    centre moves by ``shift``."""
    B = K.shape[0]
    c, s = torch.cos(angle), torch.sin(angle)
    Rz = torch.zeros(B, 3, 3, dtype=K.dtype)
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
    centre = torch.full((B, 3), (size - 1) / 2.0, dtype=K.dtype)
    centre[:, 2] = 1.0
    q = (Rz @ torch.linalg.inv(K) @ centre[..., None])[..., 0]  # (B, 3), q_z = 1
    Kn = torch.zeros_like(K)
    Kn[:, 0, 0], Kn[:, 1, 1], Kn[:, 2, 2] = zoom * K[:, 0, 0], zoom * K[:, 1, 1], 1.0
    Kn[:, 0, 1] = zoom * K[:, 0, 1]
    Kn[:, 0, 2] = centre[:, 0] + shift[:, 0] - (Kn[:, 0, 0] * q[:, 0] + Kn[:, 0, 1] * q[:, 1])
    Kn[:, 1, 2] = centre[:, 1] + shift[:, 1] - Kn[:, 1, 1] * q[:, 1]
    M = Kn @ Rz @ torch.linalg.inv(K)
    return Rz, Kn, M


def warp_images(img: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Warp (B, C, H, W) by affine pixel maps M (B, 3, 3) old -> new (pixel centres at integers)."""
    B, _, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=img.dtype), torch.arange(W, dtype=img.dtype), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)  # (1, HW, 3) new pixels
    src = pix @ torch.linalg.inv(M).to(img.dtype).transpose(-1, -2)  # (B, HW, 3) old pixels
    grid = torch.stack([2 * src[..., 0] / (W - 1) - 1, 2 * src[..., 1] / (H - 1) - 1], -1).reshape(B, H, W, 2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


class HandAugment:
    """Callable on LabelledFrames batch dicts; returns a new dict with image, j3d, K changed."""

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg or AugmentConfig()
        c = self.cfg
        self.colour = v2.Compose([v2.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue),
                                  v2.RandomGrayscale(c.grayscale_p)])

    def __call__(self, batch: dict) -> dict:
        img, j3d, K = batch["image"], batch["j3d"], batch["K"]
        B, size, c = img.shape[0], img.shape[-1], self.cfg
        Kd = K.double()
        angle = (torch.rand(B, dtype=torch.float64) * 2 - 1) * math.radians(c.rotate_deg)
        zoom = c.zoom[0] + torch.rand(B, dtype=torch.float64) * (c.zoom[1] - c.zoom[0])
        shift = (torch.rand(B, 2, dtype=torch.float64) * 2 - 1) * c.shift * size
        Rz, Kn, M = camera_change(Kd, angle, zoom, shift, size)
        out = dict(batch)
        out["image"] = torch.stack([self.colour(im) for im in warp_images(img, M.float())]).clamp_(0, 1)
        out["j3d"] = (j3d.double() @ Rz.transpose(-1, -2)).to(j3d.dtype)
        out["K"] = Kn.to(K.dtype)
        return out
