"""D's probe on validation windows: AUC definition, keys and ranges, modes restored, determinism."""
import math

import numpy as np
import pytest
import torch

from handlib.analysis.d_probe import _auc, d_probe, probe_windows
from handlib.models.motion import MotionConfig, MotionDiscriminator
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train.loop import resolve_runtime
from tests.helpers import random_hand, two_video_store

SIZE, S = 64, 4


def _store(T=14):
    return two_video_store(("v0", "v1"), T, seed=1, size=SIZE)


def test_auc_is_the_mann_whitney_probability():
    assert _auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert _auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert _auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert _auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5
    assert math.isnan(_auc(np.array([]), np.array([1.0])))


def test_probe_windows_are_non_overlapping_and_capped():
    store = _store()
    motion = [random_hand(9, torch.Generator().manual_seed(i)).float().numpy() for i in range(2)]
    w = probe_windows(store, ["v0", "v1"], (motion, [store.K[0]] * 2), S, max_frames=3 * S)
    starts = w.video.starts[w.video_idx]
    assert len(w.video_idx) == 3 and len(w.video) == 2 * (14 // S)
    assert np.all(np.diff(np.sort(starts)) >= S)
    assert w.real["j3d"].shape == (2 * (9 // S), S, 21, 3)


def test_d_probe_reports_accuracy_auc_and_rank_correlation_and_restores_modes():
    torch.manual_seed(0)
    store = _store()
    motion = [random_hand(12, torch.Generator().manual_seed(i)).float().numpy() for i in range(3)]
    w = probe_windows(store, ["v0", "v1"], (motion, [store.K[0]] * 3), S)
    model = PoseModel(PoseConfig(image_size=SIZE)).train()
    D = MotionDiscriminator(MotionConfig(S=S, channels=16)).train()
    rt = resolve_runtime("cpu", "fp32", "off")
    a = d_probe(model, D, w, rt, "25d", batch_windows=2)
    assert model.training and D.training
    assert a["n_windows"] == len(w.video_idx) == 6
    assert 0 <= a["d_acc"] <= 1 and 0 <= a["d_auc"] <= 1
    assert -1 <= a["d_spearman_abs"] <= 1 and -1 <= a["d_spearman_rr"] <= 1
    assert -1 <= a["d_spearman_vel"] <= 1
    assert set(a) == {"n_windows", "d_score_pred", "d_score_real", "d_auc", "d_acc", "d_spearman_abs",
                      "d_spearman_rr", "d_spearman_vel"}
    assert d_probe(model, D, w, rt, "25d", batch_windows=4) == a  # deterministic, batch-independent



def test_probe_windows_are_encoded_with_the_scale_m_ran_with():
    """channel 2 of "25d" is M's own normalised depth (z_rel / C with the C M was run with), as in
    the windows D trains on, whatever the ground-truth scale is."""
    from handlib.analysis.d_probe import predict_probe
    from handlib.skeleton import ref_bone_length

    torch.manual_seed(0)
    store = _store()
    w = probe_windows(store, ["v0"], ([], []), S)
    model = PoseModel(PoseConfig(image_size=SIZE)).eval()
    rt = resolve_runtime("cpu", "fp32", "off")
    pred = predict_probe(model, w, rt, "25d", batch_windows=8)
    b = w.video.__getitems__(w.video_idx)
    rows = b["start"].numpy()[:, None] + np.arange(S)
    C = ref_bone_length(torch.from_numpy(store.j3d[rows.ravel()]).float())
    with torch.no_grad():
        out = model(b["images"].flatten(0, 1), b["K"].flatten(0, 1), C)
    z_norm = (out.z_rel / C[:, None]).unflatten(0, rows.shape)
    assert torch.allclose(pred["x"][..., 2], z_norm, atol=1e-5)
    assert pred["x"].shape == (len(w.video_idx), S, 21, 3) and pred["err_abs"].shape == (len(w.video_idx),)


def test_window_motion_error_is_the_displacement_error_of_root_relative_joints():
    """err_vel: mean |predicted - true frame-to-frame displacement| of root-relative joints (mm)."""
    from handlib.analysis import d_probe as P

    torch.manual_seed(0)
    store = _store()
    w = probe_windows(store, ["v0"], ([], []), S)
    model = PoseModel(PoseConfig(image_size=SIZE)).eval()
    rt = resolve_runtime("cpu", "fp32", "off")
    pred = P.predict_probe(model, w, rt, "25d", batch_windows=8)
    b = w.video.__getitems__(w.video_idx)
    rows = b["start"].numpy()[:, None] + np.arange(S)
    gt = torch.from_numpy(store.j3d[rows.ravel()]).float()
    with torch.no_grad():
        from handlib.skeleton import ref_bone_length
        out = model(b["images"].flatten(0, 1), b["K"].flatten(0, 1), ref_bone_length(gt))
    rel = (out.j3d - out.j3d[:, :1]) - (gt - gt[:, :1])  # the root is joint 0
    want = rel.unflatten(0, rows.shape).diff(dim=1).norm(dim=-1).mean((1, 2))
    assert torch.allclose(pred["err_vel"], want, atol=1e-3)


def test_spearman_ci_brackets_rho_and_sees_a_monotone_score():
    from handlib.train.d_correlation import spearman_ci

    rng = np.random.default_rng(0)
    err = rng.uniform(10, 60, 200)
    perfect = spearman_ci(-err, err, n_boot=200)
    assert all(v == pytest.approx(-1.0) for v in perfect.values())  # every worse window called less real
    noisy = spearman_ci(-err + rng.normal(0, 15, 200), err, n_boot=500)
    assert noisy["lo"] <= noisy["rho"] <= noisy["hi"] < 0 and noisy["rho"] > -1
    blind = spearman_ci(rng.normal(size=200), err, n_boot=500)
    assert blind["lo"] < 0 < blind["hi"]  # a score blind to the error: the interval holds 0
    with pytest.raises(ValueError, match=">= 3"):
        spearman_ci([1.0, 2.0], [1.0, 2.0])


def test_paired_validation_interval_cancels_sequence_difficulty():
    """Two models 2 mm apart on every frame of sequences whose difficulty varies by +-10 mm: each
    model's own interval is wide and they overlap, the paired interval of the difference is
    narrow and excludes 0; two identical models give a difference of exactly 0."""
    from handlib.train.val_paired import paired_sequence_ci

    rng = np.random.default_rng(0)
    seqs = np.repeat(np.arange(14).astype(str), 50)
    hard = rng.normal(0, 10, 14)[np.repeat(np.arange(14), 50)]
    b = 30 + hard + rng.normal(0, 3, len(seqs))
    a = b - 2.0 + rng.normal(0, 0.5, len(seqs))
    r = paired_sequence_ci(a, b, seqs, n_boot=500)
    assert r["a"]["hi"] > r["b"]["lo"]  # unpaired: the intervals overlap
    assert r["diff"]["hi"] - r["diff"]["lo"] < 0.5 * (r["a"]["hi"] - r["a"]["lo"])
    assert r["diff"]["excludes_zero"] and r["diff"]["mean"] == pytest.approx(-2.0, abs=0.1)
    same = paired_sequence_ci(b, b, seqs, n_boot=100)
    assert same["diff"]["mean"] == 0.0 and not same["diff"]["excludes_zero"]
    with pytest.raises(ValueError, match="frames"):
        paired_sequence_ci(a, b[:-1], seqs)
