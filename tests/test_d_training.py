"""D's training decoupled from M's step: replay buffer semantics, NDA fakes never in real
batches, k updates, the warm start (stops on a plateau, fills the buffer), predicted windows
built without labels, D's options (receptive field, motion input, window pooling)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from handlib.data.datasets import MotionWindows
from handlib.models.motion import MotionConfig, MotionDiscriminator, encode_real, load_discriminator, save_discriminator
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train.discriminator import DTrainConfig, DTrainer, ReplayBuffer, nda_windows, predicted_windows, warm_start
from handlib.train.loop import resolve_runtime
from tests.helpers import random_hand, two_video_store

S = 4


def _cfg(**kw) -> DTrainConfig:
    base = dict(lr=1e-3, beta1=0.5, weight_decay=0.0, grad_clip=1.0, updates=1, real_batch=4, fake_batch=4, replay=0,
                r1=0.0, nda=0.0, nda_kinds=("jitter", "bone", "shuffle"), augment=False, representation="25d",
                center=False, warm_steps=0, warm_eval_every=2, warm_patience=2)
    return DTrainConfig(**(base | kw))


def _motion(n=3, T=12):
    K = np.array([[80.0, 0, 32], [0, 80, 32], [0, 0, 1]], np.float32)
    seqs = [random_hand(T, torch.Generator().manual_seed(i)).float().numpy() for i in range(n)]
    return MotionWindows(seqs, [K] * n, S=S)


def test_replay_buffer_is_a_ring_and_samples_only_what_it_holds():
    b = ReplayBuffer(5)
    with pytest.raises(ValueError, match="empty"):
        b.sample(1)
    b.push(torch.arange(3.0)[:, None].expand(3, 2))
    assert len(b) == 3
    s = b.sample(50, torch.Generator().manual_seed(0))
    assert set(s[:, 0].tolist()) <= {0.0, 1.0, 2.0}
    b.push(torch.arange(3.0, 7.0)[:, None].expand(4, 2))  # 7 pushed into 5: 0 and 1 overwritten
    assert len(b) == 5 and sorted(b.data[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    c = ReplayBuffer(5)
    c.load_state_dict(b.state_dict())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(b.sample(20, g1), c.sample(20, g2))
    c.push(torch.full((1, 2), 9.0))
    b.push(torch.full((1, 2), 9.0))
    assert torch.equal(b.data, c.data) and b.ptr == c.ptr
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(4).load_state_dict(b.state_dict())


class Recorder(MotionDiscriminator):
    """D that records every input it scores."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return super().forward(x)


@pytest.mark.parametrize("r1", [0.0, 1.0])
def test_nda_fakes_never_leak_into_real_batches(r1):
    torch.manual_seed(0)
    D = Recorder(MotionConfig(S=S, channels=8))
    tr = DTrainer(D, _cfg(nda=0.5, r1=r1, updates=2, real_batch=3), seed=0)
    batch = _motion().__getitems__(list(range(6)))
    j3d0 = batch["j3d"].clone()
    fresh = torch.randn(4, S, 21, 3) * 0.1
    logs = tr.update(batch["j3d"], batch["K"], fresh)
    assert torch.equal(batch["j3d"], j3d0)  # the real batch is never modified in place
    assert logs["d_updates"] == 2 and "d_nda" in logs
    real_enc = encode_real(j3d0, batch["K"], "25d")
    # per update: real (the clean windows of its chunk, exactly), M's fakes, NDA fakes
    for u, idx in enumerate((slice(0, 3), slice(3, 6))):
        real, fake, nda = D.seen[3 * u: 3 * u + 3]
        assert torch.equal(real, real_enc[idx])
        assert torch.equal(fake, fresh)
        assert not any(torch.allclose(n, r) for n in nda for r in real_enc)  # every NDA window is corrupted
    for x in D.seen[0::3]:  # no corrupted window ever among the real ones
        assert all(any(torch.equal(r, c) for c in real_enc) for r in x)


def test_nda_windows_cover_the_kinds_and_copy():
    j = _motion().__getitems__(list(range(6)))["j3d"]
    j0 = j.clone()
    out = nda_windows(j, ("jitter", "shuffle", "reverse"), torch.Generator().manual_seed(0))
    assert out.shape == j.shape and torch.equal(j, j0)
    assert torch.equal(out[4:], j[4:].flip(1))


