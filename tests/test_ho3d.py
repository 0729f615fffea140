"""HO3D v3 reader, restricted unpickler and submission export on a tiny tree written here."""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from handlib.data import ho3d, safe_pickle
from handlib.data.__main__ import main as cli
from handlib.data.realdata import DatasetError

K_FULL = np.array([[614.6, 0.0, 320.3], [0.0, 615.1, 241.9], [0.0, 0.0, 1.0]])
# HO3D / MANO joint names in file order; canonical order by name (independent of the reader's map).
MANO_NAMES = (["wrist", "index_mcp", "index_pip", "index_dip", "middle_mcp", "middle_pip", "middle_dip",
               "pinky_mcp", "pinky_pip", "pinky_dip", "ring_mcp", "ring_pip", "ring_dip",
               "thumb_cmc", "thumb_mcp", "thumb_ip"]
              + [f"{f}_tip" for f in ("thumb", "index", "middle", "ring", "pinky")])
CANON_NAMES = (["wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip"]
               + [f"{f}_{j}" for f in ("index", "middle", "ring", "pinky") for j in ("mcp", "pip", "dip", "tip")])
NAME_MAP = [MANO_NAMES.index(n) for n in CANON_NAMES]
TRAIN = {"ABF10": 4, "MC1": 3}
EVAL = {"SM1": 2}
NONE_FRAME = ("MC1", "0001")


def gl_joints(seq: str, t: int) -> np.ndarray:
    """(21, 3) metres, OpenGL (hand along -z), MANO order."""
    rng = np.random.default_rng(sum(map(ord, seq)) + 7 * t)
    return np.array([0.02, -0.01, -0.5]) + rng.uniform(-0.06, 0.06, (21, 3)) * [1, 1, 0.3]


