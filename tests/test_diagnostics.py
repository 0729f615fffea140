"""Diagnostics of predicted motion and D's sensitivity (handlib.analysis.diagnostics)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from handlib.analysis.diagnostics import (
    angle_violations,
    bone_length_variation,
    discriminator_auc,
    dof_angles,
    jitter,
    motion_diagnostics,
    perturb_windows,
    roc_auc,
    sequences_of,
)
from handlib.data.datasets import MotionWindows
from handlib.data.handsim import anatomy, load_handsim
from handlib.losses import lsgan_d_loss
from handlib.models.motion import MotionConfig, MotionDiscriminator, augment_windows, encode_real
from handlib.skeleton import BONES, bone_lengths
from tests.helpers import random_hand, rotation


@pytest.fixture(scope="session")
def hs(tmp_path_factory):
    return load_handsim(preset="smoke", cache_root=tmp_path_factory.mktemp("handsim"), progress=False)


def make_pred(gt: np.ndarray, pred: np.ndarray, seq: list, frame: list, order=None) -> tuple[dict, pd.DataFrame]:
    """A ``predict``-like dict over a small store whose rows are listed in ``order``."""
    meta = pd.DataFrame({"sequence": seq, "frame": frame, "action": "a"})
    rows = np.arange(len(meta)) if order is None else np.asarray(order)
    return ({"pred3d": torch.as_tensor(pred[rows]), "gt3d": torch.as_tensor(gt[rows]),
             "row": torch.as_tensor(rows)}, meta)


def still_hand(T: int, seed: int = 0) -> np.ndarray:
    return np.repeat(random_hand(1, torch.Generator().manual_seed(seed)).numpy(), T, axis=0)  # (T, 21, 3)


# ----------------------------------------------------------------------------- runs, jitter, bones
def test_sequences_of_sorts_and_cuts_at_gaps():
    seq = ["b"] * 3 + ["a"] * 6
    frame = [2, 0, 1, 0, 1, 2, 10, 11, 12]
    order = [4, 8, 0, 6, 1, 3, 7, 2, 5]  # pred in a scrambled row order
    pred, meta = make_pred(np.zeros((9, 21, 3)), np.zeros((9, 21, 3)), seq, frame, order)
    runs = sequences_of(pred, meta)
    rows = [pred["row"].numpy()[r].tolist() for r in runs]
    assert rows == [[3, 4, 5], [6, 7, 8], [1, 2, 0]]


def test_constant_sequence_has_zero_acceleration_and_known_gt_acceleration():
    T = 10
    gt = still_hand(T)
    t = np.arange(T, dtype=np.float64)
    gt = gt + (1.5 * t**2)[:, None, None] * np.array([1.0, 0.0, 0.0])  # 2nd difference: 3 mm/frame^2
    pred, meta = make_pred(gt, still_hand(T), ["s"] * T, list(range(T)))
    j = jitter(pred, meta)
    assert j["accel_pred"] == 0.0
    assert j["accel_gt"] == pytest.approx(3.0)
    assert j["jitter_ratio"] == 0.0


def test_frames_across_a_gap_are_not_differenced():
    T = 8
    gt = still_hand(T)
    gt[4:] += 50.0  # the hand is elsewhere after the gap in frame numbers
    frame = [0, 1, 2, 3, 20, 21, 22, 23]
    pred, meta = make_pred(gt, gt.copy(), ["s"] * T, frame)
    d = motion_diagnostics(pred, meta)
    assert d["accel_pred"] == 0.0 and d["accel_gt"] == 0.0 and math.isnan(d["jitter_ratio"])
    pred, meta = make_pred(gt, gt.copy(), ["s"] * T, list(range(T)))  # the same frames without the gap
    assert jitter(pred, meta)["accel_gt"] > 1.0


def test_bone_length_variation_of_one_scaled_bone():
    T = 6
    gt = still_hand(T)
    pred = gt.copy()
    p, c = BONES[7]  # index DIP -> TIP: the tip has no children
    assert c == 8
    s = np.where(np.arange(T) % 2 == 0, 1.0, 2.0)  # lengths L, 2L, L, 2L, ...: std/mean = 0.5 / 1.5
    pred[:, c] = pred[:, p] + s[:, None] * (gt[:, c] - gt[:, p])
    pred_d, meta = make_pred(gt, pred, ["s"] * T, list(range(T)))
    bv = bone_length_variation(pred_d, meta)
    assert bv["bone_cv_gt"] == pytest.approx(0.0, abs=1e-12)
    assert bv["bone_cv_pred"] == pytest.approx((1 / 3) / 20)


def test_motion_diagnostics_keys(hs):
    rows = np.arange(len(hs.store.meta))
    gt = hs.store.j3d[rows]
    noisy = gt + np.random.default_rng(0).normal(0, 5.0, gt.shape).astype(np.float32)
    d = motion_diagnostics({"pred3d": torch.from_numpy(noisy), "gt3d": torch.from_numpy(gt),
                            "row": torch.from_numpy(rows)}, hs.store.meta)
    assert set(d) == {"accel_pred", "accel_gt", "jitter_ratio", "bone_cv_pred", "bone_cv_gt",
                      "angle_viol_pred", "angle_viol_gt"}
    assert all(isinstance(v, float) for v in d.values())
    assert d["jitter_ratio"] > 1.5  # 5 mm of noise per joint: much more acceleration than the truth
    assert d["bone_cv_pred"] > 5 * d["bone_cv_gt"]
    assert d["angle_viol_gt"] == 0.0 and d["angle_viol_pred"] > 0.5


# ----------------------------------------------------------------------------- joint angles
def test_joint_angles_invert_handsim_kinematics():
    rng = np.random.default_rng(0)
    subj = anatomy.make_subject("S", rng)
    ang = anatomy.clip_angles(rng.uniform(anatomy.LIMITS[..., 0], anatomy.LIMITS[..., 1], (300, 5, 4)))
    j = anatomy.forward_kinematics(ang, subj) @ rotation(torch.tensor([0.3, -1.0, 0.5]), 2.0).numpy().T + 400.0
    est = dof_angles(j.astype(np.float32))
    ok = ~np.isnan(est)
    assert ok[:, :, [0, 2, 3]].all() and ok.mean() > 0.98
    np.testing.assert_allclose(est[ok], ang[ok], atol=0.01)
    assert angle_violations(j) == 0.0


def test_ground_truth_handsim_frames_violate_nothing(hs):
    assert angle_violations(hs.store.j3d) == 0.0
    assert angle_violations(np.concatenate(hs.motion[0])) == 0.0


def hand_in_camera(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One FK hand (21, 3) in the hand frame and the camera rotation it is seen under."""
    subj = anatomy.make_subject("S", np.random.default_rng(1))
    R = rotation(torch.tensor([1.0, 0.2, -0.4]), 0.7).numpy()
    return anatomy.forward_kinematics(angles, subj), R