def test_nda_scale_multiplies_the_jitter_amounts():
    """Jitter NDA at scale 3 moves joints 3x as far as at scale 1 (same draws: same generator seed);
    the frame order kinds do not scale."""
    j = _motion().__getitems__(list(range(4)))["j3d"]
    one = nda_windows(j, ("jitter",), torch.Generator().manual_seed(0)) - j
    three = nda_windows(j, ("jitter",), torch.Generator().manual_seed(0), scale=3.0) - j
    assert torch.allclose(three, 3 * one, atol=1e-3)
    assert torch.equal(nda_windows(j, ("reverse",), torch.Generator().manual_seed(0), scale=3.0), j.flip(1))
    with pytest.raises(ValueError, match="nda_scale"):
        _cfg(nda_scale=0.0)


def test_nda_severity_and_graded_targets():
    """Severity is the amount's log-position in its range (jitter: |displacement| grows with it);
    frame-order kinds have severity 1. Graded NDA targets g (1 - u); g = 0 keeps every target 0 and
    draws exactly what the ungraded call draws (old runs reproduce)."""
    j = _motion().__getitems__(list(range(6)))["j3d"]
    plain = nda_windows(j, ("jitter", "jitter", "shuffle"), torch.Generator().manual_seed(1))
    out, sev = nda_windows(j, ("jitter", "jitter", "shuffle"), torch.Generator().manual_seed(1), with_severity=True)
    assert torch.equal(out, plain) and sev.shape == (6,)
    assert ((sev >= 0) & (sev <= 1)).all() and torch.equal(sev[4:], torch.ones(2))
    assert sev[0] == sev[1] and sev[2] == sev[3] and sev[0] != sev[2]
    move = (out[:4] - j[:4]).norm(dim=-1).mean(dim=(1, 2))  # (4,) mm
    lo, hi = (0, 2) if sev[0] < sev[2] else (2, 0)
    assert move[hi] > move[lo]  # the more severe group moved further
    batch = _motion().__getitems__(list(range(6)))
    for g in (0.0, 0.6):
        tr = DTrainer(MotionDiscriminator(MotionConfig(S=S, channels=8)),
                      _cfg(nda=0.5, nda_graded=g, nda_kinds=("jitter", "shuffle")), seed=0)
        _, t = tr.nda_fakes(batch["j3d"], batch["K"])
        assert ((t >= 0) & (t <= g)).all() and torch.equal(t[3:], torch.zeros(3))
        assert (t[:3] > 0).all() == (g > 0)
    with pytest.raises(ValueError, match="nda_graded"):
        _cfg(nda_graded=1.0)


class ConstD(MotionDiscriminator):
    """D that scores every window c (one parameter): its loss is a closed form."""

    def __init__(self, cfg, c):
        super().__init__(cfg)
        self.c = torch.nn.Parameter(torch.tensor(float(c)))

    def forward(self, x):
        return self.c.expand(len(x)) + 0 * x.sum()


@pytest.mark.parametrize("g", [0.0, 0.6])
def test_d_loss_uses_the_graded_targets(g):
    """L_D = (1 - c)^2 + (1 - a) c^2 + a mean((c - t)^2) with t = g (1 - severity)."""
    a, c = 0.5, 0.3
    batch = _motion().__getitems__(list(range(6)))
    tr = DTrainer(ConstD(MotionConfig(S=S, channels=8), c), _cfg(nda=a, nda_graded=g, nda_kinds=("jitter", "bone")),
                  seed=0)
    gen_state = tr.gen.get_state()
    _, t = tr.nda_fakes(batch["j3d"], batch["K"])
    tr.gen.set_state(gen_state)  # the step draws the same NDA amounts
    logs = tr.d_step(batch["j3d"], batch["K"], torch.zeros(4, S, 21, 3))
    want = (1 - c) ** 2 + (1 - a) * c ** 2 + a * float(((c - t) ** 2).mean())
    assert logs["loss_D"] == pytest.approx(want, rel=1e-5)


