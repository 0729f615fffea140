"""Scaffolding shared by the training stages (handlib.train.stage): records, checkpoint keys,
finding a finished pre-training run, reading its split back, run facts, root-solution counts."""
from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import torch

from handlib.data.datasets import FrameStore
from handlib.data.protocols import make_split
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train import stage, stage_record
from handlib.train.evaluate import evaluate_predictions, predict
from handlib.train.loop import load_checkpoint, resolve_runtime
from handlib.train.pretrain import PretrainConfig, run_pretrain
from tests.helpers import random_hand

SIZE = 64


def small_store(n_seq: int = 8, T: int = 5, seed: int = 0) -> FrameStore:
    g = torch.Generator().manual_seed(seed)
    N = n_seq * T
    j3d = random_hand(N, g, depth=(350.0, 450.0)).float().numpy()
    K = np.broadcast_to(np.array([[50.0, 0, SIZE / 2], [0, 50.0, SIZE / 2], [0, 0, 1]], np.float32),
                        (N, 3, 3)).copy()
    meta = pd.DataFrame({"sequence": np.repeat([f"s{i}" for i in range(n_seq)], T),
                         "subject": np.repeat([f"p{i % 2}" for i in range(n_seq)], T),
                         "action": np.repeat([f"a{i % 2}" for i in range(n_seq)], T),
                         "frame": np.tile(np.arange(T), n_seq),
                         "split": np.repeat(["train"] * (n_seq - 2) + ["test"] * 2, T)})
    images = np.random.default_rng(seed).integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    return FrameStore(images, j3d, K, meta)


def fake_data(store, motion=True):
    mot = ([store.j3d[:5], store.j3d[5:10]], [store.K[:5], store.K[5:10]]) if motion else None
    return types.SimpleNamespace(store=store, motion=mot, crop_source="gt_smoothed_jittered",
                                 crop_note="test crops from true joints")


def tiny_cfg(tmp_path, **kw) -> PretrainConfig:
    base = dict(image_size=SIZE, steps=2, frozen_steps=1, batch_size=4, warmup_steps=0, ckpt_every=0,
                eval_every=0, device="cpu", precision="fp32", smoke=True, progress=False, fraction=0.5,
                val_fraction=0.2, results=str(tmp_path / "res"), cache_root=str(tmp_path / "cache"))
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage")
    store = small_store()
    cfg = tiny_cfg(tmp)
    out = run_pretrain(cfg, data=fake_data(store))
    return cfg, store, out


def test_record_states_checkpoint_and_facts(finished):
    cfg, store, out = finished
    met = json.loads((out["dir"] / "metrics.json").read_text())
    ck = met["checkpoint"]
    assert ck["path"] == str(out["checkpoint"]) and ck["steps"] == 3
    assert [p["phase"] for p in ck["phases"]] == ["batch", "frozen"]  # code_hash: as when training began
    assert ck["data_identity"] == stage.data_identity(fake_data(store))
    assert out["checkpoint"].parent.parent.name == f"data-{ck['data_identity']}-code-{ck['code_hash']}"
    facts = met["run_facts"]
    assert facts["crop_source"] == "gt_smoothed_jittered" and facts["scale_source"] == "gt"
    assert facts["motion_source"] is None and met["split"]["motion_source"] is None  # pre-training uses none
    assert facts["motion_available"] == {"source": "corpus", "sequences": 2, "frames": 10}
    assert facts["data_identity"] == ck["data_identity"] and facts["test_crop"] == "gt"
    # closed-form root failures: counted over the final evaluation's val + test frames
    n_eval = met["val"]["n_frames"] + met["test"]["n_frames"]
    assert facts["closed_form_root"]["frames"] == n_eval
    for s in ("val", "test"):
        r = met[s]["closed_form_root"]
        assert r["n_frames"] == met[s]["n_frames"] and 0 <= r["invalid_fraction"] <= 1
    assert facts["closed_form_root"]["invalid"] == sum(met[s]["closed_form_root"]["invalid"] for s in ("val", "test"))


