"""THE loop with two players: M (pose model) and D (motion discriminator), as the GAN stage uses it."""
import pytest
import torch
from torch import nn

from handlib.train.loop import LoopConfig, NonFiniteError, Runtime, load_checkpoint, optim_settings, stream_seed, train

S = 3  # window length


class _Windows(torch.utils.data.Dataset):
    """Random input windows (S, 4) with their indices."""

    def __init__(self, n=24, seed=0):
        self.x = torch.randn(n, S, 4, generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.x)

    def __getitems__(self, idx):
        return {"x": self.x[idx], "idx": torch.tensor(idx)}


class _GANTask:
    """Tiny M (linear + dropout, per frame) and D (linear on the flattened window), LSGAN
    losses; D is updated every 2nd step (left out of the losses otherwise); a task-owned
    generator draws the real windows and D's input noise (saved via state_dict)."""

    def __init__(self, seed=0, d_every=2, only_d=False, nan_at=None):
        torch.manual_seed(seed)
        self.M = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2))
        self.D = nn.Linear(S * 2, 1)
        self.modules = {"M": self.M, "D": self.D}
        self.optimised = {"M": list(self.M.parameters()), "D": list(self.D.parameters())}
        self.g = torch.Generator().manual_seed(seed + 1)
        self.d_every, self.only_d, self.nan_at = d_every, only_d, nan_at
        self.seen: list[list[int]] = []

    def train_mode(self):
        self.M.train()
        self.D.train()

    def state_dict(self):
        return {"g": self.g.get_state()}

    def load_state_dict(self, d):
        self.g.set_state(d["g"])

    def disc(self, w):  # (B, S, 2) -> (B,)
        return self.D((w + 0.05 * torch.randn(w.shape, generator=self.g)).flatten(1)).squeeze(1)

    def step(self, batch, step):
        b = batch["labelled"]
        self.seen.append(b["idx"].tolist())
        fake = self.M(b["x"])  # (B, S, 2)
        real = 0.5 * torch.randn(fake.shape, generator=self.g) + 1.0
        losses = {} if self.only_d else {"M": (self.disc(fake) - 1).pow(2).mean() + 0.1 * fake.pow(2).mean()}
        if step % self.d_every == self.d_every - 1:
            losses["D"] = (self.disc(real) - 1).pow(2).mean() + self.disc(fake.detach()).pow(2).mean()
            if step == self.nan_at:
                losses["D"] = losses["D"] * float("nan")
        return losses, {"fake_mean": float(fake.detach().mean())}


OPTIM = {"D": {"betas": (0.5, 0.999), "schedule": "constant", "lr_scale": 0.5, "weight_decay": 0.0}}


def _cfg(**kw):
    base = dict(steps=8, lr=1e-2, warmup_steps=2, ckpt_every=4, log_every=1, device="cpu",
                precision="fp32", channels_last="off", progress=False)
    return LoopConfig(**{**base, **kw})


def _strip(hist):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in hist]


def test_two_player_resume_is_exact(tmp_path):
    ds, cfg = _Windows(), _cfg()
    a = _GANTask()
    full = train(a, {"labelled": (ds, 4)}, cfg, tmp_path / "a", optim=OPTIM)

    def crash(step, row):
        if step == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(_GANTask(), {"labelled": (ds, 4)}, cfg, tmp_path / "b", on_step=crash, optim=OPTIM)
    st = load_checkpoint(tmp_path / "b" / "last.pt")
    assert st["step"] == 4 and "g" in st["task"]
    b = _GANTask(seed=123)  # other init and generator: overwritten by the checkpoint
    resumed = train(b, {"labelled": (ds, 4)}, cfg, tmp_path / "b", optim=OPTIM)
    assert _strip(full) == _strip(resumed)
    assert len({r["loss_M"] for r in full}) > 1
    for k in ("M", "D"):
        sa, sb = a.modules[k].state_dict(), b.modules[k].state_dict()
        assert all(torch.equal(sa[n], sb[n]) for n in sa)
    # D only every 2nd step: its losses and gradient norms are absent elsewhere
    assert [("loss_D" in r, "gradnorm_D" in r) for r in full] == [(s % 2 == 0,) * 2 for s in range(1, 9)]
    assert all("loss_M" in r for r in full)


def test_per_optimiser_settings_reach_adamw(tmp_path):
    hist = train(_GANTask(), {"labelled": (_Windows(), 4)}, _cfg(steps=4, weight_decay=0.01), tmp_path,
                 optim=OPTIM, lr_scale={"M": 2.0})
    groups = {k: o["param_groups"] for k, o in load_checkpoint(tmp_path / "last.pt")["optims"].items()}
    assert all(tuple(g["betas"]) == (0.5, 0.999) and g["weight_decay"] == 0.0 for g in groups["D"])
    assert all(tuple(g["betas"]) == (0.9, 0.999) and g["weight_decay"] == 0.01 for g in groups["M"])
    assert [r["lr_D"] for r in hist] == [5e-3] * 4  # constant: no warm-up, no decay
    assert [r["lr_M"] for r in hist] == [2 * r["lr"] for r in hist]  # follows the loop's schedule
    assert hist[0]["lr"] == pytest.approx(5e-3) and hist[1]["lr"] == pytest.approx(1e-2)
    assert groups["M"][0]["lr"] == hist[-1]["lr_M"]


