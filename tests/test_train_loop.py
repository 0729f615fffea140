import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from handlib.config import ConfigError
from handlib.data.datasets import FrameStore, LabelledFrames
from handlib.geometry import project
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train.bn import bn_modules, freeze_bn_stats
from handlib.train.loop import (
    LoopConfig,
    NonFiniteError,
    StepBatchSampler,
    bar_postfix,
    eval_line,
    get_lr,
    load_checkpoint,
    train,
)
from handlib.train.pretrain import PretrainConfig, SupervisedTask, run_pretrain
from tests.helpers import random_hand

SIZE = 64


def tiny_store(n_seq=6, T=6, seed=0) -> FrameStore:
    """Random images with real labels: plausible hands projected by a 64-px crop camera."""
    g = torch.Generator().manual_seed(seed)
    N = n_seq * T
    j3d = random_hand(N, g, depth=(350.0, 450.0)).float()
    K = torch.tensor([[50.0, 0, SIZE / 2], [0, 50.0, SIZE / 2], [0, 0, 1]]).expand(N, 3, 3).contiguous()
    assert project(j3d, K).abs().max() < 10 * SIZE
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({"sequence": np.repeat([f"s{i}" for i in range(n_seq)], T),
                         "subject": np.repeat([f"p{i % 2}" for i in range(n_seq)], T),
                         "action": np.repeat([f"a{i % 3}" for i in range(n_seq)], T),
                         "frame": np.tile(np.arange(T), n_seq),
                         "split": np.repeat(["train"] * (n_seq - 2) + ["test"] * 2, T)})
    images = rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    return FrameStore(images, j3d.numpy(), K.numpy(), meta)


def tiny_split(store):
    tr = np.flatnonzero(store.meta["split"] == "train")
    return types.SimpleNamespace(labelled_rows=tr[:-6], val_rows=tr[-6:], unlabelled_sequences=[],
                                 test_rows=np.flatnonzero(store.meta["split"] == "test"))


def _loop_cfg(**kw):
    base = dict(steps=6, lr=1e-3, warmup_steps=2, ckpt_every=3, log_every=1, device="cpu",
                precision="fp32", channels_last="off", progress=False)
    return LoopConfig(**{**base, **kw})


def _task(bn_phase="batch", seed=0):
    torch.manual_seed(seed)
    model = PoseModel(PoseConfig(image_size=SIZE))
    return SupervisedTask(model, bn_phase, lambda_z=1.0, lambda_root=0.1)


def test_lr_schedule_is_pure():
    cfg = LoopConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert get_lr(0, cfg) == pytest.approx(1e-4)
    assert get_lr(9, cfg) == pytest.approx(1e-3)
    assert get_lr(10, cfg) == pytest.approx(1e-3)
    assert get_lr(100, cfg) == pytest.approx(1e-4)
    assert [get_lr(s, cfg) for s in range(100)] == [get_lr(s, cfg) for s in range(100)]
    assert get_lr(50, cfg.replace(schedule="constant")) == 1e-3


def test_lr_schedule_warms_up_linearly_then_decays_monotonically_to_the_floor():
    cfg = LoopConfig(steps=200, lr=2e-3, warmup_steps=20, min_lr_ratio=0.05)
    lrs = [get_lr(s, cfg) for s in range(cfg.steps)]
    assert lrs[:20] == pytest.approx([2e-3 * (s + 1) / 20 for s in range(20)])  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))  # cosine: never rises after the warm-up
    assert get_lr(110, cfg) == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5))  # half-way: mid-point
    assert lrs[-1] > 2e-3 * 0.05 and get_lr(cfg.steps, cfg) == pytest.approx(2e-3 * 0.05)
    assert get_lr(10 * cfg.steps, cfg) == pytest.approx(2e-3 * 0.05)  # stays at the floor
    no_warm = cfg.replace(warmup_steps=0)
    assert get_lr(0, no_warm) == pytest.approx(2e-3)


