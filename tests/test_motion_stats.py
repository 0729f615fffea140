"""Motion statistics: known values on constructed sequences."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from handlib.analysis import motion_stats as M
from handlib.data.handsim.viz import bend_angles
from handlib.skeleton import BONES, PARENTS


def straight_hand() -> np.ndarray:
    """(21, 3) mm: every finger a straight line along +x from its own offset in y."""
    j = np.zeros((21, 3))
    for f in range(5):
        for k in range(4):
            j[1 + 4 * f + k] = [20.0 * (k + 1), 15.0 * (f - 2), 0.0]
    return j


def test_speed_and_acceleration_known_values():
    T = 10
    t = np.arange(T, dtype=np.float64)[:, None, None]
    seq = straight_hand()[None] + t * np.array([3.0, 4.0, 0.0])  # 5 mm/frame, constant
    np.testing.assert_allclose(M.speeds(seq), 5.0)
    np.testing.assert_allclose(M.accelerations(seq), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.speeds(seq, fps=60.0), 10.0)  # 60 fps data moves 2x per 30 fps frame
    quad = straight_hand()[None] + 0.5 * t**2 * np.array([0.0, 0.0, 2.0])  # accel 2 mm/frame^2
    np.testing.assert_allclose(M.accelerations(quad), 2.0)
    np.testing.assert_allclose(M.accelerations(quad, fps=15.0), 0.5)
    assert M.speeds(seq).shape == (9, 21) and M.accelerations(seq).shape == (8, 21)


def test_bone_cv_and_angles():
    rigid = straight_hand()[None] + np.arange(5)[:, None, None] * 2.0
    np.testing.assert_allclose(M.bone_length_cv(rigid), 0.0, atol=1e-12)
    stretched = rigid.copy()
    stretched[::2, 4] += [10.0, 0, 0]  # thumb tip bone alternates 20 / 30 mm
    cv = M.bone_length_cv(stretched)
    k = [i for i, (p, c) in enumerate(BONES) if c == 4][0]
    b = np.array([30.0, 20.0, 30.0, 20.0, 30.0])
    assert cv[k] == pytest.approx(b.std() / b.mean()) and np.delete(cv, k).max() < 1e-12
    ang0 = bend_angles(straight_hand()[None])[0]
    inner = [i for i, j in enumerate(M.ANGLE_JOINTS) if PARENTS[j] != 0]
    np.testing.assert_allclose(ang0[inner], 0.0, atol=1e-6)  # straight fingers
    # the wrist->MCP bone of the index finger comes in at atan(15/20) to the straight finger
    assert ang0[list(M.ANGLE_JOINTS).index(5)] == pytest.approx(np.degrees(np.arctan2(15, 20)))
    bent = straight_hand()
    bent[7] = bent[6] + [0.0, 0.0, 20.0]  # index PIP->DIP turns 90 deg
    bent[8] = bent[7] + [0.0, 0.0, 20.0]
    ang = bend_angles(bent[None])[0]
    names = [M.JOINT_NAMES[j] for j in M.ANGLE_JOINTS]
    assert ang[names.index("index_pip")] == pytest.approx(90.0)
    assert ang[names.index("index_dip")] == pytest.approx(0.0, abs=1e-6)
    assert len(M.ANGLE_JOINTS) == 14


def test_statistics_tables_and_wasserstein():
    rng = np.random.default_rng(0)
    base = straight_hand()
    slow = [base + np.cumsum(rng.normal(0, 1.0, (40, 21, 3)), 0) for _ in range(3)]
    fast = [base + np.cumsum(rng.normal(0, 3.0, (40, 21, 3)), 0) for _ in range(3)]
    a, b = M.motion_statistics("slow", slow), M.motion_statistics("fast", fast)
    assert a.n_sequences == 3 and a.n_frames == 120 and a.speed.shape == (117, 21)
    same = M.wasserstein_table([a, M.motion_statistics("slow2", slow)])
    assert (same["wasserstein"].abs() < 1e-12).all() and set(same["quantity"]) == set(M.QUANTITIES)
    w = M.wasserstein_table([a, b]).set_index("quantity")["wasserstein"]
    # speed of a 3-D Gaussian random walk ~ sigma * 1.596 (chi with 3 dof): difference ~ 2 * 1.596
    assert w["speed"] == pytest.approx(2 * 1.596, rel=0.1)
    shifted = M.MotionStats("s", 1, 3, a.speed + 7.0, a.accel, a.bone_cv, a.angle)
    assert M.wasserstein_table([a, shifted], ("speed",))["wasserstein"].iloc[0] == pytest.approx(7.0)
    tab = M.summary_table([a, b])
    assert list(tab["dataset"]) == ["slow", "fast"] and tab.loc[1, "speed_median"] > tab.loc[0, "speed_median"]
    with pytest.raises(ValueError, match="no sequence"):
        M.motion_statistics("empty", [base[None]])
    df = M.long_frame([a, b], "angle", max_values=50)
    assert isinstance(df, pd.DataFrame) and len(df) == 100 and set(df["dataset"]) == {"slow", "fast"}


def test_figures_written_atomically(tmp_path):
    rng = np.random.default_rng(1)
    seqs = [straight_hand() + np.cumsum(rng.normal(0, 1.0, (20, 21, 3)), 0) for _ in range(2)]
    st = [M.motion_statistics("x", seqs), M.motion_statistics("y", seqs[:1])]
    paths = M.write_results(st, M.plot_all(st, max_values=500), results=tmp_path)
    p, q = paths["distributions"], paths["per_joint"]
    assert p.stat().st_size > 1000 and q.exists()
    assert sorted(x.name for x in p.parent.iterdir()) == ["motion_distributions.png", "motion_per_joint.png"]
    assert paths["summary"].exists() and paths["wasserstein"].exists()


def test_dataset_motions_handsim_smoke():
    cfg = M.MotionStatsConfig.from_params({})
    motions = M.dataset_motions(cfg)
    assert [m[0] for m in motions] == ["handsim_video", "handsim_corpus"]
    for _name, seqs, fps in motions:
        assert fps > 0 and len(seqs) > 0 and all(s.ndim == 3 and s.shape[1:] == (21, 3) for s in seqs)
        assert all(np.isfinite(s).all() for s in seqs)
    stats = [M.motion_statistics(n, s, f) for n, s, f in motions]
    assert stats[0].n_frames > 100 and (stats[0].bone_cv < 1e-3).all()  # HandSim's skeleton is rigid
