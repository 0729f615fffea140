import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handlib import metrics as M
from tests.helpers import random_hand, rotation


def test_mpjpe_hand_computed():
    gt = torch.zeros(1, 21, 3)
    pred = gt.clone()
    pred[0, :, 0] = 3.0
    pred[0, :, 1] = 4.0  # every joint 5 mm off
    assert float(M.mpjpe(pred, gt)) == pytest.approx(5.0)
    assert float(M.rr_mpjpe(pred, gt)) == pytest.approx(0.0)  # a pure translation
    pred[0, 3] += torch.tensor([0.0, 0.0, 21.0])  # one joint a further 21 mm off in z
    e = M.joint_errors(pred, gt)[0]
    assert float(e[3]) == pytest.approx(math.sqrt(25 + 441))
    assert float(M.mpjpe(pred, gt)) == pytest.approx((20 * 5 + math.sqrt(466)) / 21)
    # root-relative: only joint 3 differs by 21 mm
    assert float(M.rr_mpjpe(pred, gt)) == pytest.approx(21 / 21)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.3, 3.0), st.floats(-math.pi, math.pi))
def test_pa_zero_for_similarity(seed, scale, angle):
    g = torch.Generator().manual_seed(seed)
    gt = random_hand(4, g)
    R = rotation(torch.randn(3, generator=g, dtype=torch.float64), angle)
    t = torch.randn(3, generator=g, dtype=torch.float64) * 100
    pred = scale * gt @ R.T + t
    assert float(M.pa_mpjpe(pred, gt).max()) < 1e-6
    assert float(M.mpjpe(M.align_procrustes(pred, gt), gt).max()) < 1e-6