def test_step_batches_are_a_function_of_step():
    a = StepBatchSampler(20, 6, seed=3, start=0, stop=9)
    b = StepBatchSampler(20, 6, seed=3, start=4, stop=9)
    assert list(a)[4:] == list(b)
    first_epoch = sum(list(a)[:3], [])
    assert len(set(first_epoch)) == 18  # no repeats within an epoch


class _TinyTask:
    """Conv + BN + dropout (uses the RNG) on the tiny store: 2D keypoints regression."""

    def __init__(self, seed=0):
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, 42))
        self.modules, self.optimised = {"M": self.net}, {"M": list(self.net.parameters())}

    def train_mode(self):
        self.net.train()

    def step(self, batch, step):
        b = batch["labelled"]
        pred = self.net(b["image"]).view(-1, 21, 2)
        return {"M": (pred - b["j2d"] / SIZE).abs().mean()}, {}


def test_resume_reproduces_uninterrupted_run(tmp_path):
    store = tiny_store()
    ds = LabelledFrames(store, tiny_split(store).labelled_rows)
    cfg = _loop_cfg(steps=8)
    full = train(_TinyTask(), {"labelled": (ds, 4)}, cfg, tmp_path / "a")

    def crash(step, row):
        if step == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(_TinyTask(), {"labelled": (ds, 4)}, cfg, tmp_path / "b", on_step=crash)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    resumed = train(_TinyTask(seed=123), {"labelled": (ds, 4)}, cfg, tmp_path / "b")  # other init: overwritten
    la = [r["loss_M"] for r in full]
    lb = [r["loss_M"] for r in resumed]
    assert len(la) == len(lb) == 8
    assert la == lb  # exact, on CPU: weights, optimiser, BN statistics, dropout RNG and data order
    assert len(set(la)) > 1


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    store = tiny_store()
    ds = LabelledFrames(store, tiny_split(store).labelled_rows)
    train(_TinyTask(), {"labelled": (ds, 4)}, _loop_cfg(steps=2), tmp_path)
    task = _TinyTask(seed=5)
    hist = train(task, {"labelled": (ds, 4)}, _loop_cfg(steps=2), tmp_path)
    assert len(hist) == 2
    st = load_checkpoint(tmp_path / "last.pt")["modules"]["M"]
    assert all(torch.equal(v, task.net.state_dict()[k]) for k, v in st.items())


def test_bn_frozen_keeps_running_stats_affine_trains(tmp_path):
    store = tiny_store()
    ds = LabelledFrames(store, tiny_split(store).labelled_rows)
    task = _task("frozen")
    bns = bn_modules(task.model)
    stats0 = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in bns]
    w0 = [m.weight.detach().clone() for m in bns]
    train(task, {"labelled": (ds, 4)}, _loop_cfg(steps=3, eval_every=2, lr=1e-2), tmp_path)
    for m, (mu, var, nb) in zip(bns, stats0):
        assert torch.equal(m.running_mean, mu) and torch.equal(m.running_var, var)
        assert int(m.num_batches_tracked) == nb
    assert any(not torch.equal(m.weight, w) for m, w in zip(bns, w0))
    # control: batch-statistics phase does update them
    task_b = _task("batch")
    mu_b = bn_modules(task_b.model)[0].running_mean.clone()
    train(task_b, {"labelled": (ds, 4)}, _loop_cfg(steps=1), tmp_path / "b")
    assert not torch.equal(bn_modules(task_b.model)[0].running_mean, mu_b)


def test_freeze_helper_survives_as_eval_mode_only_for_bn():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    freeze_bn_stats(m)
    assert m[0].training and m[2].training and not m[1].training
    assert m[1].weight.requires_grad and m[1].bias.requires_grad


class _NaNTask:
    """A linear model whose loss turns NaN at step 3 (1-based)."""

    def __init__(self):
        torch.manual_seed(0)
        self.net = nn.Linear(3, 1)
        self.modules, self.optimised = {"M": self.net}, {"M": list(self.net.parameters())}

    def train_mode(self):
        self.net.train()

    def step(self, batch, step):
        x = batch["d"]["x"]
        loss = self.net(x).pow(2).mean()
        if step == 2:
            loss = loss * float("nan")
        return {"M": loss}, {}