def test_optim_settings_merge_and_validate():
    cfg = _cfg(weight_decay=0.01, grad_clip=2.0)
    s = optim_settings(["M", "D"], cfg, {"M": {"lr_scale": 3.0}, "D": {"grad_clip": 0.0}},
                       lr_scale={"M": 0.5, "D": 0.25})
    assert s["M"]["lr_scale"] == 3.0 and s["D"]["lr_scale"] == 0.25  # optim wins over lr_scale
    assert s["M"] == {"lr_scale": 3.0, "betas": (0.9, 0.999), "weight_decay": 0.01, "schedule": "loop",
                      "grad_clip": 2.0}
    assert s["D"]["grad_clip"] == 0.0
    with pytest.raises(ValueError, match="'X'"):
        optim_settings(["M"], cfg, {"X": {}})
    with pytest.raises(ValueError, match="'X'"):
        optim_settings(["M"], cfg, lr_scale={"X": 1.0})
    with pytest.raises(ValueError, match="momentum"):
        optim_settings(["M"], cfg, {"M": {"momentum": 0.9}})
    with pytest.raises(ValueError, match="schedule"):
        optim_settings(["M"], cfg, {"M": {"schedule": "cosine"}})


def test_players_do_not_touch_each_other(tmp_path):
    """A step without D leaves D's parameters (and the .grad M's backward put there) alone;
    a task that only trains D leaves M unchanged."""
    task = _GANTask(d_every=3)
    snaps = []

    def snap(step, row):
        snaps.append(({k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules.items()},
                      all(p.grad is not None for p in task.D.parameters())))
    snap(0, {})
    hist = train(task, {"labelled": (_Windows(), 4)}, _cfg(steps=6, weight_decay=0.1), tmp_path / "a",
                 optim=OPTIM, on_step=snap)
    for s in range(1, 7):
        (prev, _), (cur, d_has_grad) = snaps[s - 1], snaps[s]
        same = {k: all(torch.equal(a, b) for a, b in zip(prev[k], cur[k])) for k in prev}
        assert not same["M"]
        assert same["D"] == ("loss_D" not in hist[s - 1]) == (s % 3 != 0)
        assert d_has_grad  # M's backward fills D's .grad; nothing clears it when D is left out
    only_d = _GANTask(d_every=1, only_d=True)
    m0 = [p.detach().clone() for p in only_d.M.parameters()]
    d0 = [p.detach().clone() for p in only_d.D.parameters()]
    hist = train(only_d, {"labelled": (_Windows(), 4)}, _cfg(steps=3), tmp_path / "b", optim=OPTIM)
    assert all(torch.equal(a, b) for a, b in zip(m0, only_d.M.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(d0, only_d.D.parameters()))
    assert all("loss_M" not in r and "loss_D" in r for r in hist)


def test_nan_guard_names_the_step_for_d(tmp_path):
    with pytest.raises(NonFiniteError, match="'D'.*at step 4"):
        train(_GANTask(nan_at=3), {"labelled": (_Windows(), 4)}, _cfg(ckpt_every=1), tmp_path, optim=OPTIM)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3


def test_unknown_loss_name_raises(tmp_path):
    class T(_GANTask):
        def step(self, batch, step):
            return {"Z": self.M(batch["labelled"]["x"]).sum()}, {}
    with pytest.raises(ValueError, match="'Z'"):
        train(T(), {"labelled": (_Windows(), 4)}, _cfg(steps=1), tmp_path)


def test_stream_batches_keyed_by_name(tmp_path):
    assert stream_seed(0, "labelled") == stream_seed(0, "labelled") != stream_seed(0, "unlabelled")
    assert stream_seed(0, "labelled") != stream_seed(1, "labelled")
    alone, both = _GANTask(), _GANTask()
    train(alone, {"labelled": (_Windows(), 4)}, _cfg(steps=7), tmp_path / "a")
    train(both, {"unlabelled": (_Windows(n=30), 5), "labelled": (_Windows(), 4)}, _cfg(steps=7), tmp_path / "b")
    assert alone.seen == both.seen and len(alone.seen) == 7


def test_channels_last_windows():
    rt = Runtime(torch.device("cpu"), None, True)
    x = torch.randn(2, S, 3, 8, 6)
    y = rt.to({"images": x, "image": x[:, 0], "j": x})
    w, im = y["images"], y["image"]
    assert torch.equal(w, x) and w.shape == x.shape and torch.equal(im, x[:, 0])
    flat = w.flatten(0, 1)
    assert flat.data_ptr() == w.data_ptr() and flat.is_contiguous(memory_format=torch.channels_last)
    assert not flat.is_contiguous() and im.is_contiguous(memory_format=torch.channels_last)
    assert y["j"].is_contiguous()  # other keys untouched
    assert Runtime(torch.device("cpu"), None, False).images(x).is_contiguous()