def dump_py2_style(obj) -> bytes:
    """A protocol-2 pickle whose arrays name numpy 1.x's module path, as HO3D's files do."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_ho3d(root: Path, ext: str = ".jpg") -> Path:
    lines = {"train": [], "evaluation": []}
    for split, seqs in (("train", TRAIN), ("evaluation", EVAL)):
        for seq, n in seqs.items():
            (root / split / seq / "rgb").mkdir(parents=True)
            (root / split / seq / "meta").mkdir(parents=True)
            for t in range(n):
                fid = f"{t:04d}"
                lines[split].append(f"{seq}/{fid}")
                j = gl_joints(seq, t)
                if split == "train":
                    meta = {"handJoints3D": j, "camMat": K_FULL, "handBeta": np.zeros(10, np.float32),
                            "objName": "003_cracker_box", "objTrans": np.float64(0.1)}
                    if (seq, fid) == NONE_FRAME:
                        meta = {"handJoints3D": None, "camMat": None, "objName": "003_cracker_box"}
                else:
                    meta = {"handJoints3D": j[0].astype(np.float32), "camMat": K_FULL,
                            "handBoundingBox": [250, 180, 390, 330]}
                (root / split / seq / "meta" / f"{fid}.pkl").write_bytes(dump_py2_style(meta))
                img = np.full((480, 640, 3), 40 + 10 * t, np.uint8)
                cv2.imwrite(str(root / split / seq / "rgb" / f"{fid}{ext}"), img)
    for split, ls in lines.items():
        (root / f"{split}.txt").write_text("\n".join(ls) + "\n")
    return root


@pytest.fixture
def tree(tmp_path):
    return write_ho3d(tmp_path / "ho3d")


def test_safe_pickle_loads_arrays_and_refuses_code(tmp_path):
    good = tmp_path / "good.pkl"
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, None, np.float64(2.5)], "c": "x"}
    good.write_bytes(dump_py2_style(obj))
    back = safe_pickle.load(good)
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["b"] == [1, None, 2.5] and back["c"] == "x"
    good.write_bytes(pickle.dumps(obj, protocol=5))  # numpy 2 module path, protocol 5
    np.testing.assert_array_equal(safe_pickle.load(good)["a"], obj["a"])

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"handJoints3D": Evil(marker)}, protocol=2))
    with pytest.raises(safe_pickle.UnsafePickleError, match=rf"{evil}.*(posix|os)\.system"):
        safe_pickle.load(evil)
    assert not marker.exists()  # refused before anything ran
    pickle.loads(evil.read_bytes())  # sanity: plain pickle really would run it
    assert marker.exists()


def test_safe_pickle_refuses_other_globals(tmp_path):
    for obj in (Path("/x"), {"f": np.load}, {1, 2}):
        p = tmp_path / "o.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=2))
        with pytest.raises(safe_pickle.UnsafePickleError, match=str(p)):
            safe_pickle.load(p)
    p.write_bytes(b"\x80\x02}q\x00(X")  # truncated
    with pytest.raises(pickle.UnpicklingError, match=str(p)):
        safe_pickle.load(p)


def test_loader_values_exact(tree, tmp_path):
    ds = ho3d.load_ho3d(tree, image_size=32, cache_root=tmp_path / "cache", workers=2)
    store, meta = ds.store, ds.store.meta
    train = meta[meta["split"] == "train"]
    assert len(train) == 6 and ds.info["excluded_none"]["train"] == 1  # MC1/0001 had None
    assert list(train["sequence"].unique()) == ["ABF10", "MC1"]
    assert train["subject"].tolist()[0] == "ABF" and train["frame"].tolist()[:4] == [0, 1, 2, 3]
    for r in train.index:
        seq, fid = meta.at[r, "sequence"], meta.at[r, "file_id"]
        j = gl_joints(seq, int(fid))
        expected = np.stack([j[:, 0], -j[:, 1], -j[:, 2]], -1) * 1000.0  # mm, OpenCV
        np.testing.assert_allclose(store.j3d[r], expected[NAME_MAP], atol=1e-3)
        assert store.j3d[r, 0, 2] > 0  # in front of the camera in OpenCV
        # the crop K differs from the full K by a scale and shift only
        Kc = store.K[r]
        s = Kc[0, 0] / K_FULL[0, 0]
        assert abs(Kc[1, 1] / K_FULL[1, 1] - s) < 1e-5 and abs(Kc[0, 1]) < 1e-6
        uvw = expected @ Kc.T
        crop = uvw[:, :2] / uvw[:, 2:]
        assert (crop > -1).all() and (crop < 33).all()  # whole hand inside the crop
    test = meta[meta["split"] == "test"]
    assert len(test) == 2 and np.isnan(store.j3d[test.index]).all()
    np.testing.assert_allclose(test[["root_x", "root_y", "root_z"]].to_numpy()[0],
                               gl_joints("SM1", 0)[0] * [1000, -1000, -1000], atol=1e-2)
    # evaluation crop around handBoundingBox [250,180,390,330] with margin 0.25: side 150*1.5 = 225
    Kc = store.K[test.index[0]]
    assert abs(Kc[0, 0] - K_FULL[0, 0] * 32 / 225) < 1e-3
    seqs, Ks = ds.motion  # MC1 splits into two runs around the None frame
    assert [len(s) for s in seqs] == [4, 1, 1]
    assert np.asarray(store.images[0]).mean() == pytest.approx(40, abs=2)


def test_v2_png_reads(tmp_path):
    root = write_ho3d(tmp_path / "v2", ext=".png")
    ds = ho3d.load_ho3d(root, image_size=16, cache_root=tmp_path / "c")
    assert len(ds.store.meta) == 8


def test_crafted_pickle_in_tree_is_refused(tree, tmp_path):
    marker = tmp_path / "pwned"
    bad = tree / "train" / "ABF10" / "meta" / "0002.pkl"
    bad.write_bytes(pickle.dumps({"handJoints3D": Evil(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=rf"{bad}.*refusing"):
        ho3d.load_ho3d(tree, cache_root=tmp_path / "c")
    assert not marker.exists()


def test_missing_image_and_bad_shape_name_path(tree, tmp_path):
    img = tree / "train" / "MC1" / "rgb" / "0002.jpg"
    img.unlink()
    with pytest.raises(DatasetError, match=str(img.with_suffix(""))):
        ho3d.load_ho3d(tree, cache_root=tmp_path / "c")
    img2 = tree / "train" / "ABF10" / "meta" / "0000.pkl"
    img2.write_bytes(pickle.dumps({"handJoints3D": np.zeros((20, 3)), "camMat": K_FULL}, protocol=2))
    rep_code = cli(["check", "ho3d", str(tree)])
    assert rep_code == 1


def test_check_command_on_fixture(tree, capsys):
    assert cli(["check", "ho3d", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "78297" in out and "20137" in out and "83325" in out and "problems (0)" in out
    assert "6 of 7 listed frames usable, 1 with None annotations excluded" in out
    (tree / "evaluation" / "SM1" / "rgb" / "0001.jpg").unlink()
    (tree / "train" / "ABF10" / "meta" / "0001.pkl").write_bytes(b"garbage")
    assert cli(["check", "ho3d", str(tree)]) == 1
    out = capsys.readouterr().out
    assert "problems (2)" in out and "missing image: 1 file(s) in 1 sequence(s) (evaluation: 1 in 1 seq)" in out
    assert "    evaluation/SM1: 1 file(s)" in out and "unreadable pickle" in out
    assert "evaluation: INCOMPLETE" in out and "train: INCOMPLETE" in out
    assert cli(["check", "ho3d", str(tree), "--verbose"]) == 1
    out = capsys.readouterr().out
    assert "problems (2)" in out and "SM1/rgb/0001.jpg: missing image" in out
    assert "ABF10/meta/0001.pkl: unreadable pickle" in out


def test_bad_list_line_names_file(tree, capsys):
    (tree / "evaluation.txt").write_text("SM1/0000\nSM1-0001\n")
    assert cli(["check", "ho3d", str(tree)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.txt:2: expected 'SEQ/id'" in err and err.count("\n") == 1


def test_check_command_wrong_layout(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert cli(["check", "ho3d", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not look like HO3D" in err and "evaluation.txt" in err and err.count("\n") == 1


def test_export_submission_roundtrip(tree, tmp_path):
    ds = ho3d.load_ho3d(tree, image_size=16, cache_root=tmp_path / "c")
    meta = ds.store.meta
    # pretend the model predicted the training ground truth; export in reversed order
    rows = meta.index[meta["split"] == "train"][::-1]
    keys = [f"{meta.at[r, 'sequence']}/{meta.at[r, 'file_id']}" for r in rows]
    expected_keys = sorted(keys)
    out = ho3d.export_ho3d_submission(tmp_path / "sub" / "pred.json", ds.store.j3d[rows], keys,
                                      expected_keys=expected_keys)
    joints, verts = json.loads(out.read_text())
    assert len(joints) == len(verts) == 6 and np.shape(verts[0]) == (778, 3)
    for k, jl in zip(expected_keys, joints):
        seq, fid = k.split("/")
        np.testing.assert_allclose(np.array(jl), gl_joints(seq, int(fid)), atol=1e-6)  # back to the pkl
    assert np.all(np.array(joints)[:, :, 2] < 0)  # OpenGL: hand along -z, as the server checks
    with zipfile.ZipFile(out.with_suffix(".zip")) as z:
        assert z.namelist() == ["pred.json"]
    with pytest.raises(ValueError, match="lack a prediction"):
        ho3d.export_ho3d_submission(tmp_path / "p.json", ds.store.j3d[rows[:2]], keys[:2],
                                    expected_keys=expected_keys)


def test_read_motion_matches_loader(tree, tmp_path):
    seqs = ho3d.read_motion(tree)
    ds = ho3d.load_ho3d(tree, image_size=16, cache_root=tmp_path / "c")
    assert [len(s) for s in seqs] == [4, 1, 1]
    for a, b in zip(seqs, ds.motion[0]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="training split only"):
        ho3d.read_motion(tree, split="evaluation")


def test_check_decode_finds_unreadable_image(tree, capsys):
    bad = tree / "train" / "ABF10" / "rgb" / "0003.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli(["check", "ho3d", str(tree)]) == 0  # exists: fine without decoding
    capsys.readouterr()
    assert cli(["check", "ho3d", str(tree), "--decode", "--all"]) == 1
    assert f"{bad}: unreadable image" in capsys.readouterr().out


def test_pretrain_end_to_end_writes_submission(tree, tmp_path):
    """HO3D's evaluation split has no 3D labels: pre-training evaluates validation, predicts the
    evaluation frames and writes the official submission instead of crashing after training."""
    from handlib.train.pretrain import PretrainConfig, run_pretrain
    from handlib.train.stage import HO3D_SERVER, find_pretrain

    cfg = PretrainConfig(dataset="ho3d", root=str(tree), image_size=64, fraction=0.5, val_fraction=0.5,
                         steps=2, frozen_steps=1, batch_size=2, warmup_steps=0, ckpt_every=0, eval_every=1,
                         device="cpu", precision="fp32", smoke=True, progress=False,
                         results=str(tmp_path / "res"), cache_root=str(tmp_path / "cache"))
    out = run_pretrain(cfg)
    met = json.loads((out["dir"] / "metrics.json").read_text())
    assert np.isfinite(met["val"]["overall"]["mpjpe_rr"]) and met["val"]["n_frames"] in (2, 4)
    assert "val/mpjpe_abs" in met["flat"] and not any(k.startswith("test/") for k in met["flat"])
    test = met["test"]
    assert test["source"] == HO3D_SERVER and "official HO3D server" in test["source"]
    assert test["n_frames"] == 2 and test["complete"] and test["scale_source"] == "prior"
    sub = Path(test["submission"])
    assert sub.is_relative_to(out["dir"]) and sub.with_suffix(".zip").exists()
    joints, verts = json.loads(sub.read_text())
    assert np.shape(joints) == (2, 21, 3) and np.shape(verts) == (2, 778, 3)
    assert np.isfinite(joints).all() and np.all(np.array(joints)[:, :, 2] < 0)  # metres, OpenGL (-z)
    with zipfile.ZipFile(sub.with_suffix(".zip")) as z:
        assert z.namelist() == ["pred.json"]
    facts = met["run_facts"]
    assert facts["crop_source"] == "gt_joints+gt_bbox" and facts["dataset"] == "ho3d"
    assert facts["motion_source"] is None and facts["motion_available"]["source"] == "train_gt"
    found = find_pretrain(out["run_id"], results=cfg.results)
    assert found["checkpoint"] == out["checkpoint"] and found["checkpoint"].exists()