def bend_back(h: np.ndarray, joint: int, deg: float) -> np.ndarray:
    """Bend the index finger at ``joint`` (6 = PIP, 7 = DIP) by ``deg`` towards the back of the hand (+b),
    for a hand whose index finger lies flat in a plane parallel to the palm."""
    out = h.copy()
    e = (h[joint] - h[joint - 1]) / np.linalg.norm(h[joint] - h[joint - 1])
    d = math.cos(math.radians(deg)) * e + math.sin(math.radians(deg)) * np.array([0.0, 0.0, 1.0])
    for k in range(joint + 1, 9):
        out[k] = out[k - 1] + np.linalg.norm(h[k] - h[k - 1]) * d
    return out


def test_hyperextended_pip_and_overabducted_mcp_are_violations():
    ang = np.zeros((5, 4))
    h, R = hand_in_camera(ang)
    to_cam = lambda x: x @ R.T + np.array([0.0, 0.0, 400.0])
    assert angle_violations(to_cam(h)[None]) == 0.0
    # index PIP bent 30 deg backwards (towards the back of the hand, +b): the limit is 0
    bent = bend_back(h, 6, 30.0)
    a = dof_angles(to_cam(bent)[None])[0]
    assert a[1, 2] == pytest.approx(-30.0, abs=0.01) and a[1, 3] == pytest.approx(0.0, abs=0.01)
    assert angle_violations(to_cam(bent)[None]) == 1.0
    # index finger turned 40 deg radially about its MCP in the palm plane (limit 20) or -40 (limit -15)
    for deg, expected in ((40.0, 40.0), (-40.0, -40.0), (10.0, 10.0)):
        Rz = rotation(torch.tensor([0.0, 0.0, 1.0]), math.radians(deg)).numpy()
        ab = h.copy()
        ab[6:9] = (h[6:9] - h[5]) @ Rz.T + h[5]
        a = dof_angles(to_cam(ab)[None])[0]
        assert a[1, 1] == pytest.approx(expected, abs=0.01)
        assert angle_violations(to_cam(ab)[None]) == (0.0 if deg == 10.0 else 1.0)


def test_violation_fraction_counts_frames():
    h, R = hand_in_camera(np.zeros((5, 4)))
    j = np.repeat(h[None], 4, axis=0)
    j[1] = bend_back(h, 7, 60.0)  # a DIP bent 60 deg backwards: only frame 1
    j[3] = bend_back(h, 7, 0.5)  # within the tolerance
    assert dof_angles(j)[3, 1, 3] == pytest.approx(-0.5, abs=1e-6)
    assert angle_violations(j @ R.T + 300.0) == 0.25


# ----------------------------------------------------------------------------- perturbations
def windows(hs, S: int = 16, seqs=slice(None)):
    ds = MotionWindows(hs.motion[0][seqs], hs.motion[1][seqs], S=S)
    w = ds.__getitems__(list(range(len(ds))))
    return w["j3d"], w["K"]


