"""HandSim dataset: split, labels, cache determinism and integrity, parameter validation."""
import json
import os

import numpy as np
import pytest
import torch

from handlib.config import ConfigError
from handlib.data.datasets import LabelledFrames, VideoWindows
from handlib.data.handsim import HandSimConfig, load_handsim
from handlib.data.handsim import dataset as hsd
from handlib.data.handsim.anatomy import make_subject
from handlib.data.handsim.scene import make_canon, make_look
from handlib.geometry import project
from handlib.skeleton import bone_lengths

TINY = dict(seconds=(0.4, 0.6), motion_subjects=1)


@pytest.fixture(scope="module")
def hs(tmp_path_factory):
    return load_handsim("smoke", cache_root=tmp_path_factory.mktemp("hs"), progress=False, **TINY)


def test_store_shapes_and_ids(hs):
    st, cfg = hs.store, hs.config
    n = len(st.meta)
    assert st.images.shape == (n, cfg.image_size, cfg.image_size, 3) and st.images.dtype == np.uint8
    assert isinstance(st.images, np.memmap) and not st.images.flags.writeable
    assert st.j3d.shape == (n, 21, 3) and st.K.shape == (n, 3, 3)
    seqs = hs.sequences
    assert len(seqs) == cfg.n_subjects * len(cfg.actions) * cfg.n_reps
    assert seqs["sequence"].iloc[0] == "S1/fist/1"
    for _, g in st.meta.groupby("sequence", sort=False):  # rows contiguous and frame ordered
        assert (np.diff(g.index) == 1).all() and (g["frame"].to_numpy() == np.arange(len(g))).all()
    assert (st.j3d[..., 2] > 100).all()  # in front of the camera, mm
    assert st.images.std() > 10  # not blank


def test_split_has_no_straddling_sequence_and_covers_subjects_and_actions(hs):
    m = hs.store.meta
    assert set(m["split"]) == {"train", "test"}
    assert (m.groupby("sequence")["split"].nunique() == 1).all()
    for col in ("subject", "action"):
        assert (m.groupby(col)["split"].nunique() == 2).all()


def test_bone_lengths_constant_per_subject(hs):
    m = hs.store.meta
    bl = bone_lengths(hs.store.j3d.astype(np.float64))
    means = []
    for _, rows in m.groupby("subject").indices.items():
        assert np.ptp(bl[rows], axis=0).max() < 1e-3  # mm (float32 storage)
        means.append(bl[rows].mean(0))
    assert np.abs(means[0] - means[1]).max() > 0.5  # subjects differ


def test_j2d_is_the_exact_projection_inside_the_crop(hs):
    st = hs.store
    j2d = project(torch.from_numpy(st.j3d), torch.from_numpy(st.K)).numpy()
    assert np.array_equal(j2d, hs.j2d)
    rows = np.arange(0, len(st.meta), 5)
    batch = LabelledFrames(st, rows).__getitems__(list(range(len(rows))))
    assert torch.equal(batch["j2d"], torch.from_numpy(hs.j2d[batch["row"].numpy()]))
    S = hs.config.image_size
    inside = ((hs.j2d >= 0) & (hs.j2d <= S - 1)).all(-1)
    assert inside.mean() > 0.97
    # the hand fills a good part of the crop
    extent = hs.j2d.max(1) - hs.j2d.min(1)
    assert np.median(extent.max(-1)) > 0.4 * S


def test_video_windows_and_motion_corpus(hs):
    st = hs.store
    vw = VideoWindows(st, st.sequences("train"), S=8)
    b = vw.__getitems__([0, 1])
    assert b["images"].shape == (2, 8, 3, hs.config.image_size, hs.config.image_size)
    seqs, Ks = hs.motion
    cfg = hs.config
    assert len(seqs) == cfg.motion_subjects * len(cfg.actions) * cfg.motion_reps
    assert all(s.shape[1:] == (21, 3) and k.shape == (len(s), 3, 3) for s, k in zip(seqs, Ks))
    # motion subjects are other people: their bone lengths match no video subject
    video_bl = {tuple(np.round(bone_lengths(st.j3d[r[0]]), 1)) for r in st.meta.groupby("subject").indices.values()}
    assert tuple(np.round(bone_lengths(seqs[0][0]), 1)) not in video_bl


def _bytes(path):
    return {f: (path / f).read_bytes() for f in sorted(os.listdir(path))}


def test_same_seed_byte_identical_and_different_seed_differs(hs, tmp_path):
    again = load_handsim("smoke", cache_root=tmp_path / "a", progress=False, **TINY)
    assert again.path.name == hs.path.name
    assert _bytes(again.path) == _bytes(hs.path)
    other = load_handsim("smoke", cache_root=tmp_path / "b", progress=False, seed=1, **TINY)
    assert other.path.name != hs.path.name
    assert (other.path / "images.npy").read_bytes() != (hs.path / "images.npy").read_bytes()
    assert not np.array_equal(other.store.j3d[:10], hs.store.j3d[:10])


@pytest.mark.parametrize("damage", ["truncate_images", "tamper_j3d", "tamper_images", "drop_manifest",
                                    "stale_version"])
