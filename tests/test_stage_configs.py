"""The stage configs' one source of defaults: component fields declared once (data, loop,
record), one pre-training match rule, renamed fields read from older records, notebooks that
restate no method default."""
import ast
import dataclasses
import inspect
import json
import re

import nbformat
import pytest

from handlib.config import ConfigError, StageConfig, defaults, param
from handlib.data.protocols import ProtocolConfig
from handlib.models.pose import PoseConfig, PoseParams
from handlib.paths import REPO_ROOT
from handlib.train import adversarial_data, adversarial_helpers
from handlib.train.adversarial_config import PRETRAIN_MATCH, AdversarialConfig
from handlib.train.loop import LoopConfig, LoopParams
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage_data import DataParams
from handlib.train.stage_record import RecordParams

STAGES = (PretrainConfig, AdversarialConfig)
COMPONENTS = (DataParams, LoopParams, RecordParams, LoopConfig, PoseParams)


@pytest.mark.parametrize("cls", STAGES)
def test_component_fields_are_declared_once(cls):
    src = inspect.getsource(cls)
    for comp in COMPONENTS:
        for name in set(comp.field_names()) & set(cls.field_names()):
            # the same validation and help as the component's, never re-annotated in the class body
            assert cls.__dataclass_fields__[name].metadata == comp.__dataclass_fields__[name].metadata, name
            assert not re.search(rf"^\s+{name}\s*:", src, re.M), f"{cls.__name__} re-declares {name}"
    # the loop's parameters come from the stage, not from a copy
    assert set(LoopParams.field_names()) <= set(cls.field_names())


def test_pose_config_is_built_from_the_pre_training_fields():
    """The pose model's fields are PoseConfig's (declared once in PoseParams) and reach the model."""
    p = PretrainConfig(head="regression", head_stride=8, refine=False, scale_source="prior", image_size=96)
    pc = p.pose_config()
    assert isinstance(pc, PoseConfig) and pc.image_size == 96
    assert {k: getattr(pc, k) for k in PoseParams.field_names()} == {"head": "regression", "head_stride": 8,
                                                                     "refine": False, "scale_source": "prior"}
    assert not re.search(r"^\s+head_stride\s*:", inspect.getsource(PoseConfig), re.M)


def test_loop_config_is_built_from_the_stage_fields():
    a = AdversarialConfig(steps=7, lr=3e-4, eval_every=2, ckpt_every=3, seed=5, grad_clip=0.5, progress=False)
    lc = a.loop_config()
    assert {k: getattr(lc, k) for k in LoopParams.field_names()} == a.loop_params()
    assert (lc.schedule, lc.resume) == ("constant", True)
    p = PretrainConfig(weight_decay=0.02, num_workers=2, smoke=True)
    lc = p.loop_config(11, 4, 2e-3)
    assert (lc.steps, lc.warmup_steps, lc.lr, lc.weight_decay, lc.num_workers, lc.resume) == (11, 4, 2e-3, 0.02, 2,
                                                                                          False)


def test_stage_defaults():
    a, p = AdversarialConfig(), PretrainConfig()
    assert (a.steps, a.lr, a.eval_every, a.ckpt_every) == (400, 1e-4, 50, 100)
    assert (p.steps, p.lr, p.ckpt_every, p.warmup_steps) == (2000, 1e-3, 500, 50)
    assert (a.d_lr, a.lambda_smooth) == (1e-5, 10.0)  # the committed study's
    assert a.fraction == p.fraction == ProtocolConfig().fraction == 0.1
    with pytest.raises(ConfigError, match="steps"):
        AdversarialConfig(steps=0)  # the component's validation holds under the stage's default


def test_defaults_names_only_inherited_fields():
    @dataclasses.dataclass(frozen=True)
    class Base(StageConfig):
        n: int = param(1, range=(0, 9))

    with pytest.raises(TypeError, match="no inherited field 'm'"):
        defaults(m=2)(type("X", (Base,), {}))


def test_records_made_before_the_rename_are_read():
    old = {"config": {**AdversarialConfig().to_dict(), "augment": False}}
    del old["config"]["rotate"]
    cfg = AdversarialConfig.from_record(old)
    assert cfg.rotate is False and cfg.motion_config().augment is False and cfg.d_train_config().augment is False
    assert "augment" not in AdversarialConfig.field_names()  # the name is PretrainConfig's image augmentation


def test_study_finds_a_record_made_before_the_rename(tmp_path):
    from handlib.study import _same_config

    conf = {**AdversarialConfig(method="adversarial", rotate=False).to_dict()}
    conf["augment"] = conf.pop("rotate")
    d = tmp_path / "runs" / "adversarial__old__12345678"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": conf}))
    (d / "metrics.json").write_text("{}")
    assert _same_config(tmp_path, "adversarial", {"rotate": False}) == d.name
    assert _same_config(tmp_path, "adversarial", {"rotate": True}) is None


