"""FPHAB reader on a tiny tree written here in the published on-disk format."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from handlib.data import fphab, realdata
from handlib.data.__main__ import main as cli
from handlib.data.crop import crop_K
from handlib.data.realdata import DatasetError

# Published FPHAB colour camera, written out here independently of the reader.
EXTR = np.array([[0.999988496304, -0.00468848412856, 0.000982563360594, 25.7],
                 [0.00469115935266, 0.999985218048, -0.00273845880292, 1.22],
                 [-0.000969709653873, 0.00274303671904, 0.99999576807, 3.902]])
FX, FY, CX, CY = 1395.749023, 1395.749268, 935.732544, 540.681030
W, H = 1920, 1080

# FPHAB joint names in file order, and the canonical order by name.
FPHAB_NAMES = (["wrist", "thumb_cmc", "index_mcp", "middle_mcp", "ring_mcp", "pinky_mcp"]
               + [f"{f}_{j}" for f, js in (("thumb", ("mcp", "ip", "tip")), ("index", ("pip", "dip", "tip")),
                                          ("middle", ("pip", "dip", "tip")), ("ring", ("pip", "dip", "tip")),
                                          ("pinky", ("pip", "dip", "tip"))) for j in js])
CANON_NAMES = (["wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip"]
               + [f"{f}_{j}" for f in ("index", "middle", "ring", "pinky") for j in ("mcp", "pip", "dip", "tip")])

TRAIN = ["Subject_1/open_juice_bottle/1", "Subject_2/pour_milk/1", "Subject_2/close_milk/4"]
TEST = ["Subject_3/open_juice_bottle/2"]
N_FRAMES = 3


def world_hands(seq_i: int) -> np.ndarray:
    """(T, 21, 3) mm world coordinates, FPHAB order: a hand ~450 mm in front of the camera."""
    rng = np.random.default_rng(100 + seq_i)
    base = np.array([-20.0 + 10 * seq_i, 15.0, 450.0]) + rng.uniform(-60, 60, (21, 3)) * [1, 1, 0.3]
    return np.stack([base + [3.0 * t, -2.0 * t, 1.0 * t] for t in range(N_FRAMES)])


def cam_px(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = w @ EXTR[:, :3].T + EXTR[:, 3]
    u = FX * cam[..., 0] / cam[..., 2] + CX
    v = FY * cam[..., 1] / cam[..., 2] + CY
    return cam, np.stack([u, v], -1)


def write_fphab(root: Path, empty=("Subject_2/close_milk/4",)) -> Path:
    (root / "Video_files").mkdir(parents=True)
    (root / "Hand_pose_annotation_v1").mkdir()
    lines = [f"Training {len(TRAIN)}"] + [f"{s} {i}" for i, s in enumerate(TRAIN)]
    lines += [f"Test {len(TEST)}"] + [f"{s} {i}" for i, s in enumerate(TEST)]
    (root / "data_split_action_recognition.txt").write_text("\n".join(lines) + "\n")
    for i, seq in enumerate(TRAIN + TEST):
        pose = root / "Hand_pose_annotation_v1" / seq
        pose.mkdir(parents=True)
        color = root / "Video_files" / seq / "color"
        color.mkdir(parents=True)
        w = world_hands(i)
        _, px = cam_px(w)
        if seq in empty:
            (pose / "skeleton.txt").write_text("")
        else:
            rows = [" ".join([str(t)] + [f"{v:.6f}" for v in w[t].ravel()]) for t in range(N_FRAMES)]
            (pose / "skeleton.txt").write_text("\n".join(rows) + "\n")
        for t in range(N_FRAMES):
            img = np.zeros((H, W, 3), np.uint8)
            # bright squares on the wrist (white) and the FPHAB middle tip (index 14, green)
            for j, colour in ((0, (255, 255, 255)), (14, (0, 255, 0))):
                u, v = np.round(px[t, j]).astype(int)
                cv2.rectangle(img, (u - 20, v - 20), (u + 20, v + 20), colour, -1)
            cv2.imwrite(str(color / f"color_{t:04d}.jpeg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


@pytest.fixture
def tree(tmp_path):
    return write_fphab(tmp_path / "fphab")


def test_read_split_file_and_counts(tree):
    split = fphab.read_split_file(tree / fphab.SPLIT_FILE)
    assert [s for s, _ in split["train"]] == TRAIN and [s for s, _ in split["test"]] == TEST
    bad = tree / "bad.txt"
    bad.write_text("Training 2\nSubject_1/a/1 0\nTest 0\n")
    with pytest.raises(DatasetError, match="bad.txt.*header says 2"):
        fphab.read_split_file(bad)
    bad.write_text("Training 1\nSubject_1/a/1 zero\nTest 0\n")
    with pytest.raises(DatasetError, match=r"bad.txt:2: expected"):
        fphab.read_split_file(bad)


def test_loader_values_exact_in_canonical_order(tree, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    ds = fphab.load_fphab(tree, image_size=64, cache_root=tmp_path / "cache", workers=2)
    store = ds.store
    meta = store.meta
    assert list(meta["sequence"].unique()) == [TRAIN[0], TRAIN[1], TEST[0]]  # close_milk/4 skipped
    assert "close_milk/4" in caplog.text and ds.info["skipped"][0][1].startswith("empty skeleton.txt")
    assert (meta[meta["sequence"] == TEST[0]]["split"] == "test").all()
    assert meta["subject"].tolist()[0] == "Subject_1" and meta["action"].tolist()[0] == "open_juice_bottle"
    assert isinstance(store.images, np.memmap) and store.images.shape == (9, 64, 64, 3)
    name_map = [FPHAB_NAMES.index(n) for n in CANON_NAMES]
    for seq_i, seq in ((0, TRAIN[0]), (1, TRAIN[1]), (3, TEST[0])):
        cam, px = cam_px(world_hands(seq_i))
        rows = store.rows_of([seq])
        np.testing.assert_allclose(store.j3d[rows], cam[:, name_map], atol=1e-3)
        # hand-checked wrist of frame 0 of the first sequence
        if seq_i == 0:
            w0 = world_hands(0)[0, 0]
            x = 0.999988496304 * w0[0] - 0.00468848412856 * w0[1] + 0.000982563360594 * w0[2] + 25.7
            z = -0.000969709653873 * w0[0] + 0.00274303671904 * w0[1] + 0.99999576807 * w0[2] + 3.902
            assert abs(store.j3d[rows[0], 0, 0] - x) < 1e-3 and abs(store.j3d[rows[0], 0, 2] - z) < 1e-3
        # crop K maps the full-image pixels affinely: u' = a u + b, same a for u and v
        K = store.K[rows].astype(np.float64)
        uvw = np.einsum("tij,tkj->tki", K, store.j3d[rows].astype(np.float64))
        crop_px = uvw[..., :2] / uvw[..., 2:]
        a = (crop_px[:, 1, 0] - crop_px[:, 0, 0]) / (px[:, name_map][:, 1, 0] - px[:, name_map][:, 0, 0])
        np.testing.assert_allclose(crop_px, a[:, None, None] * px[:, name_map] + (crop_px - a[:, None, None]
                                   * px[:, name_map])[:, :1], atol=1e-3)
        # the bright squares drawn at the wrist and middle tip land where the crop K projects them
        for r, cp in zip(rows, crop_px):
            img = store.images[r].astype(np.float64)
            for weight, j in ((img.min(-1), 0), (img[..., 1] - img[..., 0], 12)):
                weight = np.clip(weight, 0, None)
                ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
                cx, cy = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
                assert abs(cx - cp[j, 0]) < 0.5 and abs(cy - cp[j, 1]) < 0.5, (cx, cy, cp[j])
    # motion: training sequences only, canonical mm
    seqs, Ks = ds.motion
    assert len(seqs) == 2 and all(s.shape == (3, 21, 3) for s in seqs) and Ks[0].shape == (3, 3, 3)


def test_cache_is_reused_and_keyed(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    a = fphab.load_fphab(tree, image_size=32, cache_root=cache, workers=1)

    def boom(*args, **kwargs):
        raise AssertionError("cache miss: image decoded again")

    monkeypatch.setattr(realdata, "read_rgb", boom)
    monkeypatch.setattr(fphab, "scan_fphab", boom)  # a warm cache does not even rescan the tree
    b = fphab.load_fphab(tree, image_size=32, cache_root=cache)
    assert a.info["cache"] == b.info["cache"] and b.info["skipped"] == a.info["skipped"]
    np.testing.assert_array_equal(np.asarray(a.store.images), np.asarray(b.store.images))
    with pytest.raises(AssertionError, match="cache miss"):
        fphab.load_fphab(tree, image_size=48, cache_root=cache)  # another size: another entry
    monkeypatch.undo()
    (tree / fphab.SPLIT_FILE).write_text((tree / fphab.SPLIT_FILE).read_text().replace("Test 1\n", "Test 1\n\n"))
    c = fphab.load_fphab(tree, image_size=32, cache_root=cache)  # split file changed: rebuilt
    assert c.info["cache"] != a.info["cache"]
    assert not list((cache / "fphab").glob(".tmp-*"))  # the failed build left nothing behind


def test_missing_image_names_path(tree, tmp_path):
    img = tree / "Video_files" / TRAIN[1] / "color" / "color_0001.jpeg"
    img.unlink()
    with pytest.raises(DatasetError, match=str(img)):
        fphab.load_fphab(tree, cache_root=tmp_path / "c")


def test_missing_image_skip_option(tree, tmp_path, caplog):
    img = tree / "Video_files" / TRAIN[1] / "color" / "color_0001.jpeg"
    img.unlink()
    caplog.set_level(logging.WARNING)
    ds = fphab.load_fphab(tree, image_size=16, cache_root=tmp_path / "c", missing_images="skip")
    assert len(ds.store.meta) == 8 and str(img) in caplog.text and ds.info["dropped"] == [[str(img), "missing image"]]
    assert sorted(len(s) for s in ds.motion[0]) == [1, 1, 3]  # the gap cuts the motion


def test_wrong_columns_names_path(tree, tmp_path):
    skel = tree / "Hand_pose_annotation_v1" / TRAIN[0] / "skeleton.txt"
    skel.write_text("0 1 2 3\n")
    with pytest.raises(DatasetError, match=rf"{skel}.*4 columns, expected 64"):
        fphab.load_fphab(tree, cache_root=tmp_path / "c")


def test_unexpected_empty_skeleton(tree, tmp_path, caplog):
    skel = tree / "Hand_pose_annotation_v1" / TRAIN[1] / "skeleton.txt"
    skel.write_text("")
    with pytest.raises(DatasetError, match=str(skel)):
        fphab.load_fphab(tree, cache_root=tmp_path / "c", strict=True)
    caplog.set_level(logging.WARNING)
    ds = fphab.load_fphab(tree, cache_root=tmp_path / "c")
    assert str(skel) in caplog.text and TRAIN[1] not in set(ds.store.meta["sequence"])


def test_check_command_on_fixture(tree, capsys):
    assert cli(["check", "fphab", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "600" in out and "575" in out and "differs from published" in out
    assert "close_milk/4" in out and "problems (0)" in out
    (tree / "Video_files" / TEST[0] / "color" / "color_0002.jpeg").unlink()
    (tree / "Hand_pose_annotation_v1" / TRAIN[0] / "skeleton.txt").write_text("")
    assert cli(["check", "fphab", str(tree)]) == 1
    out = capsys.readouterr().out  # grouped by kind and sequence, paths relative to the root
    assert "problems (2)" in out and "missing image: 1 file(s) in 1 sequence(s) (test: 1 in 1 seq)" in out
    assert f"Video_files/{TEST[0]}/color: 1 of {N_FRAMES} frames" in out
    assert "empty skeleton.txt: 1 sequence(s) (train 1)" in out
    assert "train: INCOMPLETE" in out and 'missing_images="skip"' in out
    assert cli(["check", "fphab", str(tree), "--all"]) == 1  # every path, as before
    out = capsys.readouterr().out
    assert "problems (2)" in out and "color_0002.jpeg: missing image" in out
    assert f"{TRAIN[0]}/skeleton.txt: empty skeleton.txt" in out


def test_check_command_bad_root(tmp_path, capsys):
    assert cli(["check", "fphab", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "x").mkdir()
    assert cli(["check", "fphab", str(tmp_path / "x")]) == 2
    assert "does not look like FPHAB" in capsys.readouterr().err


def test_check_command_subprocess_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "handlib.data", "check", "ho3d", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
    assert r.stdout == ""


def test_read_motion_matches_loader(tree, tmp_path):
    seqs = fphab.read_motion(tree)
    ds = fphab.load_fphab(tree, image_size=16, cache_root=tmp_path / "c")
    assert len(seqs) == 2 and all(a.shape == (N_FRAMES, 21, 3) for a in seqs)
    for a, b in zip(seqs, ds.motion[0]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert len(fphab.read_motion(tree, split="test")) == 1


def test_registry_dispatch(tree, tmp_path):
    from handlib.data.registry import load_dataset

    ds = load_dataset("fphab", root=tree, image_size=16, cache_root=tmp_path / "c")
    assert ds.store.image_size == 16 and len(ds.store.meta) == 9
    with pytest.raises(DatasetError, match="root directory is required"):
        load_dataset("ho3d")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("bighand", root=tree)


@pytest.mark.parametrize("seed", range(6))
def test_crop_image_and_crop_K_agree(seed):
    """A blob drawn at a known pixel lands where the crop K projects it, also for boxes
    that leave the image (zero padding) and for up- and down-scaling."""
    rng = np.random.default_rng(seed)
    H, W = 240, 320
    K = np.array([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    side = rng.uniform(20, 400)
    sigma = max(side / 25, 1.5)
    m = 4 * sigma  # the blob lies inside the image; the box may not
    u, v = rng.uniform(m, W - m), rng.uniform(m, H - m)
    box = np.array([u - side * rng.uniform(0.3, 0.7), v - side * rng.uniform(0.3, 0.7), side, side])
    ys, xs = np.mgrid[:H, :W]
    g = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))
    img = np.repeat((g * 255).astype(np.uint8)[..., None], 3, -1)
    out = 96 if seed % 2 else 48  # seed 3 upscales (side 53 px -> 96 px)
    crop = realdata.crop_image(img, box, out).astype(np.float64)[..., 0]
    Kc = crop_K(K, np.array(realdata.integer_box(box))[[0, 1, 2, 2]], out)
    p = Kc @ np.linalg.solve(K, [u, v, 1.0])
    cy, cx = np.mgrid[:out, :out]
    assert crop.sum() > 0
    est = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    np.testing.assert_allclose(est, p[:2] / p[2], atol=0.15)
