"""Label-consistent image augmentation for the pose model M (any FrameStore source).

``HandAugment`` works on the batch dicts of ``LabelledFrames`` (``transform=...``):
image (B, 3, H, W) float in [0, 1], j3d (B, 21, 3) mm, K (B, 3, 3). Per sample it draws an
in-plane rotation, a zoom and a shift of the crop and applies them as a camera change that
keeps every label exact: the 3D joints turn about the camera's optical axis by the same
angle (j3d' = Rz j3d), the intrinsics get the zoom and the new principal point
(K' = [[s fx, 0, cx'], [0, s fy, cy'], [0, 0, 1]]), and the image is warped by the affine map
K' Rz K^-1 that this camera change induces, so ``project(j3d', K')`` lands on the moved
pixels and z_rel is unchanged. Colour jitter (brightness, contrast, saturation, hue, random
grayscale with torchvision's ColorJitter/Grayscale semantics) is drawn per sample and folded
into one affine colour map per image, so the whole batch costs one matmul; the warp runs
through OpenCV per sample. (Per-sample torchvision.transforms.v2 calls ran at ~55 frames/s on
this 2-core CPU, far below the training loop; this runs at several hundred.)
Randomness comes from torch's global RNG (seed it with ``repro.seed_everything``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

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
    """Warp (B, C, H, W) float images by affine pixel maps M (B, 3, 3) old -> new (pixel centres
    at integers, reflected borders). OpenCV per sample on the channels-last memory."""
    B, C, H, W = img.shape
    hwc = img.permute(0, 2, 3, 1).contiguous().numpy()  # a view when img is channels-last already
    out = np.empty_like(hwc)
    A = M[:, :2, :].double().numpy()
    for i in range(B):
        cv2.warpAffine(hwc[i], A[i], (W, H), dst=out[i], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def colour_matrices(mean_rgb: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample colour jitter as one affine colour map ``out = A @ rgb + o``: brightness,
    contrast, saturation (factors uniform in [1 - x, 1 + x] as in torchvision's ColorJitter),
    a hue rotation of the chroma plane (YIQ), and random grayscale. ``mean_rgb`` (B, 3) is each
    image's mean colour. Returns A (B, 3, 3), o (B, 3)."""
    B = mean_rgb.shape[0]
    w = _GRAY.to(mean_rgb.dtype)  # (3,) luma weights, as torchvision's rgb_to_grayscale
    u = lambda x: 1 + (torch.rand(B) * 2 - 1) * x
    b, c, s = u(cfg.brightness), u(cfg.contrast), u(cfg.saturation)
    mean_gray = (mean_rgb * w).sum(-1)  # (B,) mean grey level (no BLAS mat-vec: slow to start)
    eye = torch.eye(3).expand(B, 3, 3)
    A = (c * b)[:, None, None] * eye  # brightness, then contrast about the mean grey level
    o = ((1 - c) * b * mean_gray)[:, None].expand(B, 3)
    S = s[:, None, None] * eye + (1 - s)[:, None, None] * torch.ones(3, 1) * w  # saturation
    A, o = _mm(S, A), _mv(S, o)
    if cfg.hue > 0:
        th = (torch.rand(B) * 2 - 1) * cfg.hue * 2 * math.pi  # hue factor in turns, as torchvision
        rot = torch.zeros(B, 3, 3)
        rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2] = 1.0, torch.cos(th), -torch.sin(th)
        rot[:, 2, 1], rot[:, 2, 2] = torch.sin(th), torch.cos(th)
        H = _mm(_mm(_YIQ2RGB.expand(B, 3, 3), rot), _RGB2YIQ.expand(B, 3, 3))
        A, o = _mm(H, A), _mv(H, o)
    if cfg.grayscale_p > 0:
        g = (torch.rand(B) < cfg.grayscale_p)[:, None, None]
        G = (torch.ones(3, 1) * w).expand(B, 3, 3)
        A, o = torch.where(g, _mm(G, A), A), torch.where(g[:, 0], _mv(G, o), o)
    return A, o


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tiny batched 3x3 products without BLAS (whose start-up dominates at this size)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def _mv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (a * v[..., None, :]).sum(-1)


def colour_jitter(img: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Apply a random ``colour_matrices`` map to (B, 3, H, W) images in [0, 1]."""
    return _augment(img, None, cfg)


def _augment(img: torch.Tensor, M: torch.Tensor | None, cfg: AugmentConfig) -> torch.Tensor:
    """Warp (if M is given) and colour-map each image with OpenCV on channels-last memory
    (cv2.transform applies the 3x4 colour map per pixel), then clamp to [0, 1]."""
    B, C, H, W = img.shape
    hwc = img.permute(0, 2, 3, 1).contiguous().numpy()  # a view when img is channels-last already
    A, o = colour_matrices(torch.from_numpy(hwc.reshape(B, -1, C).mean(1)), cfg)
    Ao = torch.cat([A, o[..., None]], -1).double().numpy()  # (B, 3, 4)
    out = np.empty_like(hwc)
    tmp = np.empty_like(hwc[0])
    Mn = M[:, :2, :].double().numpy() if M is not None else None
    for i in range(B):
        src = hwc[i]
        if Mn is not None:
            cv2.warpAffine(src, Mn[i], (W, H), dst=tmp, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            src = tmp
        cv2.transform(src, Ao[i], dst=out[i])
    np.clip(out, 0.0, 1.0, out=out)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)
_GRAY = torch.tensor([0.2989, 0.587, 0.114])  # torchvision.transforms.v2.functional.rgb_to_grayscale


class HandAugment:
    """Callable on LabelledFrames batch dicts; returns a new dict with image, j3d, K changed."""

    def __init__(self, cfg: AugmentConfig | None = None):
        self.cfg = cfg or AugmentConfig()

    def __call__(self, batch: dict) -> dict:
        img, j3d, K = batch["image"], batch["j3d"], batch["K"]
        B, size, c = img.shape[0], img.shape[-1], self.cfg
        Kd = K.double()
        angle = (torch.rand(B, dtype=torch.float64) * 2 - 1) * math.radians(c.rotate_deg)
        zoom = c.zoom[0] + torch.rand(B, dtype=torch.float64) * (c.zoom[1] - c.zoom[0])
        shift = (torch.rand(B, 2, dtype=torch.float64) * 2 - 1) * c.shift * size
        Rz, Kn, M = camera_change(Kd, angle, zoom, shift, size)
        out = dict(batch)
        out["image"] = _augment(img, M, c)
        out["j3d"] = (j3d.double() @ Rz.transpose(-1, -2)).to(j3d.dtype)
        out["K"] = Kn.to(K.dtype)
        return out
