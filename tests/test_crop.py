"""One crop_K (data/crop.py): against geometry.crop_intrinsics and against pixels, for the
real-data (corner) and HandSim (centre) box conventions; label-free propagated boxes."""
import cv2
import numpy as np
import pytest
import torch

from handlib.data.crop import centre_box, crop_K, propagate_boxes
from handlib.data.handsim.camera import crop_boxes
from handlib.data.handsim.render import _bg_transforms
from handlib.geometry import crop_intrinsics, project_np
from tests.helpers import random_hand

K = np.array([[520.0, 0, 317.4], [0, 523.0, 241.9], [0, 0, 1]])


def _full_to_crop(uv, box, out):
    """cv2.resize of the box [x0, x0 + side): (u' + 0.5) = (u - x0 + 0.5) * s."""
    s = out / box[2]
    return (uv - box[:2] + 0.5) * s - 0.5


@pytest.mark.parametrize("seed", range(4))
def test_projected_joints_land_on_the_same_pixels_as_in_the_full_image(seed):
    j3d = random_hand(1, torch.Generator().manual_seed(seed))[0].numpy()
    uv = project_np(j3d, K)
    rng = np.random.default_rng(seed)
    box = np.r_[uv.min(0) - rng.uniform(5, 40, 2), 0.0, 0.0]
    box[2:] = (uv.max(0) - uv.min(0)).max() + 60
    for out in (64, 128, 256):  # down- and up-scaling
        np.testing.assert_allclose(project_np(j3d, crop_K(K, box, out)), _full_to_crop(uv, box, out), atol=1e-9)
        # the same as geometry.crop_intrinsics once the box corner is moved by (1/s - 1) / 2
        b = box.copy()
        b[:2] += 0.5 * (box[2] / out - 1)
        ref = crop_intrinsics(torch.from_numpy(K), torch.from_numpy(b), out).numpy()
        np.testing.assert_allclose(crop_K(K, box, out), ref, atol=1e-12)
    # a pure-geometry sanity check the other way: the plain crop_intrinsics (no shift) is off by (s-1)/2
    off = project_np(j3d, crop_intrinsics(torch.from_numpy(K), torch.from_numpy(box), 64).numpy())
    assert np.abs(off - _full_to_crop(uv, box, 64)).max() > 0.05


def test_crop_K_matches_a_real_resize():
    """A dot drawn at the projection of a 3D point is found where crop_K projects it."""
    X = np.array([30.0, -12.0, 400.0])
    u, v = project_np(X[None], K)[0]
    img = np.zeros((480, 640), np.float32)
    ys, xs = np.mgrid[:480, :640]
    img[:] = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * 3.0**2))
    box = np.array([int(u) - 57, int(v) - 91, 150, 150], dtype=np.float64)
    out = 96
    cut = img[int(box[1]):int(box[1]) + 150, int(box[0]):int(box[0]) + 150]
    crop = cv2.resize(cut, (out, out), interpolation=cv2.INTER_LINEAR)
    cy, cx = np.mgrid[:out, :out]
    est = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    np.testing.assert_allclose(est, project_np(X[None], crop_K(K, box, out))[0], atol=0.05)


def test_handsim_centre_boxes_agree_with_its_background_warp():
    """HandSim draws joints with crop_K(centre_box(box)) and warps its background with
    _bg_transforms(box): the two must map a full-frame pixel to the same crop pixel."""
    rng = np.random.default_rng(0)
    box = np.c_[rng.uniform(100, 400, (5, 2)), np.repeat(rng.uniform(60, 250, (5, 1)), 2, 1)]
    j3d = random_hand(5, torch.Generator().manual_seed(3)).numpy()
    Kc = crop_K(K, centre_box(box, 128), 128)
    A = _bg_transforms(box, 128)  # (5, 2, 3)
    uv = project_np(j3d, np.broadcast_to(K, (5, 3, 3)).copy())
    via_bg = np.einsum("tij,tnj->tni", A[:, :, :2], uv) + A[:, None, :, 2]
    np.testing.assert_allclose(project_np(j3d, Kc), via_bg, atol=1e-9)


def test_propagated_boxes_use_only_previous_frames():
    T = 8
    c = np.stack([np.arange(T) * 7.0 + 100, np.arange(T) * -3.0 + 200], 1)  # constant velocity
    boxes = np.c_[c - 30, np.full((T, 2), 60.0)]
    prop = propagate_boxes(boxes)
    np.testing.assert_allclose(prop[2:], boxes[2:])  # exact for constant velocity from frame 2
    np.testing.assert_allclose(prop[0], boxes[0])
    moved = boxes.copy()
    moved[5] += [40.0, -25.0, 10.0, 10.0]  # a different frame-5 label ...
    p2 = propagate_boxes(moved)
    np.testing.assert_allclose(p2[:6], prop[:6])  # ... does not change frame 5's (or any earlier) box
    assert np.abs(p2[6] - prop[6]).max() > 10


def test_handsim_previous_crops_ignore_the_frame_own_joints():
    rng = np.random.default_rng(0)
    j2d = rng.uniform(200, 300, (10, 21, 2))
    a = crop_boxes(j2d, np.random.default_rng(1), source="previous")
    j2d[4] += 50.0
    b = crop_boxes(j2d, np.random.default_rng(1), source="previous")
    np.testing.assert_array_equal(a[:5], b[:5])
    g1 = crop_boxes(j2d, np.random.default_rng(1), source="gt")
    assert np.abs(g1[4] - b[4]).max() > 1.0
    with pytest.raises(ValueError, match="source"):
        crop_boxes(j2d, rng, source="oracle")


def test_load_dataset_states_its_crop_source(tmp_path):
    from handlib.data.registry import load_dataset
    from tests.test_fphab import TEST, write_fphab

    hs = load_dataset("handsim", cache_root=tmp_path / "c", progress=False)
    assert hs.crop_source == "gt_smoothed_jittered" and "test labels" in hs.crop_note
    hp = load_dataset("handsim", cache_root=tmp_path / "c", progress=False, test_crop="previous")
    assert hp.crop_source == "previous_frame" and "label-free" in hp.crop_note
    m = hs.store.meta
    train, test = (m["split"] == "train").to_numpy(), (m["split"] == "test").to_numpy()
    np.testing.assert_array_equal(hs.store.K[train], hp.store.K[train])  # training crops unchanged
    assert np.abs(hs.store.K[test] - hp.store.K[test]).max() > 0.1  # test crops moved
    root = write_fphab(tmp_path / "fphab")
    fg = load_dataset("fphab", root=root, image_size=32, cache_root=tmp_path / "c")
    fp = load_dataset("fphab", root=root, image_size=32, cache_root=tmp_path / "c", test_crop="previous")
    assert (fg.crop_source, fp.crop_source) == ("gt_joints", "previous_frame") and fg.crop_note
    t = (fp.store.meta["sequence"] == TEST[0]).to_numpy()
    assert np.abs(fg.store.K[t][2] - fp.store.K[t][2]).max() > 0.1 and np.allclose(fg.store.K[t][0], fp.store.K[t][0])
    np.testing.assert_array_equal(fg.store.j3d, fp.store.j3d)
