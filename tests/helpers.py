"""Shared test helpers: plausible random hands and cameras (no dataset files)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from handlib.data.datasets import FrameStore
from handlib.skeleton import BONES, NUM_JOINTS


def random_hand(n: int, generator: torch.Generator | None = None, depth=(300.0, 600.0)) -> torch.Tensor:
    """(n, 21, 3) mm hands in front of a camera: random bone directions, 20-50 mm bones."""
    g = generator
    j = torch.zeros(n, NUM_JOINTS, 3, dtype=torch.float64)
    j[:, 0, 0] = torch.rand(n, generator=g, dtype=torch.float64) * 100 - 50
    j[:, 0, 1] = torch.rand(n, generator=g, dtype=torch.float64) * 100 - 50
    j[:, 0, 2] = depth[0] + torch.rand(n, generator=g, dtype=torch.float64) * (depth[1] - depth[0])
    for p, c in BONES:
        d = torch.randn(n, 3, generator=g, dtype=torch.float64)
        d = d / d.norm(dim=-1, keepdim=True)
        length = 20 + 30 * torch.rand(n, 1, generator=g, dtype=torch.float64)
        j[:, c] = j[:, p] + d * length
    return j


def camera(n: int = 1, f: float = 600.0, c: float = 128.0) -> torch.Tensor:
    K = torch.tensor([[f, 0, c], [0, f * 1.01, c * 0.9], [0, 0, 1]], dtype=torch.float64)
    return K.expand(n, 3, 3).clone()


def rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    a = axis / axis.norm()
    Kx = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * Kx + (1 - math.cos(angle)) * Kx @ Kx


def two_video_store(names=("s0", "s1"), T: int = 12, seed: int = 0, size: int = 64):
    """A FrameStore of two random T-frame videos of subject S1 (all split "train"), `size` px."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * T
    j3d = random_hand(n, g).float().numpy()
    K = np.broadcast_to(np.array([[80.0, 0, size / 2], [0, 80, size / 2], [0, 0, 1]], np.float32), (n, 3, 3)).copy()
    images = (torch.rand(n, size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    meta = pd.DataFrame({"sequence": np.repeat(list(names), T), "subject": "S1", "action": "a",
                         "frame": np.tile(np.arange(T), 2), "split": "train"})
    return FrameStore(images, j3d, K, meta)