def test_find_pretrain_survives_a_new_module(finished, monkeypatch):
    cfg, store, out = finished
    # a new .py file in handlib/train or handlib/models changes code_hash: the run stays findable
    monkeypatch.setattr(stage_record, "code_hash", lambda: "0badc0de")
    for found in (stage.find_pretrain(out["run_id"], results=cfg.results), stage.find_pretrain(cfg=cfg)):
        assert found["run_id"] == out["run_id"] and found["checkpoint"] == out["checkpoint"]
        assert found["split_csv"].exists() and found["config"]["fraction"] == 0.5
        assert found["metrics"]["checkpoint"]["path"] == str(out["checkpoint"])
    model = stage.load_pretrained(found, PoseModel(cfg.pose_config()))
    ref = out["model"]
    x = torch.from_numpy(store.images[:3]).permute(0, 3, 1, 2).float() / 255
    K = torch.from_numpy(store.K[:3])
    model.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(model(x, K).j3d, ref(x, K).j3d)
    # the best-validation M (global step over both BN phases), as the record says
    assert load_checkpoint(found["checkpoint"])["step"] == found["metrics"]["selection"]["selected_step"]
    # the split is read back exactly
    assert stage.same_split(stage.read_split(found["split_csv"], store, found["config"]), out["split"])