def test_perturbations(hs):
    j3d, _ = windows(hs)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(perturb_windows(j3d, "none", 5.0, g()), j3d)
    jit = perturb_windows(j3d, "jitter", 20.0, g())
    assert 19.0 < float((jit - j3d).std()) < 21.0
    assert torch.equal(jit, perturb_windows(j3d, "jitter", 20.0, g()))  # the generator decides
    bone = perturb_windows(j3d, "bone", 10.0, g())
    ratio = bone_lengths(bone) / bone_lengths(j3d)  # (B, S, 20)
    assert 0.09 < float(ratio.std()) < 0.11 and abs(float(ratio.mean()) - 1) < 0.01
    # directions kept along the chain: each bone is parallel to the original
    child = [c for _, c in BONES]
    parent = [p for p, _ in BONES]
    d0, d1 = j3d[..., child, :] - j3d[..., parent, :], bone[..., child, :] - bone[..., parent, :]
    cos = (d0 * d1).sum(-1) / (d0.norm(dim=-1) * d1.norm(dim=-1))
    assert float((cos.abs() - 1).abs().max()) < 1e-4
    assert torch.equal(bone[..., 0, :], j3d[..., 0, :])
    sh = perturb_windows(j3d, "shuffle", 0.0, g())
    assert torch.equal(torch.sort(sh[..., 0, 0], 1).values, torch.sort(j3d[..., 0, 0], 1).values)
    assert not torch.equal(sh, j3d)
    with pytest.raises(ValueError, match="kind"):
        perturb_windows(j3d, "noise", 1.0)


def test_roc_auc_hand_set_scores():
    assert roc_auc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert roc_auc([0.0], [1.0, 2.0]) == 0.0
    assert roc_auc([1.0, 3.0], [2.0, 2.0]) == 0.5
    assert roc_auc([1.0, 1.0, 2.0], [1.0]) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


@pytest.mark.parametrize("rep", ["25d", "3d"])
def test_discriminator_auc_none_is_chance_and_strong_jitter_is_found(hs, rep):
    """A small D, trained with the LSGAN loss on clean (target 1) vs 20 mm-jittered (target 0) windows of
    one motion subject, ranks held-out windows of the other subject. It needs ~100-150 Adam steps: for the
    first ~60 it sits on a plateau (loss ~0.45, AUC ~0.7), being nearly linear in its input."""
    torch.manual_seed(0)
    train_j3d, train_K = windows(hs, seqs=slice(0, 3))  # motion subject M1
    test_j3d, test_K = windows(hs, seqs=slice(3, 6))  # motion subject M2, held out
    D = MotionDiscriminator(MotionConfig(channels=64, depth=1, representation=rep))
    g = torch.Generator().manual_seed(0)
    assert discriminator_auc(D, test_j3d, test_K, rep, "none", 0.0, g) == 0.5
    untrained = discriminator_auc(D, test_j3d, test_K, rep, "jitter", 20.0, torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(D.parameters(), lr=1e-3)
    for _ in range(150):
        idx = torch.randint(len(train_j3d), (32,), generator=g)
        real = train_j3d[idx]
        fake = perturb_windows(real, "jitter", 20.0, g)
        x_real = augment_windows(encode_real(real, train_K[idx], rep), g)
        x_fake = augment_windows(encode_real(fake, train_K[idx], rep), g)
        loss = lsgan_d_loss(D(x_real), D(x_fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert D.training
    assert discriminator_auc(D, test_j3d, test_K, rep, "none", 0.0, g) == 0.5
    trained = discriminator_auc(D, test_j3d, test_K, rep, "jitter", 20.0, torch.Generator().manual_seed(1))
    assert trained > 0.9 and trained > untrained + 0.1
    assert D.training  # the mode is restored
    # D scores clean held-out windows above 0.5 and jittered ones below: raw LSGAN scores, no sigmoid
    with torch.no_grad():
        D.eval()
        clean = D(encode_real(test_j3d, test_K, rep))
        noisy = D(encode_real(perturb_windows(test_j3d, "jitter", 20.0, g), test_K, rep))
    assert float(clean.mean()) > 0.5 > float(noisy.mean())


def test_root_depth_error():
    import numpy as np

    from handlib.analysis.diagnostics import root_depth_error

    gt = np.zeros((4, 21, 3), np.float32)
    pred = gt.copy()
    pred[:, 0, 2] = [10, -10, 30, 50]
    r = root_depth_error({"pred3d": pred, "gt3d": gt})
    assert r == {"root_z_bias": 20.0, "root_z_abs": 25.0, "root_z_median_abs": 20.0}


def test_auc_series_keeps_the_window_count_apart():
    from handlib.analysis.diagnostics import auc_series

    s, n = auc_series({"jitter_2": 0.5, "shuffle_0": 1.0, "n_windows": 2})
    assert n == 2 and list(s.index) == ["jitter_2", "shuffle_0"] and s.name == "ROC AUC"
    assert auc_series({"bone_0.02": 0.7})[1] is None