def test_fake_batch_mixes_fresh_and_replayed_windows():
    D = MotionDiscriminator(MotionConfig(S=S, channels=8))
    tr = DTrainer(D, _cfg(replay=16, fake_batch=6), seed=0)
    old = torch.ones(10, S, 21, 3)
    tr.buffer.push(old)
    fresh = torch.zeros(2, S, 21, 3)
    f = tr.fake_windows(fresh)
    assert f.shape[0] == 6 and torch.equal(f[:2], fresh) and torch.equal(f[2:], torch.ones(4, S, 21, 3))
    batch = _motion().__getitems__(list(range(4)))
    tr.update(batch["j3d"], batch["K"], fresh)
    assert len(tr.buffer) == 12  # this step's windows joined the buffer


def test_warm_start_stops_on_a_plateau_and_fills_the_buffer():
    torch.manual_seed(0)
    D = MotionDiscriminator(MotionConfig(S=S, channels=8))
    tr = DTrainer(D, _cfg(replay=8, warm_steps=50, warm_eval_every=2, warm_patience=2), seed=0)
    fakes = torch.randn(20, S, 21, 3) * 0.05
    res = warm_start(tr, _motion(), fakes, lambda: {"objective": 1.0})  # flat: stops after 1 + 2 evaluations
    assert res["stopped"] == "plateau" and res["steps"] == 6 and len(res["history"]) == 3
    assert len(tr.buffer) == 8 and all(any(torch.equal(b, f) for f in fakes) for b in tr.buffer.data)
    assert {"loss_D", "d_acc", "objective", "step"} <= set(res["history"][0])


def test_predicted_windows_read_no_labels():
    store = two_video_store(("v0", "v1"), 10, seed=2, size=64)
    store.j3d[:] = np.nan  # any read of a label would poison the windows
    model = PoseModel(PoseConfig(image_size=64))
    x = predicted_windows(model, store, ["v0", "v1"], S, resolve_runtime("cpu", "fp32", "off"), "25d", stride=2)
    assert x.shape == (2 * 4, S, 21, 3) and torch.isfinite(x).all()


def test_d_options_receptive_field_shapes_and_checkpoint(tmp_path):
    assert MotionConfig().receptive_field == 13 < 16
    assert MotionConfig(kernel=5).receptive_field == 25
    assert MotionConfig(pool="window").receptive_field == 16
    x = torch.randn(3, 16, 21, 3)
    for kw in ({}, {"motion_input": "pose_diff"}, {"pool": "window"}, {"motion_input": "pose_diff", "pool": "window"}):
        D = MotionDiscriminator(MotionConfig(channels=16, **kw))
        assert D(x).shape == (3,)
        path = save_discriminator(D, tmp_path / "d.pt", representation="25d")
        D2, extra = load_discriminator(path)
        assert extra == {"representation": "25d"} and torch.equal(D2(x), D.eval()(x))
    # pose_diff: a constant window and a moving one with the same mean differ only through motion
    D = MotionDiscriminator(MotionConfig(channels=16, motion_input="pose_diff", diff_scale=10.0))
    assert D.encoder.in_channels == 126


def test_probe_d_reports_scores_and_sensitivity_of_a_saved_d(tmp_path):
    import json

    from handlib.analysis.probe_d import probe_motion, resolve_d

    D = MotionDiscriminator(MotionConfig(S=S, channels=8))
    path = save_discriminator(D, tmp_path / "D_final.pt", representation="25d", center=False)
    run = tmp_path / "runs" / "adv"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"d_checkpoint": path}))
    assert resolve_d("adv", results=str(tmp_path)) == Path(path) and resolve_d(path) == Path(path)
    with pytest.raises(FileNotFoundError, match="d_warm_start_checkpoint"):
        resolve_d("adv", "warm_start", results=str(tmp_path))
    mw = _motion()
    D2, extra = load_discriminator(path)
    res = probe_motion(D2, [mw.j3d[:12], mw.j3d[12:24]], [mw.K[0]] * 2, extra["representation"], stride=2)
    assert res["n_windows"] == 2 * 5 and res["scores"]["n"] == 10
    assert set(res["sensitivity"]) >= {"jitter_2", "shuffle"} and res["sensitivity"]["shuffle"]["n"] == 10