def test_damaged_cache_is_rebuilt(tmp_path, damage):
    root = tmp_path / "c"
    kw = dict(cache_root=root, progress=False, n_subjects=1, actions=("fist",), **TINY)
    first = load_handsim("smoke", **kw)
    path, good = first.path, _bytes(first.path)
    del first
    if damage == "truncate_images":
        with open(path / "images.npy", "r+b") as f:
            f.truncate(os.path.getsize(path / "images.npy") // 2)
    elif damage in ("tamper_j3d", "tamper_images"):
        name = "j3d.npy" if damage == "tamper_j3d" else "images.npy"
        with open(path / name, "r+b") as f:
            f.seek(os.path.getsize(path / name) - 7)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
    elif damage == "drop_manifest":
        (path / "manifest.json").unlink()
    else:
        man = json.loads((path / "manifest.json").read_text())
        man["version"] = "hs0"
        (path / "manifest.json").write_text(json.dumps(man))
    assert hsd.verify_cache(path, first_cfg(kw)) is not None
    again = load_handsim("smoke", **kw)
    assert again.path == path and hsd.verify_cache(path, again.config, "full") is None
    assert _bytes(path) == good


def first_cfg(kw):
    return HandSimConfig.from_params({"preset": "smoke", **{k: v for k, v in kw.items()
                                                            if k not in ("cache_root", "progress")}})


def test_interrupted_generation_leaves_no_complete_cache(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = hsd.render_sequence

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(*a, **k)

    monkeypatch.setattr(hsd, "render_sequence", flaky)
    with pytest.raises(KeyboardInterrupt):
        load_handsim("smoke", cache_root=tmp_path, progress=False, **TINY)
    root = tmp_path / "handsim"
    assert [p for p in root.iterdir() if not p.name.endswith(".lock")] == []  # no final, no temporary dir


@pytest.mark.parametrize("bad, name", [
    (dict(image_size=8), "image_size"), (dict(appearance_shift=1.5), "appearance_shift"),
    (dict(actions=("juggle",)), "actions"), (dict(camera="drone"), "camera"), (dict(n_reps=1), "n_reps"),
    (dict(seconds=(3.0, 1.0)), "seconds"), (dict(preset="huge"), "preset"), (dict(n_subjects="2"), "n_subjects"),
    (dict(colour="red"), "colour"),
])
def test_bad_parameters_raise_naming_the_parameter(bad, name):
    with pytest.raises(ConfigError, match=name):
        HandSimConfig.from_params({"preset": "smoke", **bad})


def test_presets_and_overrides():
    q = HandSimConfig.from_params({"preset": "quick", "seed": 3})
    assert q.image_size == 128 and q.seed == 3 and q.preset == "quick"
    assert q.hash() != HandSimConfig.from_params({"preset": "quick"}).hash()
    assert HandSimConfig() == HandSimConfig.from_params({})  # the field defaults are the smoke preset
    f = HandSimConfig.from_params({"preset": "full"})
    assert f.seconds == (2.0, 10.0) and len(f.actions) >= 11


def test_appearance_shift_controls_between_sequence_variation():
    rng = np.random.default_rng(0)
    canon = make_canon(rng)
    subj = [make_subject(f"S{i}", rng) for i in range(6)]

    def spread(shift):
        looks = [make_look(np.random.default_rng(i), canon, shift, subj[i], 8.0, 1.0)[0] for i in range(6)]
        bg = np.stack([lk.background.reshape(-1, 3).mean(0) for lk in looks])
        skin = np.stack([lk.skin for lk in looks])
        return bg.std(0).mean(), skin.std(0).mean()

    bg0, skin0 = spread(0.0)
    bg1, skin1 = spread(1.0)
    assert skin0 < 1e-9 and skin1 > 5
    assert bg1 > 3 * bg0


@pytest.mark.parametrize("mode", ["ego", "third"])
def test_hand_stays_in_view_at_hand_like_distances(mode):
    from handlib.data.handsim.camera import FRAME_H, FRAME_W
    from handlib.data.handsim.motion import ACTION_NAMES, subject_style
    from handlib.data.handsim.scene import build_sequence
    from handlib.geometry import project_np

    rng = np.random.default_rng(5)
    canon = make_canon(rng)
    inside, depth = [], []
    for a in ACTION_NAMES:
        subj = make_subject("S", rng)
        sc = build_sequence(a, subj, subject_style(rng), 45, mode, 64, rng, canon, 1.0)
        uv = project_np(sc["j3d"].astype(np.float64), sc["K"])
        inside.append(((uv[..., 0] >= 0) & (uv[..., 0] < FRAME_W) & (uv[..., 1] >= 0) & (uv[..., 1] < FRAME_H)).mean())
        depth.append(sc["j3d"][:, 0, 2])
    assert np.mean(inside) > 0.98 and min(inside) > 0.8
    z = np.concatenate(depth)
    lo, hi = (200, 700) if mode == "ego" else (300, 950)  # FPHAB-like 250-600 mm, HO3D-like further
    assert lo < np.percentile(z, 5) and np.percentile(z, 95) < hi


def test_concurrent_loads_generate_once(tmp_path, monkeypatch):
    import threading

    calls = []
    real = hsd.generate
    monkeypatch.setattr(hsd, "generate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    cfg = first_cfg(dict(n_subjects=1, actions=("wave",), **TINY))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(hsd.ensure_cache(cfg, tmp_path, False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(paths) == 2 and paths[0] == paths[1]
    assert hsd.verify_cache(paths[0], cfg, "full") is None


def test_viz_tables_and_player(hs):
    import matplotlib

    matplotlib.use("Agg")
    from handlib.data.handsim import viz

    table = viz.angle_table(hs.store)
    assert list(table.index) == list(hs.config.actions) and list(table.columns) == ["mcp", "pip", "dip", "thumb"]
    hi = lambda a, c: int(table.loc[a, c].split("-")[1])
    assert hi("fist", "pip") > hi("wave", "pip") + 40  # fists curl, waving hands stay open
    w = viz.player(hs.store, hs.j2d, hs.store.sequences()[0])
    assert [c.description for c in w.children[:3]] == ["frame", "azimuth", "elevation"]
    fig = viz.show_frames(hs.store, hs.j2d, [0, 1])
    assert len(fig.axes) == 4