class _Vecs(torch.utils.data.Dataset):
    def __init__(self):
        self.x = torch.randn(16, 3)

    def __len__(self):
        return 16

    def __getitems__(self, idx):
        return {"x": self.x[idx]}


def test_nan_guard_names_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _loop_cfg(ckpt_every=1, warmup_steps=0)
    with pytest.raises(NonFiniteError, match="at step 3"):
        train(_NaNTask(), {"d": (_Vecs(), 4)}, cfg, tmp_path)
    st = load_checkpoint(tmp_path / "last.pt")
    assert st["step"] == 2
    assert all(torch.isfinite(v).all() for v in st["modules"]["M"].values())


@pytest.mark.parametrize("bad,field", [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"),
                                       ({"precision": "fp8"}, "precision"), ({"device": "tpu"}, "device")])
def test_loop_config_bad_values_name_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        LoopConfig.from_params(bad)


@pytest.mark.parametrize("bad,field", [({"fraction": 0.0}, "fraction"), ({"bn_phase": "x"}, "bn_phase"),
                                       ({"bn_phase": "frozen"}, "init_checkpoint"), ({"protocol": 3}, "protocol"),
                                       ({"image_size": 100}, "image_size"), ({"lambda_z": -1.0}, "lambda_z"),
                                       ({"batch_size": 1}, "batch_size"), ({"dataset": "fphab"}, "root")])
def test_pretrain_config_bad_values_name_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        PretrainConfig.from_params(bad)


