"""HandSim anatomy and motion: joint limits, kinematics, minimum-jerk transitions."""
import numpy as np
import pytest

from handlib.data.handsim.anatomy import DIP_COUPLING, LIMITS, forward_kinematics, make_subject
from handlib.data.handsim.motion import (
    ACTION_NAMES,
    FPS,
    KEY_POSES,
    interpolate_keyframes,
    min_jerk,
    sample_action_track,
    subject_style,
)
from handlib.skeleton import BONES, bone_lengths


@pytest.mark.parametrize("action", ACTION_NAMES)
def test_angles_within_biomechanical_limits(action):
    rng = np.random.default_rng(1)
    for _ in range(3):
        tr = sample_action_track(action, rng, 150, subject_style(rng, 6.0), tremor_deg=2.0)
        a = tr["angles"]
        assert a.shape == (150, 5, 4)
        assert (a >= LIMITS[:, :, 0] - 1e-9).all() and (a <= LIMITS[:, :, 1] + 1e-9).all()
        np.testing.assert_allclose(a[:, 1:, 3], DIP_COUPLING * a[:, 1:, 2], atol=1e-9)


def test_bone_lengths_constant_over_a_sequence():
    rng = np.random.default_rng(2)
    subj = make_subject("S1", rng)
    tr = sample_action_track("counting", rng, 200, subject_style(rng))
    bl = bone_lengths(forward_kinematics(tr["angles"], subj))  # (T, 20)
    assert np.ptp(bl, axis=0).max() < 1e-9
    # and they are the subject's own lengths, within the anthropometric range
    assert 60 < bl[0, 8] < 110  # wrist -> middle MCP (REF_BONE), mm
    other = bone_lengths(forward_kinematics(tr["angles"][:1], make_subject("S2", rng)))
    assert np.abs(other[0] - bl[0]).max() > 0.5


def test_kinematics_is_a_right_hand_that_curls_to_the_palm():
    subj = make_subject("S1", np.random.default_rng(0), size_range=(1.0, 1.0), bone_jitter=0.0)
    open_, fist = forward_kinematics(KEY_POSES["open"], subj), forward_kinematics(KEY_POSES["fist"], subj)
    # hand frame (d, r, b): thumb radial (+r), pinky ulnar (-r), fingers distal (+d)
    assert open_[4, 1] > 20 and open_[20, 1] < -20
    assert (open_[[8, 12, 16, 20], 0] > open_[[5, 9, 13, 17], 0] + 40).all()
    # flexion brings the finger tips to the palm side (b < 0) and back towards the wrist
    assert (fist[[8, 12, 16, 20], 2] < -15).all()
    assert (fist[[8, 12, 16, 20], 0] < open_[[8, 12, 16, 20], 0] - 40).all()
    # chirality, free of any frame: for a right hand (index MCP - wrist) x (pinky MCP - wrist)
    # points out of the palm, where a fist's finger tips are; a mirrored (left) hand fails this
    for pose in (open_, fist):
        n = np.cross(pose[5] - pose[0], pose[17] - pose[0])
        assert n @ (fist[[8, 12, 16, 20]].mean(0) - fist[0]) > 0


def test_min_jerk_profile_and_continuous_velocity():
    u = np.linspace(0, 1, 1001)
    s = min_jerk(u)
    assert s[0] == 0 and abs(s[-1] - 1) < 1e-12 and (np.diff(s) >= 0).all()
    rng = np.random.default_rng(3)
    fps = 1000  # fine sampling so finite differences approximate the derivative
    times = np.array([0.0, 0.5, 1.1, 1.6])
    holds = np.array([0.2, 0.7, 1.3, 2.5])
    vals = rng.normal(0, 40, (4, 5))
    x = interpolate_keyframes(times, vals, holds, 2000, fps)
    v = np.diff(x, axis=0) * fps
    vmax = np.abs(v).max()
    assert vmax > 10  # it moves
    jumps = np.abs(np.diff(v, axis=0)).max()
    assert jumps < 0.05 * vmax  # no velocity step anywhere (a linear ramp would jump by ~vmax)
    for k, t in enumerate(times):  # keyframes are reached, at rest
        i = int(round(t * fps))
        np.testing.assert_allclose(x[i], vals[k], atol=1e-6)
        assert np.abs(v[max(i - 1, 0)]).max() < 1e-3 * vmax + 1e-6


def test_velocities_are_hand_like():
    rng = np.random.default_rng(4)
    subj = make_subject("S1", rng)
    speeds = []
    for a in ACTION_NAMES:
        tr = sample_action_track(a, rng, 240, subject_style(rng))
        j = forward_kinematics(tr["angles"], subj)
        speeds.append(np.linalg.norm(np.diff(j, axis=0), axis=-1).ravel() * FPS)  # mm/s, relative to the wrist
    sp = np.concatenate(speeds)
    assert np.percentile(sp, 99) < 2000  # fingertips rarely exceed ~1-2 m/s
    assert np.percentile(sp, 90) > 30  # but the fingers do move
    # smooth: relative joint speed changes little between frames except in fast actions
    assert np.median(sp) < 300
    assert all(b[0] >= 0 for b in BONES)
