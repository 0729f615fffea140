"""The adversarial stage's task: where L_MM's gradient goes, labels never read from video,
the lambda schedule, two players through the loop, exact resume with model selection."""
import numpy as np
import pytest
import torch

from handlib.config import ConfigError
from handlib.data.datasets import LabelledFrames, MotionWindows, VideoWindows
from handlib.models.motion import MotionDiscriminator
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train.adversarial import AdversarialConfig, AdversarialTask, get_lambda, hold_out
from handlib.train.loop import LoopConfig, Runtime, train
from tests.helpers import random_hand, two_video_store

SIZE, S = 64, 4


def _store(T=12):
    """s0 labelled, s1 unlabelled video whose labels are NaN (reading them would poison the losses)."""
    store = two_video_store(("s0", "s1"), T, seed=0, size=SIZE)
    store.j3d[T:] = np.nan
    return store


def _setup(method="adversarial", representation="25d", **kw):
    torch.manual_seed(0)
    kw = {"d_warmup": 0, "lambda_warmup": 0, **kw}
    cfg = AdversarialConfig(method=method, representation=representation, S=S, d_channels=16,
                            unlabelled_frames=2 * S, batch_size=4, lambda_mm=1.0, progress=False, **kw)
    model = PoseModel(PoseConfig(image_size=SIZE))
    D = MotionDiscriminator(cfg.motion_config()) if cfg.uses_d else None
    store = _store()
    motion = [random_hand(10, torch.Generator().manual_seed(i)).float().numpy() for i in range(3)]
    streams = {"labelled": (LabelledFrames(store, store.rows_of(["s0"])), 4),
               "unlabelled": (VideoWindows(store, ["s1"], S=cfg.window), 2 * S // cfg.window),
               "motion": (MotionWindows(motion, [store.K[0]] * 3, S=cfg.window),
                          cfg.d_train_config().real_batch * cfg.d_updates)}
    return cfg, model, D, store, streams


def _batch(streams):
    return {k: ds.__getitems__(list(range(bs))) for k, (ds, bs) in streams.items()}


@pytest.mark.parametrize("representation", ["25d", "3d"])
def test_l_mm_reaches_m_only_through_unlabelled_frames_and_never_the_root(representation):
    cfg, model, D, _, streams = _setup(representation=representation)
    task = AdversarialTask(model, D, cfg, 1.0, 0.1)
    task.train_mode()
    b = _batch(streams)
    lab_img = b["labelled"]["image"].requires_grad_()
    vid_img = b["unlabelled"]["images"].requires_grad_()
    t = task.terms(b, 0)
    refiner = list(model.refiner.parameters())
    g = torch.autograd.grad(t["l_mm"], [lab_img, vid_img, *refiner], allow_unused=True)
    assert g[0] is None or g[0].abs().max() == 0  # labelled frames: no adversarial gradient
    assert g[1].abs().max() > 0  # unlabelled frames: the adversarial gradient
    assert all(x is None or x.abs().max() == 0 for x in g[2:])  # root depth / refiner untouched
    # and the supervised loss still reaches the refiner
    assert any(x is not None and x.abs().max() > 0
               for x in torch.autograd.grad(t["sup"], refiner, allow_unused=True))


def test_video_labels_are_never_read():
    cfg, model, D, store, streams = _setup()
    assert set(_batch(streams)["unlabelled"]) == {"images", "K", "start"}
    task = AdversarialTask(model, D, cfg, 1.0, 0.1)
    task.train_mode()
    losses, logs = task.step(_batch(streams), 0)
    assert set(losses) == {"M"} and all(torch.isfinite(v) for v in losses.values())
    assert "loss_D" in logs  # D's update happened inside the step (its own optimiser)
    assert all(np.isfinite(v) for v in logs.values())  # s1's labels are NaN: any read would show here


def test_lambda_schedule_and_config():
    cfg = AdversarialConfig(d_warmup=10, lambda_warmup=4, lambda_mm=0.02)
    assert [get_lambda(s, cfg) for s in (0, 9, 10, 11, 13, 50)] == pytest.approx([0, 0, 0.005, 0.01, 0.02, 0.02])
    assert AdversarialConfig(method="pose_prior").window == 1 and AdversarialConfig().window == 16
    assert not AdversarialConfig(method="smoothness").uses_d and not AdversarialConfig(method="supervised").uses_video
    with pytest.raises(ConfigError, match="unlabelled_frames"):
        AdversarialConfig.from_params({"unlabelled_frames": 8})
    (keep, _), (held, _) = hold_out(list(range(20)), list(range(20)))
    assert held == [9, 19] and len(keep) == 18


@pytest.mark.parametrize("method", ["adversarial", "supervised", "smoothness", "pose_prior"])
def test_each_method_trains_through_the_loop(method, tmp_path):
    cfg, model, D, _, streams = _setup(method=method)
    if not cfg.uses_video:
        streams = {"labelled": streams["labelled"]}
    elif not cfg.uses_d:
        streams.pop("motion")
    task = AdversarialTask(model, D, cfg, 1.0, 0.1)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules.items()}
    lc = LoopConfig(steps=2, lr=1e-4, schedule="constant", progress=False, precision="fp32", channels_last="off")
    h = train(task, streams, lc, tmp_path, runtime=Runtime(torch.device("cpu"), None, False))
    assert len(h) == 2 and np.isfinite(h[-1]["loss_M"])
    assert ("loss_D" in h[-1]) == (D is not None) and ("l_smooth" in h[-1]) == (method == "smoothness")
    for k, m in task.modules.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters())), k