def test_run_pretrain_writes_record(tmp_path):
    store = tiny_store()
    cfg = PretrainConfig(image_size=SIZE, steps=3, frozen_steps=2, batch_size=4, warmup_steps=1, ckpt_every=0,
                         eval_every=2, device="cpu", precision="fp32", smoke=True, progress=False,
                         results=str(tmp_path / "res"), cache_root=str(tmp_path / "cache"))
    from handlib.data.protocols import make_split
    split = make_split(store.meta, protocol=2, fraction=0.5, seed=0, val_fraction=0.25)
    out = run_pretrain(cfg, data=types.SimpleNamespace(store=store), split=split)
    d = out["dir"]
    roles = pd.read_csv(d / "split.csv")
    assert set(roles["role"]) == {"labelled", "unlabelled", "val", "test"}
    assert not set(roles.loc[roles["role"] == "test", "sequence"]) & set(roles.loc[roles["role"] != "test", "sequence"])
    cfgj, met = json.loads((d / "config.json").read_text()), json.loads((d / "metrics.json").read_text())
    assert cfgj["config"]["scale_source"] == "gt" and met["scale_source"] == "gt"
    assert met["split"]["labelled_sequences"] == 2 and met["n_labelled"] == len(split.labelled_rows)
    for k in ("mpjpe_abs", "mpjpe_rr", "mpjpe_pa", "auc_rr", "epe_2d"):
        assert np.isfinite(met["test"]["overall"][k])
    assert set(met["test"]["per_action"]) == set(store.meta["action"][tiny_split(store).test_rows])
    hist = pd.read_csv(d / "history.csv")
    assert list(hist["step"]) == [1, 2, 3, 4, 5] and list(hist["phase"]) == ["batch"] * 3 + ["frozen"] * 2
    assert "eval_val_mpjpe_rr" in hist.columns
    # the learning curve's lr column: the schedule of each phase (warm-up + cosine; BN-frozen: no warm-up)
    for phase, (steps, warm, lr) in {"batch": (3, 1, cfg.lr), "frozen": (2, 0, cfg.frozen_lr)}.items():
        lc = LoopConfig(steps=steps, lr=lr, warmup_steps=warm)
        assert list(hist.loc[hist["phase"] == phase, "lr"]) == pytest.approx([get_lr(s, lc) for s in range(steps)])
    # the selected M (best validation abs MPJPE over both phases' evaluations) is the checkpoint
    sel = met["selection"]
    assert sel["select_on"] == "val_mpjpe_abs" and sel["selected_step"] in (2, 3, 4, 5)
    assert out["checkpoint"].exists() and out["checkpoint"].parent.name == "best"
    assert out["checkpoint"].name == f"best-{sel['selected_step']:06d}.pt"
    assert list(out["checkpoint"].parent.glob("best-*.pt")) == [out["checkpoint"]]  # others pruned
    assert met["checkpoint"]["path"] == str(out["checkpoint"])
    evals = hist.dropna(subset=["eval_val_mpjpe_abs"])
    assert sel["selected_value"] == pytest.approx(evals["eval_val_mpjpe_abs"].min())
    assert ("at_last_step" in sel) == (sel["selected_step"] != 5)
    # the floor beside M, the validation noise and sequence-bootstrap intervals
    assert met["mean_pose"]["test"]["mpjpe_rr"] > 0 and np.isfinite(met["mean_pose"]["val"]["epe_2d"])
    assert met["vs_mean_pose"]["test/mpjpe_rr"] == pytest.approx(
        1 - met["test"]["overall"]["mpjpe_rr"] / met["mean_pose"]["test"]["mpjpe_rr"])
    assert met["val_noise"]["evaluations"] == 3 and met["val_noise"]["steps"] == [2, 3, 5]
    assert met["val_noise"]["val_mpjpe_rr"]["range"] >= 0
    boot = met["test"]["bootstrap"]
    assert boot["by"] == "sequence" and boot["n_sequences"] >= 1
    assert boot["mpjpe_rr"][0] <= met["test"]["overall"]["mpjpe_rr"] <= boot["mpjpe_rr"][1]
    assert out["checkpoint"].is_relative_to(tmp_path / "cache" / "checkpoints" / out["run_id"])
    # where it ran: bf16 numerics differ between processors, so the record names it
    assert met["runtime"]["device"] == "cpu" and met["runtime"]["bf16"] is False
    assert met["runtime"]["processor"] and met["runtime"]["torch"] == torch.__version__
    # the bone-length prior path: evaluation without ground-truth scale, recorded as such
    from handlib.train.evaluate import evaluate_splits
    rows = tiny_split(store).test_rows
    res = evaluate_splits(out["model"], store, {"test": rows}, out["runtime"], scale_source="prior")
    assert res["scale_source"] == "prior" and np.isfinite(res["test"]["overall"]["mpjpe_abs"])
    assert res["test"]["overall"]["mpjpe_rr"] != met["test"]["overall"]["mpjpe_rr"]


def test_bf16_capped_by_isa_env(monkeypatch):
    """ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY below bf16 make 'auto' train in fp32 without
    channels_last, as on an AVX2-only CPU; a bf16-capable cap leaves the CPU's own answer."""
    from handlib.train import loop

    monkeypatch.setattr(loop.Path, "read_text", lambda self: "flags : avx2 avx512_bf16 amx_bf16")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert loop.cpu_has_bf16()
    rt = loop.resolve_runtime("cpu")
    assert rt.dtype == torch.bfloat16 and rt.channels_last
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not loop.cpu_has_bf16()
    rt = loop.resolve_runtime("cpu")
    assert rt.dtype is None and not rt.channels_last
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert loop.cpu_has_bf16()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert not loop.cpu_has_bf16()


def test_processor_name_reads_the_cpu_model(monkeypatch):
    from handlib.train import loop

    cpuinfo = "processor : 0\nmodel name\t: Toy CPU 9000 @ 1 GHz\nflags : avx2"
    monkeypatch.setattr(loop.Path, "read_text", lambda self: cpuinfo)
    assert loop.processor_name(torch.device("cpu")) == "Toy CPU 9000 @ 1 GHz"
    monkeypatch.setattr(loop.Path, "read_text", lambda self: (_ for _ in ()).throw(OSError("no procfs")))
    assert loop.processor_name(torch.device("cpu"))  # falls back to platform's answer