def test_pa_known_value_and_no_reflection():
    # pred = gt with one joint moved: PA can only reduce the error, never below zero,
    # and a mirrored hand must not be aligned perfectly (rotations only).
    gt = random_hand(1, torch.Generator().manual_seed(1))
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(M.pa_mpjpe(mirrored, gt)) > 1.0
    # Hand-computed: a planar "hand" where the optimal similarity is the identity.
    gt2 = torch.zeros(1, 21, 3, dtype=torch.float64)
    gt2[0, :, 0] = torch.arange(21, dtype=torch.float64) * 10
    gt2[0, :, 1] = torch.tensor([(-1.0) ** i * 10 for i in range(21)])
    pred2 = gt2.clone()
    pred2[0, :, 2] = torch.tensor([(-1.0) ** (i // 2) * 2.0 for i in range(21)])  # +-2 mm out of plane
    # z-offsets are orthogonal to the plane and zero-mean-ish: PA error equals the plain error (2 mm)
    # up to the small residual rotation the pattern allows.
    assert float(M.mpjpe(pred2, gt2)) == pytest.approx(2.0)
    assert float(M.pa_mpjpe(pred2, gt2)) <= 2.0 + 1e-9
    assert float(M.pa_mpjpe(pred2, gt2)) > 1.5


def test_align_sc_tr():
    gt = random_hand(3, torch.Generator().manual_seed(2))
    pred = gt * 1.7 + torch.tensor([5.0, -3.0, 40.0], dtype=torch.float64)
    assert float(M.st_mpjpe(pred, gt).max()) < 1e-9
    rotated = (gt - gt[:, :1]) @ rotation(torch.tensor([0.0, 0, 1.0], dtype=torch.float64), 0.5).T + gt[:, :1]
    assert float(M.st_mpjpe(rotated, gt).min()) > 1.0  # ST alignment does not undo rotation


def test_pck_auc():
    errors = torch.tensor([0.0, 10.0, 20.0, 60.0])
    curve = M.pck_curve(errors)
    assert curve[0] == pytest.approx(0.25) and curve[-1] == pytest.approx(0.75)
    assert M.auc(torch.ones(101)) == pytest.approx(1.0)
    assert M.auc(torch.zeros(101)) == pytest.approx(0.0)
    # errors uniform on [0, 50]: AUC of a linear ramp is 1/2
    ramp = M.pck_curve(torch.linspace(0, 50, 100_001))
    assert M.auc(ramp) == pytest.approx(0.5, abs=1e-3)


def test_epe2d_and_evaluate_keys():
    gt2 = torch.zeros(2, 21, 2)
    pred2 = gt2 + torch.tensor([3.0, 4.0])
    assert torch.allclose(M.epe_2d(pred2, gt2), torch.tensor([5.0, 5.0]))
    gt = random_hand(5, torch.Generator().manual_seed(3))
    out = M.evaluate(gt + 1.0, gt, pred2[:1].expand(5, 21, 2), gt2[:1].expand(5, 21, 2))
    assert set(out) == {"mpjpe_abs", "mpjpe_rr", "mpjpe_st", "mpjpe_pa", "auc_rr", "auc_pa", "epe_2d"}
    assert out["mpjpe_abs"] == pytest.approx(math.sqrt(3)) and out["mpjpe_rr"] == pytest.approx(0, abs=1e-9)
    assert out["auc_rr"] == pytest.approx(1.0, abs=0.01)
    table = M.per_frame_table(gt + 1.0, gt)
    assert all(v.shape == (5,) for v in table.values())


def _scipy_pa(pred, gt):
    """Reference: similarity alignment through scipy's orthogonal_procrustes (no det check),
    the building block of the FreiHAND / HO3D evaluation scripts."""
    from scipy.linalg import orthogonal_procrustes

    p, g = pred.numpy(), gt.numpy()
    P, G = p - p.mean(0), g - g.mean(0)
    R, s = orthogonal_procrustes(P, G)  # min ||P R - G||, R orthogonal (reflections allowed)
    aligned = P @ R * (s / (P**2).sum()) + g.mean(0)
    return float(np.linalg.norm(aligned - g, axis=-1).mean())


def test_pa_reflection_both_behaviours():
    g = torch.Generator().manual_seed(5)
    gt = random_hand(1, g)
    R = rotation(torch.tensor([0.3, -1.0, 0.4], dtype=torch.float64), 0.7)
    mirrored = 1.3 * (gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)) @ R.T + 20.0
    ours = float(M.pa_mpjpe(mirrored, gt))
    assert ours > 5.0  # rotations only: a mirrored hand keeps a hand-sized error
    assert float(M.pa_mpjpe(mirrored, gt, allow_reflection=True)) < 1e-6  # reflections allowed
    assert _scipy_pa(mirrored[0], gt[0]) < 1e-6
    noisy = gt + torch.randn(gt.shape, generator=g, dtype=torch.float64) * 5.0  # not mirrored
    for flag in (False, True):  # where the best map is a rotation, all three agree
        want = _scipy_pa(noisy[0], gt[0])
        assert float(M.pa_mpjpe(noisy, gt, allow_reflection=flag)) == pytest.approx(want, rel=1e-6)


def test_mean_pose_baseline_predicts_the_training_mean():
    g = torch.Generator().manual_seed(0)
    train3d = random_hand(50, g).double()
    train2d = torch.rand(50, 21, 2, generator=g, dtype=torch.float64) * 64
    p3, p2 = M.mean_pose(train3d, train2d)
    assert p3.shape == (21, 3) and p2.shape == (21, 2)
    test3d, test2d = random_hand(7, g).double(), torch.rand(7, 21, 2, generator=g, dtype=torch.float64) * 64
    res = M.mean_pose_baseline(train3d, train2d, test3d, test2d)
    assert res == M.evaluate(p3.expand(7, 21, 3), test3d, p2.expand(7, 21, 2), test2d)
    # the mean pose on its own training frames: no constant pose has a lower mean squared error
    own = M.mean_pose_baseline(train3d, train2d, train3d, train2d)
    shifted = M.evaluate(p3.expand(50, 21, 3) + 5.0, train3d)
    assert own["mpjpe_abs"] < shifted["mpjpe_abs"]


def test_group_bootstrap_ci_resamples_whole_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 100)
    level = rng.normal(0, 10, 6)[groups]  # per-sequence offsets dominate the spread
    v = torch.from_numpy(20 + level + rng.normal(0, 1, len(groups)))
    lo, hi = M.group_bootstrap_ci(v, groups, n_boot=2000, seed=0)
    assert lo < float(v.mean()) < hi
    # frames treated as independent would give a far narrower interval than whole sequences
    lo_f, hi_f = M.group_bootstrap_ci(v, np.arange(len(v)), n_boot=2000, seed=0)
    assert (hi_f - lo_f) < 0.3 * (hi - lo)
    assert M.group_bootstrap_ci(v, groups, seed=1) != (lo, hi)  # seeded
    assert M.group_bootstrap_ci(v, groups, seed=0) == (lo, hi)
    const = M.group_bootstrap_ci(torch.full((10,), 3.0), np.arange(10) % 2)
    assert const == pytest.approx((3.0, 3.0))
    with pytest.raises(ValueError, match="group labels"):
        M.group_bootstrap_ci(v, groups[:10])