@pytest.mark.parametrize("d_kw", [{"d_every": 2},
                                  {"d_replay": 16, "d_fake_batch": 6, "d_updates": 2, "d_nda": 0.3, "d_r1": 0.5,
                                   "d_input": "pose_diff", "d_pool": "window"}])
def test_resume_reproduces_history_and_selection(tmp_path, d_kw):
    def run(steps, ckdir):
        cfg, model, D, store, streams = _setup(lambda_warmup=2, eval_every=1, steps=steps, **d_kw)
        val = LabelledFrames(store, store.rows_of(["s0"])).__getitems__(list(range(4)))

        def eval_fn():  # deterministic validation number: mean abs error of the predicted j3d
            with torch.no_grad():
                model.eval()
                out = model(val["image"], val["K"])
            return {"val_mpjpe_abs": float((out.j3d - val["j3d"]).norm(dim=-1).mean())}

        task = AdversarialTask(model, D, cfg, 1.0, 0.1, eval_fn, best_dir=ckdir)
        lc = LoopConfig(steps=steps, lr=1e-3, schedule="constant", eval_every=1, ckpt_every=1, progress=False,
                        precision="fp32", channels_last="off")
        h = train(task, streams, lc, ckdir, runtime=Runtime(torch.device("cpu"), None, False))
        return h, task

    straight, t1 = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    resumed, t2 = run(4, tmp_path / "b")
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in straight]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in resumed]
    assert t1.best == t2.best and t2.best_path().exists() and t1.best_full == t2.best_full
    if t1.trainer.buffer is not None:  # the replay buffer resumed exactly
        assert torch.equal(t1.trainer.buffer.data, t2.trainer.buffer.data) and len(t1.trainer.buffer) == 8
    assert all(np.isfinite(r["gn_sup"]) and np.isfinite(r["gn_mm"]) for r in straight)  # eval every step
    assert torch.equal(torch.load(t1.best_path())["M"]["out.weight"], torch.load(t2.best_path())["M"]["out.weight"])


def test_d_updates_happen_before_m_sees_d_and_d_gets_no_gradient_from_m():
    cfg, model, D, _, streams = _setup(d_updates=3)
    task = AdversarialTask(model, D, cfg, 1.0, 0.1)
    task.train_mode()
    losses, logs = task.step(_batch(streams), 0)
    assert logs["d_updates"] == 3 and set(losses) == {"M"}
    before = [p.grad.clone() for p in D.parameters()]  # D's own last update
    losses["M"].backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(before, D.parameters()))  # L_MM moves M only
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
    assert "gn_sup" not in logs  # logged at evaluation steps only (eval_every 50)


def test_find_pretrain_run_names_what_is_missing(tmp_path):
    import json

    from handlib.train.adversarial import find_pretrain_run

    cfg = AdversarialConfig(results=str(tmp_path), preset="quick", fraction=0.1)
    with pytest.raises(FileNotFoundError, match="no finished pre-training run.*pretrain_run"):
        find_pretrain_run(cfg)
    for rid, seed in (("pre_a", 0), ("pre_b", 1)):
        d = tmp_path / "runs" / rid
        d.mkdir(parents=True)
        conf = {"dataset": "handsim", "preset": "quick", "protocol": 2, "fraction": 0.1, "seed": seed,
                "image_size": 128, "smoke": False}
        (d / "config.json").write_text(json.dumps({"stage": "pretrain", "run_id": rid, "config": conf}))
        (d / "metrics.json").write_text("{}")
    assert find_pretrain_run(cfg) == "pre_a"
    assert find_pretrain_run(cfg.replace(pretrain_seed=1)) == "pre_b"
    assert find_pretrain_run(cfg.replace(pretrain_run="given")) == "given"


def test_unused_fields_name_what_cannot_change_a_method():
    sup, adv = AdversarialConfig(method="supervised"), AdversarialConfig(method="adversarial")
    assert {"lambda_mm", "lambda_smooth", "d_lr", "S", "unlabelled_frames"} <= sup.unused_fields()
    assert not {"lambda_mm", "d_lr", "S", "lr"} & adv.unused_fields() and "lambda_smooth" in adv.unused_fields()
    assert "S" in AdversarialConfig(method="pose_prior").unused_fields()
    sm = AdversarialConfig(method="smoothness").unused_fields()
    assert "lambda_smooth" not in sm and "S" not in sm and "d_lr" in sm
