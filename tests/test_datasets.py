import numpy as np
import pandas as pd
import pytest
import torch

from handlib.data.datasets import (
    FrameStore,
    LabelledFrames,
    MotionWindows,
    VideoWindows,
    batch_loader,
    window_starts,
)
from handlib.geometry import project
from tests.helpers import camera, random_hand


def _store(n_seq=3, T=20, size=16):
    n = n_seq * T
    j3d = random_hand(n, torch.Generator().manual_seed(0)).float().numpy()
    K = camera(n, f=100.0, c=8.0).float().numpy()
    images = (np.arange(n)[:, None, None, None] % 251 * np.ones((1, size, size, 3))).astype(np.uint8)
    meta = pd.DataFrame({"sequence": np.repeat([f"s{i}" for i in range(n_seq)], T),
                         "subject": "S1", "action": "a", "frame": np.tile(np.arange(T), n_seq),
                         "split": np.repeat(["train", "train", "test"][:n_seq], T)})
    return FrameStore(images, j3d, K, meta)


def test_store_validation():
    s = _store()
    with pytest.raises(ValueError, match="j3d"):
        FrameStore(s.images, s.j3d[:-1], s.K, s.meta)
    with pytest.raises(ValueError, match="lacks columns"):
        FrameStore(s.images, s.j3d, s.K, s.meta.drop(columns="split"))
    assert s.sequences("train") == ["s0", "s1"] and s.image_size == 16
    b = s.sequence_bounds()
    assert list(b["start"]) == [0, 20, 40] and list(b["length"]) == [20, 20, 20]


def test_labelled_frames_batch_matches_projection():
    s = _store()
    ds = LabelledFrames(s, s.rows_of(["s0", "s1"]))
    batch = next(iter(batch_loader(ds, 8, shuffle=True, seed=1)))
    rows = batch["row"].numpy()
    assert batch["image"].shape == (8, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert torch.allclose(batch["image"][:, 0, 0, 0] * 255, torch.from_numpy(rows % 251).float())
    assert torch.allclose(batch["j2d"], project(batch["j3d"], batch["K"]))
    assert torch.allclose(batch["z_rel"], batch["j3d"][..., 2] - batch["j3d"][..., :1, 2])
    assert torch.equal(batch["j3d"], torch.from_numpy(s.j3d[rows]))
    one = ds[3]
    assert one["image"].shape == (3, 16, 16)


def test_labelled_frames_refuse_unlabelled_rows():
    s = _store()
    s.j3d[5] = np.nan
    with pytest.raises(ValueError, match="no 3D label"):
        LabelledFrames(s, np.arange(10))


def test_video_windows_are_consecutive_and_label_free():
    s = _store()
    ds = VideoWindows(s, ["s0", "s1"], S=16, stride=2)
    assert len(ds) == 2 * len(range(0, 20 - 16 + 1, 2))
    b = ds.__getitems__([0, len(ds) - 1])
    assert b["images"].shape == (2, 16, 3, 16, 16) and b["K"].shape == (2, 16, 3, 3)
    assert set(b) == {"images", "K", "start"}  # no labels
    frames = (b["images"][:, :, 0, 0, 0] * 255).round().long()
    assert torch.equal(frames[0], torch.arange(16)) and torch.equal(frames[1], torch.arange(24, 40))


def test_motion_windows():
    seqs = [np.random.rand(20, 21, 3).astype(np.float32), np.random.rand(10, 21, 3).astype(np.float32),
            np.random.rand(17, 21, 3).astype(np.float32)]
    Ks = [np.eye(3)] * 3
    ds = MotionWindows(seqs, Ks, S=16)
    assert len(ds) == 5 + 0 + 2  # windows never straddle sequences
    b = ds.__getitems__([0, 5, 6])
    assert b["j3d"].shape == (3, 16, 21, 3)
    assert np.allclose(b["j3d"][1].numpy(), seqs[2][:16]) and np.allclose(b["j3d"][2].numpy(), seqs[2][1:17])


def test_window_starts_edge_cases():
    b = pd.DataFrame({"start": [0, 5], "length": [5, 3]})
    assert list(window_starts(b, 3, 1)) == [0, 1, 2, 5]
    assert len(window_starts(b, 6, 1)) == 0


def test_video_windows_never_span_a_frame_gap():
    s = _store()
    keep = np.flatnonzero(~s.meta.index.isin([8]))  # frame 8 of s0 missing (e.g. a skipped image)
    g = FrameStore(s.images[keep], s.j3d[keep], s.K[keep], s.meta.iloc[keep].reset_index(drop=True))
    runs = g.frame_runs(["s0", "s1"])
    assert list(runs["start"]) == [0, 8, 19] and list(runs["length"]) == [8, 11, 20]
    assert list(runs["sequence"]) == ["s0", "s0", "s1"]
    ds = VideoWindows(g, ["s0", "s1"], S=8)
    assert len(ds) == 1 + 4 + 13  # 8 frames: 1 window; 11: 4; 20: 13
    frames = g.meta["frame"].to_numpy()
    for start in ds.starts:
        assert np.all(np.diff(frames[start:start + 8]) == 1)
