"""Label-consistent augmentation: the warped image, K' and j3d' agree."""
import math

import numpy as np
import torch

from handlib.data.datasets import FrameStore, LabelledFrames
from handlib.data.handsim.augment import AugmentConfig, HandAugment, camera_change, warp_images
from handlib.geometry import project

S = 64


def _blob_store(n=6, seed=0):
    """Frames whose images have a bright Gaussian blob at each joint's projection."""
    g = np.random.default_rng(seed)
    j3d = np.zeros((n, 21, 3), np.float32)
    j3d[..., :2] = g.uniform(-40, 40, (n, 21, 2))
    j3d[..., 2] = g.uniform(380, 420, (n, 21))
    f = g.uniform(150, 200, n)
    K = np.zeros((n, 3, 3), np.float32)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = f, f * g.uniform(0.95, 1.05, n), 1
    K[:, 0, 2], K[:, 1, 2] = g.uniform(20, 44, n), g.uniform(20, 44, n)
    uv = project(torch.from_numpy(j3d), torch.from_numpy(K)).numpy()
    yy, xx = np.mgrid[0:S, 0:S]
    img = np.zeros((n, S, S), np.float32)
    for i in range(n):
        for u, v in uv[i, :3]:  # three well separated blobs are enough
            img[i] = np.maximum(img[i], np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5**2)))
    imgs = np.repeat((img[..., None] * 255).astype(np.uint8), 3, -1)
    import pandas as pd
    meta = pd.DataFrame({"sequence": "a", "subject": "s", "action": "x", "frame": np.arange(n), "split": "train"})
    return FrameStore(imgs, j3d, K, meta), uv


def test_camera_change_maps_projections():
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[[150.0, 0, 30], [0, 160, 35], [0, 0, 1]]], dtype=torch.float64)
    X = torch.randn(1, 21, 3, generator=g, dtype=torch.float64) * 30 + torch.tensor([0, 0, 400.0], dtype=torch.float64)
    Rz, Kn, M = camera_change(K, torch.tensor([0.4]), torch.tensor([1.2]), torch.tensor([[3.0, -2.0]]), S)
    p_old = project(X, K)
    p_new = project(X @ Rz.transpose(-1, -2), Kn)
    p_map = (torch.cat([p_old, torch.ones(1, 21, 1, dtype=torch.float64)], -1) @ M.transpose(-1, -2))[..., :2]
    torch.testing.assert_close(p_new, p_map)
    c = torch.tensor([(S - 1) / 2, (S - 1) / 2, 1.0], dtype=torch.float64)
    torch.testing.assert_close((M[0] @ c)[:2], c[:2] + torch.tensor([3.0, -2.0], dtype=torch.float64))


def test_augmented_images_follow_the_labels():
    store, uv = _blob_store()
    torch.manual_seed(0)
    aug = HandAugment(AugmentConfig(rotate_deg=40, zoom=(0.8, 1.2), shift=0.08, brightness=0, contrast=0,
                                    saturation=0, hue=0, grayscale_p=0))
    rows = np.arange(len(uv))
    plain = LabelledFrames(store, rows).__getitems__(list(rows))
    out = LabelledFrames(store, rows, transform=aug).__getitems__(list(rows))
    assert not torch.allclose(out["j2d"], plain["j2d"])  # the augmentation did move things
    torch.testing.assert_close(out["z_rel"], plain["z_rel"], atol=1e-3, rtol=0)  # depth untouched
    bl = lambda j: (j[:, 1:] - j[:, :1]).norm(dim=-1)
    torch.testing.assert_close(bl(out["j3d"]), bl(plain["j3d"]), atol=1e-3, rtol=0)  # rigid
    img = out["image"][:, 0]  # (B, H, W)
    hits = 0
    for i in range(len(rows)):
        for u, v in out["j2d"][i, :3].tolist():
            if 2 <= u <= S - 3 and 2 <= v <= S - 3:
                val = img[i, int(round(v)), int(round(u))].item()
                assert val > 0.5, (i, u, v, val)  # a blob is where the new label says
                hits += 1
    assert hits >= 8
    # a wrong label (the old one) does not, in general, sit on a blob
    misses = sum(img[i, int(round(v)), int(round(u))].item() < 0.3
                 for i in range(len(rows)) for u, v in plain["j2d"][i, :3].tolist()
                 if 0 <= u <= S - 1 and 0 <= v <= S - 1)
    assert misses >= 3


def test_colour_jitter_changes_pixels_but_not_labels():
    store, _ = _blob_store()
    torch.manual_seed(1)
    aug = HandAugment(AugmentConfig(rotate_deg=0, zoom=(1.0, 1.0), shift=0.0, brightness=0.5))
    rows = np.arange(6)
    plain = LabelledFrames(store, rows).__getitems__(list(rows))
    out = LabelledFrames(store, rows, transform=aug).__getitems__(list(rows))
    torch.testing.assert_close(out["j2d"], plain["j2d"], atol=1e-3, rtol=0)
    assert (out["image"] - plain["image"]).abs().max() > 0.05
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    ident = warp_images(plain["image"], torch.eye(3).expand(6, 3, 3))
    torch.testing.assert_close(ident, plain["image"], atol=1e-5, rtol=0)
    assert math.isfinite(float(out["image"].sum()))


def test_colour_maps_identity_and_grayscale():
    img = torch.rand(4, 3, 16, 16)
    zero = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0, grayscale_p=0)
    from handlib.data.handsim.augment import colour_jitter
    torch.testing.assert_close(colour_jitter(img, zero), img, atol=1e-6, rtol=0)
    gray = colour_jitter(img, zero.replace(grayscale_p=1.0))
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 1], gray[:, 2])
    from torchvision.transforms.v2 import functional as F_v2
    torch.testing.assert_close(gray[:, :1], F_v2.rgb_to_grayscale(img), atol=1e-4, rtol=0)
