"""D's paired sensitivity: a toy D that reacts to jitter scores high, one that ignores motion
scores 0.5; the record keys; new perturbations (reverse, warp)."""
import pytest
import torch
from torch import nn

from handlib.analysis.d_sensitivity import SENSITIVITY_CHECKS, discriminator_sensitivity, paired_stats
from handlib.analysis.diagnostics import perturb_windows
from handlib.models.motion import MotionConfig
from tests.helpers import camera, random_hand

S = 16


def smooth_windows(n: int = 200, seed: int = 0) -> dict[str, torch.Tensor]:
    """(n, S, 21, 3) mm hands moving smoothly (constant velocity + a slow sway), K (n, S, 3, 3)."""
    g = torch.Generator().manual_seed(seed)
    base = random_hand(n, g)  # (n, 21, 3)
    vel = torch.randn(n, 1, 1, 3, generator=g, dtype=torch.float64) * 2.0  # mm / frame
    t = torch.arange(S, dtype=torch.float64)[None, :, None, None]
    sway = 5.0 * torch.sin(t / S * 3.14)
    j3d = base[:, None] + vel * t + sway
    return {"j3d": j3d.float(), "K": camera(1).float().expand(n, S, 3, 3).clone()}


class ToyD(nn.Module):
    """Scores encoded windows (B, S, 21, 3) by a fixed function; one dummy parameter."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.w = kind, nn.Parameter(torch.zeros(()))
        self.cfg = MotionConfig(S=S)

    def forward(self, x):
        if self.kind == "jerk":  # reacts to motion: rough windows are less real
            return -(x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]).norm(dim=-1).mean((1, 2)) + self.w
        # the time-averaged pose: blind to motion. Rounded so that a reordered window scores
        # exactly the same: the sum's float order differs between CPUs, which would otherwise
        # turn ties into coin flips (0.48 on one machine).
        return (x.mean((1, 2, 3)) * 1e4).round() / 1e4 + self.w


def test_paired_share_is_high_for_a_d_that_reacts_to_jitter():
    w = smooth_windows()
    res = discriminator_sensitivity(ToyD("jerk"), w, "25d")
    assert set(res) == set(SENSITIVITY_CHECKS) == {"jitter_2", "jitter_5", "bone_2", "bone_5", "shuffle", "reverse"}
    for k in ("jitter_2", "jitter_5", "shuffle"):
        assert res[k]["paired"] > 0.95 and res[k]["drop"] > 0 and res[k]["n"] == 200, (k, res[k])
    assert res["jitter_5"]["drop"] > res["jitter_2"]["drop"]


def test_paired_share_is_half_for_a_d_blind_to_motion():
    D = ToyD("mean").train()
    res = discriminator_sensitivity(D, smooth_windows(), "25d")
    assert D.training  # mode restored
    assert res["shuffle"]["paired"] == pytest.approx(0.5, abs=0.02)  # permutation-invariant: ties (float noise)
    assert res["reverse"]["paired"] == pytest.approx(0.5, abs=0.02)
    assert abs(res["jitter_2"]["paired"] - 0.5) < 0.1 and abs(res["jitter_5"]["paired"] - 0.5) < 0.1


def test_paired_stats_by_hand_and_determinism():
    assert paired_stats(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 4.0])) == pytest.approx(
        {"paired": 0.5, "drop": 0.0, "n": 3})
    r = paired_stats(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0]))
    assert r["paired"] == 1.0 and r["drop"] == pytest.approx(1.0)
    w = smooth_windows(50)
    D = ToyD("jerk")
    assert discriminator_sensitivity(D, w) == discriminator_sensitivity(D, w)


def test_reverse_and_warp_keep_the_poses():
    w = smooth_windows(8)["j3d"].double()
    assert torch.equal(perturb_windows(w, "reverse"), w.flip(1))
    warped = perturb_windows(w, "warp", 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(warped[:, 0], w[:, 0]) and torch.allclose(warped[:, -1], w[:, -1])
    assert not torch.allclose(warped, w)
    # constant-velocity root: a warp keeps the path, so the root stays on the segment, in order
    root = smooth_windows(8)["j3d"].double()
    root = root - 5.0 * torch.sin(torch.arange(S, dtype=torch.float64) / S * 3.14)[None, :, None, None]
    wr = perturb_windows(root, "warp", 1.0, torch.Generator().manual_seed(1))
    d0 = (wr[:, :, 0] - root[:, :1, 0]).norm(dim=-1)  # distance from the start grows monotonically
    assert (d0.diff(dim=1) >= -1e-9).all()
