import json
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from handlib import repro
from handlib.config import ConfigError, StageConfig, param


@dataclass(frozen=True)
class DemoConfig(StageConfig):
    lr: float = param(1e-3, range=(0.0, 1.0))
    steps: int = param(10, range=(1, None))
    protocol: int = param(2, choices=(1, 2))
    name: str = "x"
    sizes: tuple[int, ...] = param((64, 128), range=(16, 512))
    root: str | None = None


def test_from_params_ok_and_coercion():
    c = DemoConfig.from_params({"lr": 1, "steps": 5, "sizes": [32]})
    assert c.lr == 1.0 and isinstance(c.lr, float) and c.sizes == (32,)
    assert c.to_dict()["steps"] == 5


@pytest.mark.parametrize("params, field, hint", [
    ({"lrr": 0.1}, "lrr", "unknown"),
    ({"lr": "fast"}, "lr", "expected float"),
    ({"steps": 1.5}, "steps", "expected int"),
    ({"steps": True}, "steps", "expected int"),
    ({"lr": 2.0}, "lr", "out of range"),
    ({"steps": 0}, "steps", "out of range"),
    ({"protocol": 3}, "protocol", "choose one of [1, 2]"),
    ({"sizes": [8]}, "sizes", "out of range"),
    ({"root": 3}, "root", "expected"),
])
def test_bad_values_name_the_field(params, field, hint):
    with pytest.raises(ConfigError) as e:
        DemoConfig.from_params(params)
    msg = str(e.value)
    assert field in msg and hint in msg


def test_seed_everything_reproducible():
    repro.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    g = repro.seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(123)))


def test_run_id_cuts_long_values_but_the_hash_still_tells_them_apart():
    long = "pretrain__fraction-0.1__preset-full__appearance_shift-0.5__steps-2000__frozen_steps-500__seed-"
    a = repro.run_id("adversarial", {"pretrain_run": long + "0__22ef71b6", "method": "x"}, ["pretrain_run", "method"])
    b = repro.run_id("adversarial", {"pretrain_run": long + "1__4ebec442", "method": "x"}, ["pretrain_run", "method"])
    assert a != b and a[:-8] == b[:-8]  # the shown parts are cut alike, the hash differs
    assert len(a) < 100 and a.startswith("adversarial__pretrain_run-pretrainfraction-0.1") and "__method-x__" in a
    assert repro.run_id("p", {"seed": 3}, ["seed"]).startswith("p__seed-3__")  # short values as they were


def test_run_id_deterministic_and_readable():
    cfg = {"protocol": 2, "fraction": 0.1, "seed": 0, "lr": 1e-3}
    a = repro.run_id("pretrain", cfg, ["protocol", "fraction", "seed"])
    assert a == repro.run_id("pretrain", dict(reversed(list(cfg.items()))), ["protocol", "fraction", "seed"])
    assert a.startswith("pretrain__protocol-2__fraction-0.1__seed-0__")
    assert a != repro.run_id("pretrain", {**cfg, "lr": 2e-3}, ["protocol", "fraction", "seed"])


def test_run_record_atomic(tmp_path):
    rec = repro.RunRecord("pretrain", {"protocol": 2, "fraction": 0.5}, seed=1,
                          vary=["protocol", "fraction"], results=tmp_path)
    assert not rec.done
    rec.write_config()
    rec.write_metrics({"mpjpe_abs": 12.5})
    cfg = json.loads((rec.dir / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["config"]["fraction"] == 0.5 and cfg["stage"] == "pretrain"
    assert {"torch", "numpy", "python"} <= set(cfg["versions"]) and cfg["commit"]
    assert cfg["device"]["device"] == "cpu"
    assert rec.done and not list(rec.dir.glob(".*.tmp"))
    recs = repro.read_records(tmp_path, stage="pretrain")
    assert len(recs) == 1 and recs[0]["metrics"]["mpjpe_abs"] == 12.5
    assert repro.read_records(tmp_path, stage="adversarial") == []


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "m.json"
    repro.atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        repro.atomic_write_json(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["m.json"]
    assert p.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_paths_env_override(tmp_path, monkeypatch):
    from handlib import paths
    monkeypatch.setenv("HANDLIB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HANDLIB_RESULTS", str(tmp_path / "r"))
    assert paths.cache_dir() == tmp_path / "c" and paths.results_dir() == tmp_path / "r"
    assert paths.cache_dir(tmp_path / "o") == tmp_path / "o"


def test_from_namespace_takes_every_field_present_and_defaults_for_the_rest():
    from handlib.train.pretrain import PretrainConfig

    ns = {"fraction": 0.5, "augment": True, "lambda_root": 0.2, "Path": object(), "smoke": True}
    cfg = PretrainConfig.from_namespace(ns, defaults={"progress": False, "lr": 0.01})
    assert (cfg.fraction, cfg.augment, cfg.lambda_root, cfg.progress, cfg.lr) == (0.5, True, 0.2, False, 0.01)
    assert PretrainConfig.from_namespace({**ns, "lr": 0.02}, defaults={"lr": 0.01}).lr == 0.02
    import pytest

    from handlib.config import ConfigError

    with pytest.raises(ConfigError, match="fraction"):
        PretrainConfig.from_namespace({"fraction": 2.0})


def test_real_dataset_root_from_the_environment(monkeypatch, tmp_path):
    import pytest

    from handlib.config import ConfigError
    from handlib.data.realdata import DatasetError
    from handlib.data.registry import load_dataset
    from handlib.train.pretrain import PretrainConfig

    monkeypatch.delenv("HANDLIB_FPHAB_ROOT", raising=False)
    with pytest.raises(ConfigError, match="HANDLIB_FPHAB_ROOT"):
        PretrainConfig(dataset="fphab")
    with pytest.raises(DatasetError, match="HANDLIB_FPHAB_ROOT"):
        load_dataset("fphab")
    monkeypatch.setenv("HANDLIB_FPHAB_ROOT", str(tmp_path / "nowhere"))
    assert PretrainConfig(dataset="fphab").root is None  # validated: the environment names the root
    with pytest.raises(Exception) as e:
        load_dataset("fphab")
    assert "nowhere" in str(e.value)


def test_relative_results_dir_is_taken_from_the_repository_root():
    from handlib.paths import REPO_ROOT, results_dir

    assert results_dir("results/smoke") == REPO_ROOT / "results" / "smoke"
