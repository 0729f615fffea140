"""HandSim egocentric motion: head motion and arm transport (ego.py) and their wiring."""
import numpy as np
import pytest

from handlib.analysis.motion_stats import handsim_wrist_speeds, wrist_speed_quantiles
from handlib.data.handsim import ego
from handlib.data.handsim.anatomy import make_subject
from handlib.data.handsim.camera import FRAME_H, FRAME_W
from handlib.data.handsim.dataset import VERSION, HandSimConfig
from handlib.data.handsim.motion import ACTIONS, FPS, subject_style
from handlib.data.handsim.render import render_sequence
from handlib.data.handsim.scene import build_sequence, make_canon, make_look
from handlib.geometry import project_np


def _scene(action, mode, ego_motion, seed=0, n=90):
    rng = np.random.default_rng(seed)
    canon = make_canon(np.random.default_rng(100))
    subj = make_subject("S1", np.random.default_rng(101))
    return build_sequence(action, subj, subject_style(np.random.default_rng(102)), n, mode, 64, rng, canon, 1.0,
                          ego_motion=ego_motion)


def _pairwise(j):  # (T, 21, 3) -> (T, 21, 21): invariant to the camera's pose
    return np.linalg.norm(j[:, :, None] - j[:, None], axis=-1)


@pytest.mark.parametrize("action", ["pour", "wave"])
def test_camera_motion_changes_the_view_not_the_hand(action):
    still, moving = _scene(action, "ego", 0.0), _scene(action, "ego", 1.0)
    assert "bg_H" not in still and "bg_H" in moving
    q = moving["bg_H"][:, :, 2]  # where the background's pixel (0, 0) goes in each frame
    q = q[:, :2] / q[:, 2:]
    assert np.linalg.norm(q[0]) < 5.0 and np.linalg.norm(q - q[0], axis=-1).max() > 10.0  # the head turns
    if not ACTIONS[action].transport:  # same hand, same articulation: only the camera moved
        np.testing.assert_allclose(_pairwise(moving["j3d"]), _pairwise(still["j3d"]), atol=1e-2)
    assert np.abs(moving["j3d"] - still["j3d"]).max() > 20.0  # but it is seen from elsewhere


def test_third_person_is_unaffected():
    a, b = _scene("pour", "third", 0.0), _scene("pour", "third", 1.0)
    np.testing.assert_array_equal(a["j3d"], b["j3d"])
    np.testing.assert_array_equal(a["box"], b["box"])


def test_arm_transport_reaches_are_10_to_30_cm():
    rng = np.random.default_rng(3)
    K = np.array([[550.0, 0, 320], [0, 550, 240], [0, 0, 1]])
    pos0 = np.array([0.0, 40.0, 420.0])
    ext = []
    for _ in range(20):
        d = ego.arm_transport(rng, 10 * FPS, pos0, K)
        ext.append(np.linalg.norm(d, axis=-1).max())
        p = pos0 + d
        uv = p[:, :2] / p[:, 2:] * 550 + [320, 240]
        assert (p[:, 2] > 200).all() and (uv[:, 0] > 0).all() and (uv[:, 0] < FRAME_W).all()
        assert (uv[:, 1] > 0).all() and (uv[:, 1] < FRAME_H).all()
    assert max(ext) <= ego.REACH_MM[1] + 1e-6 and np.median(ext) > 0.8 * ego.REACH_MM[0]


def test_hand_is_followed_by_the_gaze():
    inside = []
    for seed in range(6):
        sc = _scene("power_grasp", "ego", 1.0, seed=seed, n=150)
        uv = project_np(sc["j3d"].astype(np.float64), sc["K"]).mean(1)  # hand centre, px
        inside.append(((uv[:, 0] > 0) & (uv[:, 0] < FRAME_W) & (uv[:, 1] > 0) & (uv[:, 1] < FRAME_H)).mean())
    assert min(inside) == 1.0


def test_ego_scene_renders_with_a_moving_background():
    sc = _scene("wave", "ego", 1.0, n=30)
    rng = np.random.default_rng(0)
    look, _ = make_look(rng, make_canon(np.random.default_rng(100)), 1.0, sc["subject"], 8.0, 1.0)
    img = render_sequence(sc, look, 64, np.random.default_rng(1))
    assert img.shape == (30, 64, 64, 3) and img.dtype == np.uint8 and img.std() > 5


def test_wrist_speed_quantiles_known_values():
    t = np.arange(11, dtype=np.float64)[:, None, None]
    seq = np.zeros((1, 21, 3)) + t * np.array([3.0, 0.0, 4.0])  # 5 mm/frame
    q = wrist_speed_quantiles([seq, seq[:5] * 2])  # 10 frames at 5, 4 at 10 mm/frame
    assert q["frames"] == 14 and q["p50"] == pytest.approx(5.0) and q["p99"] == pytest.approx(10.0)
    assert wrist_speed_quantiles([seq], fps=60.0)["p90"] == pytest.approx(10.0)


def test_ego_motion_speeds_up_the_egocentric_wrist_only():
    df = handsim_wrist_speeds("smoke").set_index(["camera", "ego_motion"])
    for p in ("p50", "p90"):
        assert df.loc[("ego", 1.0), p] > 1.8 * df.loc[("ego", 0.0), p]
        assert df.loc[("third", 1.0), p] == df.loc[("third", 0.0), p]


def test_ego_motion_is_part_of_the_cache_key():
    a = HandSimConfig.from_params({"preset": "smoke"})
    b = HandSimConfig.from_params({"preset": "smoke", "ego_motion": 0.0})
    assert a.ego_motion == 1.0 and a.hash() != b.hash() and VERSION == "hs2"
