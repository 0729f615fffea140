"""HandSim backgrounds: procedural textured scenes (wall, table, clutter, cloth patterns)."""
from __future__ import annotations

import cv2
import numpy as np

from handlib.data.handsim.camera import FRAME_H, FRAME_W

STYLES = ("room", "clutter", "cloth", "texture")


def value_noise(rng: np.random.Generator, h: int, w: int, cells: tuple = (4, 12, 40), weights=(0.5, 0.3, 0.2)):
    """Multi-octave value noise in [0, 1]: (h, w) float32."""
    out = np.zeros((h, w), np.float32)
    for c, wt in zip(cells, weights):
        small = rng.random((max(2, h * c // w), c)).astype(np.float32)
        out += wt * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 1)


def _two_tone(n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return n[..., None] * a + (1 - n[..., None]) * b


def _colour(rng: np.random.Generator, sat=(0.1, 0.7), val=(0.2, 0.95)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def make_background(rng: np.random.Generator, style: str | None = None, h: int = FRAME_H, w: int = FRAME_W):
    """One full-frame background (h, w, 3) uint8 RGB; ``style`` in STYLES or None (random)."""
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    img = _two_tone(value_noise(rng, h, w), _colour(rng), _colour(rng))  # wall / base texture
    if style in ("room", "clutter"):
        y0 = int(h * rng.uniform(0.35, 0.7))  # a table top with wood-like grain
        yy, xx = np.mgrid[y0:h, 0:w].astype(np.float32)
        grain = 0.5 + 0.5 * np.sin(xx * rng.uniform(0.02, 0.2) + 6 * value_noise(rng, h - y0, w, (3, 9), (0.7, 0.3)))
        img[y0:] = _two_tone(grain, _colour(rng, val=(0.3, 0.9)), _colour(rng, val=(0.2, 0.7)))
        img[y0:y0 + 3] *= 0.6
    n_shapes = int(rng.integers(2, 6) if style == "room" else rng.integers(8, 20) if style == "clutter" else 0)
    for _ in range(n_shapes):  # furniture, boxes, cups and screens
        c = tuple(float(v) for v in _colour(rng, sat=(0.2, 0.9)))
        x, y = int(rng.uniform(-50, w)), int(rng.uniform(-50, h))
        sw, sh = int(rng.uniform(20, 220)), int(rng.uniform(20, 220))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + sw, y + sh), c, -1, cv2.LINE_AA)
        else:
            cv2.ellipse(img, (x, y), (sw // 2, sh // 2), float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
    if style == "cloth":  # stripes or checks
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        th, f = rng.uniform(0, np.pi), rng.uniform(0.03, 0.15)
        s1 = np.sin((xx * np.cos(th) + yy * np.sin(th)) * f) > 0
        pat = s1 ^ (np.sin((-xx * np.sin(th) + yy * np.cos(th)) * f) > 0) if rng.random() < 0.5 else s1
        img = np.where(pat[..., None], img, img * 0.5 + 0.5 * _colour(rng))
    shade = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), h, dtype=np.float32)[:, None, None]
    img = cv2.GaussianBlur(img * shade, (0, 0), rng.uniform(0.8, 3.0))  # out of focus
    return np.clip(img, 0, 255).astype(np.uint8)