def test_find_pretrain_names_what_is_missing(finished, tmp_path):
    cfg, store, out = finished
    with pytest.raises(FileNotFoundError, match="pretrain__nothing"):
        stage.find_pretrain("pretrain__nothing", results=cfg.results)
    with pytest.raises(ValueError, match="run_id"):
        stage.find_pretrain()
    # a copy of the record whose run has not finished, and one whose checkpoint is gone
    runs = tmp_path / "res" / "runs"
    for name in ("unfinished", "wiped"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text((out["dir"] / "config.json").read_text())
        (runs / name / "split.csv").write_text((out["dir"] / "split.csv").read_text())
    met = json.loads((out["dir"] / "metrics.json").read_text())
    met["checkpoint"]["path"] = str(tmp_path / "gone" / "last.pt")
    met["checkpoint"]["cache_relative"] = "checkpoints/gone/last.pt"
    (runs / "wiped" / "metrics.json").write_text(json.dumps(met))
    with pytest.raises(FileNotFoundError, match="not finished"):
        stage.find_pretrain("unfinished", results=str(tmp_path / "res"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gone" / "last.pt")):
        stage.find_pretrain("wiped", results=str(tmp_path / "res"))


@pytest.mark.parametrize("protocol,fraction", [(1, 0.25), (1, 1.0), (2, 0.5), (2, 1.0)])
def test_read_split_roundtrip(tmp_path, protocol, fraction):
    store = small_store()
    split = make_split(store.meta, protocol=protocol, fraction=fraction, seed=3, val_fraction=0.2)
    path = split.to_csv(tmp_path / "split.csv")
    back = stage.read_split(path, store, {"protocol": protocol, "fraction": fraction, "seed": 3,
                                          "val_fraction": 0.2, "dataset": "fphab"})
    assert stage.same_split(back, split)
    assert back.labelled_sequences == split.labelled_sequences and back.val_sequences == split.val_sequences
    assert back.summary()["labelled_frames"] == split.summary()["labelled_frames"]
    assert back.motion_source == "train_gt"
    other = small_store(n_seq=7)
    with pytest.raises(ValueError, match="other data"):
        stage.read_split(path, other)


def test_data_identity_follows_content():
    a, b = small_store(), small_store()
    ida = stage.data_identity(fake_data(a))
    assert ida == stage.data_identity(fake_data(b)) and len(ida) == 10
    b.j3d = b.j3d.copy()
    b.j3d[3, 2, 1] += 1.0
    assert stage.data_identity(fake_data(b)) != ida
    c = small_store()
    c.images = c.images.copy()
    c.images[0, 0, 0, 0] ^= 1
    assert stage.data_identity(fake_data(c)) != ida


def test_checkpoint_root_keyed_by_data_and_code(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, smoke=False)
    rec = types.SimpleNamespace(id="pretrain__x")
    a, b = small_store(), small_store(seed=1)
    ra, rb = stage.checkpoint_root(cfg, rec, fake_data(a)), stage.checkpoint_root(cfg, rec, fake_data(b))
    assert ra != rb and ra.parent == rb.parent == tmp_path / "cache" / "checkpoints" / "pretrain__x"
    monkeypatch.setattr(stage_record, "code_hash", lambda: "12345678")
    assert stage.checkpoint_root(cfg, rec, fake_data(a)).name.endswith("-code-12345678")
    # smoke wipes what is there
    ra.mkdir(parents=True)
    monkeypatch.undo()
    (ra / "x").write_text("old")
    assert not stage.checkpoint_root(tiny_cfg(tmp_path, smoke=True), rec, fake_data(a)).exists()


def test_load_data_passes_every_dataset_option(monkeypatch):
    import handlib.data.registry as registry

    seen = {}

    def fake(name, **kw):
        seen[name] = kw
        return types.SimpleNamespace(store=types.SimpleNamespace(image_size=kw["image_size"]))

    monkeypatch.setattr(registry, "load_dataset", fake)
    stage.load_data(PretrainConfig(dataset="fphab", root="/x", image_size=64, test_crop="previous",
                                   missing_images="skip", cache_root="/c"))
    assert seen["fphab"] == {"root": "/x", "image_size": 64, "preset": "smoke", "cache_root": "/c",
                             "test_crop": "previous", "missing_images": "skip"}
    stage.load_data(PretrainConfig(dataset="ho3d", root="/y", image_size=64))
    assert seen["ho3d"]["test_crop"] == "gt" and "missing_images" not in seen["ho3d"]
    stage.load_data(PretrainConfig(dataset="handsim", image_size=64, preset="quick", progress=False))
    assert seen["handsim"]["preset"] == "quick" and seen["handsim"]["progress"] is False


def test_invalid_closed_form_roots_are_counted():
    store = small_store(n_seq=3)
    model = PoseModel(PoseConfig(image_size=SIZE))
    rt = resolve_runtime("cpu", "fp32", "off")
    rows = np.arange(len(store.meta))
    p = predict(model, store, rows, rt, 8)
    res = evaluate_predictions(p, store.meta)
    assert res["closed_form_root"]["n_frames"] == len(rows)
    # constant heatmaps put every joint at the crop centre: the reference bone is degenerate
    with torch.no_grad():
        model.out.weight.zero_(), model.out.bias.zero_()
    model.reset_root_counts()
    p = predict(model, store, rows, rt, 8)
    r = evaluate_predictions(p, store.meta)["closed_form_root"]
    assert r["invalid"] == len(rows) and r["invalid_fraction"] == 1.0
    assert model.root_counts() == {"frames": len(rows), "invalid": len(rows), "clamped": r["clamped"]}
    # training-mode forwards are not counted; the forward's outputs are unchanged
    model.train()
    out = model(torch.rand(2, 3, SIZE, SIZE), torch.from_numpy(store.K[:2]))
    assert out._fields == ("j2d", "z_rel", "z_root", "j3d") and model.root_counts()["frames"] == len(rows)


def test_split_seed_holds_the_split_while_the_model_seed_varies(tmp_path):
    store = small_store(n_seq=20)
    roles = lambda cfg: stage.build_split(cfg, store).to_frame()["role"].tolist()  # noqa: E731
    base = roles(tiny_cfg(tmp_path, fraction=0.3, seed=0))
    assert roles(tiny_cfg(tmp_path, fraction=0.3, seed=5, split_seed=0)) == base
    assert roles(tiny_cfg(tmp_path, fraction=0.3, seed=0, split_seed=3)) != base
    assert stage.split_seed_of({"seed": 4, "split_seed": None}) == 4
    assert stage.split_seed_of({"seed": 4, "split_seed": 1}) == 1