class _EvalTask(_NaNTask):
    def step(self, batch, step):
        return {"M": self.net(batch["d"]["x"]).pow(2).mean()}, {}

    def evaluate(self, step):
        return {"val_mpjpe_abs": 100.0 - step, "val_d_acc": 0.5}


def test_text_progress_under_the_runner_prints_a_line_per_evaluation(tmp_path, monkeypatch, capsys):
    """The study runner sets HANDLIB_PROGRESS=text: no widget, one line per evaluation."""
    monkeypatch.setenv("HANDLIB_PROGRESS", "text")
    cfg = _loop_cfg(steps=4, eval_every=2, progress=True, warmup_steps=0)
    train(_EvalTask(), {"d": (_Vecs(), 4)}, cfg, tmp_path)
    cap = capsys.readouterr()
    lines = [ln.strip() for ln in cap.out.splitlines() if ln.strip().startswith("step")]
    assert [ln.split(" (")[0] for ln in lines] == ["step 2/4", "step 4/4"]
    assert lines[0].endswith("val mpjpe_abs 98.0") and "d_acc" not in cap.out
    assert "train: 100%" in cap.err  # the text bar


def test_progress_shows_headline_errors_not_every_metric():
    """The bar's postfix and the per-evaluation line name the losses and the headline
    validation errors only; the last evaluation stays on the bar until the next one."""
    ev = {"step": 50, "loss_M": 0.0412, "loss_D": 0.5, "gradnorm_M": 3.0, "eval_val_mpjpe_abs": 88.64,
          "eval_val_mpjpe_rr": 52.91, "eval_val_epe_2d": 23.4, "eval_val_pa_mpjpe": 20.0,
          "eval_val_jitter_ratio": 3.1, "eval_val_d_auc": 0.6, "eval_val_mpjpe_root": float("nan")}
    shown = bar_postfix(ev, {})
    assert shown == {"loss_M": "0.0412", "loss_D": "0.5", "val_mpjpe_abs": "88.6", "val_mpjpe_rr": "52.9",
                     "val_epe_2d": "23.4"}
    shown = bar_postfix({"step": 51, "loss_M": 0.03, "loss_D": 0.4}, shown)
    assert shown["loss_M"] == "0.03" and shown["val_mpjpe_abs"] == "88.6"
    assert eval_line(50, 400, ev, 40.2) == "  step 50/400 (40 s): val mpjpe_abs 88.6, mpjpe_rr 52.9, epe_2d 23.4"
    assert eval_line(1, 2, {"loss_M": 1.0}, 0.0).endswith("val -")


def test_select_last_keeps_the_last_step(tmp_path):
    store = tiny_store()
    cfg = PretrainConfig(image_size=SIZE, steps=2, frozen_steps=1, batch_size=4, warmup_steps=0, ckpt_every=0,
                         eval_every=1, device="cpu", precision="fp32", smoke=True, progress=False, augment=False,
                         select_on="last", results=str(tmp_path / "res"), cache_root=str(tmp_path / "cache"))
    from handlib.data.protocols import make_split
    split = make_split(store.meta, protocol=2, fraction=0.5, seed=0, val_fraction=0.25)
    out = run_pretrain(cfg, data=types.SimpleNamespace(store=store), split=split)
    assert out["checkpoint"].parent.name == "frozen" and out["checkpoint"].name == "last.pt"
    assert out["metrics"]["selection"] == {"select_on": "last", "selected_step": 3, "last_step": 3}


def test_pretrain_config_from_record_applies_legacy_defaults():
    old = {"config": {"fraction": 0.1, "image_size": 128, "augment": False}}  # a first-study record
    cfg = PretrainConfig.from_record(old)
    assert (cfg.head_stride, cfg.select_on, cfg.eval_max_frames, cfg.fraction) == (16, "last", 512, 0.1)
    assert cfg.pose_config().head_stride == 16
    new = PretrainConfig.from_record(PretrainConfig(fraction=0.1).to_dict())  # a record with every key
    assert new == PretrainConfig(fraction=0.1) and new.head_stride == 4 and new.augment