# ---------------------------------------------------------------- one pre-training match rule
def pre_record(**kw) -> dict:
    return PretrainConfig(**kw).to_dict()


def test_the_match_rule_includes_the_split_seed():
    cfg = AdversarialConfig(fraction=0.5, pretrain_seed=1, pretrain_split_seed=3, smoke=True)
    assert cfg.pretrain_params() == {"dataset": "handsim", "root": None, "preset": "smoke", "appearance_shift": None,
                                     "protocol": 2, "fraction": 0.5, "seed": 1, "split_seed": 3,
                                     "image_size": 128, "smoke": True}
    assert set(PRETRAIN_MATCH) <= set(PretrainConfig.field_names())
    assert set(PRETRAIN_MATCH.values()) <= set(AdversarialConfig.field_names())
    good = PretrainConfig(fraction=0.5, seed=1, split_seed=3, smoke=True)
    assert cfg.starts_from(good) and cfg.starts_from(good.to_dict())
    assert not cfg.starts_from(good.replace(split_seed=None))
    assert not cfg.starts_from(good.replace(seed=0))
    assert cfg.starts_from(good.replace(seed=0), ignore=("pretrain_seed",))
    # an older record without split_seed is a run whose split followed its seed
    old = good.replace(split_seed=None).to_dict()
    del old["split_seed"]
    assert AdversarialConfig(fraction=0.5, pretrain_seed=1, smoke=True).starts_from(old)


def test_find_pretrain_run_uses_the_rule(monkeypatch):
    recs = [{"config": {"run_id": f"pretrain__{i}", "config": pre_record(fraction=0.5, seed=1, split_seed=s)}}
            for i, s in enumerate((None, 3))]
    monkeypatch.setattr(adversarial_data, "read_records", lambda results, stage: recs)
    assert adversarial_data.find_pretrain_run(AdversarialConfig(fraction=0.5, pretrain_seed=1)) == "pretrain__0"
    assert adversarial_data.find_pretrain_run(
        AdversarialConfig(fraction=0.5, pretrain_seed=1, pretrain_split_seed=3)) == "pretrain__1"
    with pytest.raises(FileNotFoundError, match="no finished pre-training run"):
        adversarial_data.find_pretrain_run(AdversarialConfig(fraction=0.5, pretrain_seed=2))


def test_ensure_pretrain_keeps_every_matched_field(monkeypatch):
    made = []
    monkeypatch.setattr(adversarial_helpers, "run_pretrain", lambda pc: made.append(pc) or {"run_id": "new"})
    cfg = AdversarialConfig(fraction=0.5, pretrain_seed=1, pretrain_split_seed=3, appearance_shift=0.5, smoke=True,
                            image_size=64)
    assert adversarial_helpers.ensure_pretrain(cfg) == "new"
    assert cfg.starts_from(made[0])  # split seed included: the continuation finds this run again


def test_study_dependencies_use_the_rule():
    from handlib.study import Run, resolve_dependencies

    nb = REPO_ROOT / "notebooks" / "02_pretrain.ipynb"
    runs = [Run("pretrain", nb, {"fraction": 0.5, "seed": 1, "split_seed": s}, f"pretrain__{s}", REPO_ROOT)
            for s in (None, 3)]
    runs.append(Run("adversarial", nb, {"fraction": 0.5, "pretrain_seed": 1, "pretrain_split_seed": 3}, "adv",
                    REPO_ROOT))
    assert {r.id: r.deps for r in resolve_dependencies(runs)}["adv"] == ["pretrain__3"]


# ---------------------------------------------------------------- notebooks
SMOKE_SIZES = {"fraction", "image_size", "steps", "frozen_steps", "batch_size", "eval_every", "d_warmup",
               "lambda_warmup", "smoke"}


@pytest.mark.parametrize("nb,cls", [("02_pretrain.ipynb", PretrainConfig), ("03_adversarial.ipynb", AdversarialConfig)])
def test_parameters_cells_restate_no_method_default(nb, cls):
    cells = nbformat.read(str(REPO_ROOT / "notebooks" / nb), as_version=4).cells
    src = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(src).body for t in node.targets}
    defaults_ = {f.name: f.default for f in dataclasses.fields(cls)}
    differ = {k for k, v in values.items() if k in defaults_ and v != defaults_[k]}
    assert differ <= SMOKE_SIZES, f"{nb} restates {sorted(differ - SMOKE_SIZES)} with other values than {cls.__name__}"
