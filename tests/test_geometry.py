import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handlib import geometry as G
from handlib.skeleton import REF_BONE, bone_lengths
from tests.helpers import camera, random_hand


def _hands(seed, n=64):
    g = torch.Generator().manual_seed(seed)
    return random_hand(n, g), camera(n)


def test_project_known_value():
    K = torch.tensor([[500.0, 0, 100], [0, 400.0, 50], [0, 0, 1]])
    p = torch.tensor([[10.0, -20.0, 200.0]])
    assert torch.allclose(G.project(p, K), torch.tensor([[125.0, 10.0]]))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_project_unproject_roundtrip(seed):
    j3d, K = _hands(seed)
    back = G.unproject(G.project(j3d, K), j3d[..., 2], K)
    assert (back - j3d).abs().max() < 1e-3


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_25d_roundtrip(seed):
    j3d, K = _hands(seed)
    j2d, z_rel = G.to_25d(j3d, K)
    assert torch.all(z_rel[..., 0] == 0)
    back = G.from_25d(j2d, z_rel, j3d[..., 0, 2], K)
    assert (back - j3d).abs().max() < 1e-3


def test_any_leading_dims():
    j3d, K = _hands(0, n=6)
    j3d, K = j3d.reshape(2, 3, 21, 3), K.reshape(2, 3, 3, 3)
    j2d, z_rel = G.to_25d(j3d, K)
    assert j2d.shape == (2, 3, 21, 2) and z_rel.shape == (2, 3, 21)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_root_depth_exact_on_clean_data(seed):
    j3d, K = _hands(seed)
    n, m = REF_BONE
    # a valid hand: the palm's reference bone (70-95 mm) tilts at most 45 deg out of the image plane
    g = torch.Generator().manual_seed(seed)
    phi = torch.rand(len(j3d), generator=g, dtype=torch.float64) * 2 * math.pi
    tilt = (torch.rand(len(j3d), generator=g, dtype=torch.float64) - 0.5) * math.pi / 2
    d = torch.stack([torch.cos(phi) * torch.cos(tilt), torch.sin(phi) * torch.cos(tilt), torch.sin(tilt)], -1)
    C = 70 + 25 * torch.rand(len(j3d), generator=g, dtype=torch.float64)
    j3d[:, m] = j3d[:, n] + d * C[:, None]
    j2d, z_rel = G.to_25d(j3d, K)
    z, valid = G.root_depth(j2d, z_rel, K, C)
    assert valid.all()
    assert (z - j3d[:, 0, 2]).abs().max() < 1e-2


def test_root_depth_other_bone_and_scalar_length():
    j3d, K = _hands(1, n=8)
    j2d, z_rel = G.to_25d(j3d, K)
    C = float((j3d[0, 5] - j3d[0, 6]).norm())
    z, valid = G.root_depth(j2d[:1], z_rel[:1], K[:1], C, bone=(5, 6))
    assert valid.all() and abs(float(z[0]) - float(j3d[0, 0, 2])) < 1e-2


def test_root_depth_degenerate_bone_flagged():
    K = camera(1)
    j3d = random_hand(1, torch.Generator().manual_seed(3))
    # put the middle MCP on the same camera ray as the wrist: the bone is degenerate in 2D
    j3d[0, 9] = j3d[0, 0] * 1.1
    j2d, z_rel = G.to_25d(j3d, K)
    z, valid = G.root_depth(j2d, z_rel, K, (j3d[0, 9] - j3d[0, 0]).norm())
    assert not bool(valid[0])
    assert torch.isfinite(z).all()


def test_root_depth_larger_root_and_clamped_discriminant():
    j3d, K = _hands(4, n=16)
    j2d, z_rel = G.to_25d(j3d, K)
    # a bone far too short for the 2D evidence -> negative discriminant, flagged, finite
    z, valid = G.root_depth(j2d, z_rel, K, 1e-3)
    assert torch.isfinite(z).all() and not valid.any()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(-math.pi, math.pi))
def test_rotation_keeps_bones_and_displacements(seed, angle):
    g = torch.Generator().manual_seed(seed)
    seq = random_hand(1, g)[0] + torch.cumsum(torch.randn(16, 1, 3, generator=g, dtype=torch.float64), 0)
    rot = G.rotate_about_camera_z(seq, angle)
    assert torch.allclose(bone_lengths(rot), bone_lengths(seq), atol=1e-9)
    disp = lambda s: (s[1:] - s[:-1]).norm(dim=-1)
    assert torch.allclose(disp(rot), disp(seq), atol=1e-9)
    # the first frame's root is the fixed point; z unchanged
    assert torch.allclose(rot[0, 0], seq[0, 0]) and torch.equal(rot[..., 2], seq[..., 2])


def test_rotation_25d_input_and_batch():
    j3d, K = _hands(5, n=16)
    j2d, z_rel = G.to_25d(j3d, K)
    seq25 = torch.cat([j2d, z_rel[..., None]], -1)  # (S, 21, 3) in (u, v, z_rel)
    rot = G.rotate_about_camera_z(seq25, math.pi / 2)
    # 90 degrees: (du, dv) -> (-dv, du) around the first root
    d0 = seq25[..., :2] - seq25[0, 0, :2]
    d1 = rot[..., :2] - seq25[0, 0, :2]
    assert torch.allclose(d1[..., 0], -d0[..., 1], atol=1e-9) and torch.allclose(d1[..., 1], d0[..., 0], atol=1e-9)
    batch = torch.stack([seq25, seq25])
    out = G.rotate_about_camera_z(batch, torch.tensor([0.0, math.pi / 2], dtype=torch.float64))
    assert torch.allclose(out[0], seq25) and torch.allclose(out[1], rot)


def test_crop_intrinsics_consistent_with_pixels():
    j3d, K = _hands(6, n=4)
    box = torch.tensor([[40.0, 30.0, 200.0, 200.0]], dtype=torch.float64).expand(4, 4)
    Kc = G.crop_intrinsics(K, box, 64)
    uv, uvc = G.project(j3d, K), G.project(j3d, Kc)
    expect = (uv - box[:, None, :2]) * 64 / 200.0
    assert torch.allclose(uvc, expect, atol=1e-9)


def test_random_angles_range():
    a = G.random_angles(1000, 30.0, torch.Generator().manual_seed(0))
    assert a.abs().max() <= math.radians(30) + 1e-7 and a.std() > 0.2
