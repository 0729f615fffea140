"""The motion discriminator D, its input encoder and its augmentation (handlib.models.motion)."""
import pytest
import torch

from handlib.config import ConfigError
from handlib.models import count_parameters
from handlib.models.motion import (
    MotionConfig,
    MotionDiscriminator,
    augment_windows,
    encode_motion,
    encode_real,
)
from handlib.skeleton import bone_lengths
from tests.helpers import camera, random_hand


def windows(B: int = 3, S: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, 21, 3) mm float64 windows (a random hand drifting and wiggling) and (B, S, 3, 3) K."""
    g = torch.Generator().manual_seed(seed)
    hand = random_hand(B, g)[:, None]  # (B, 1, 21, 3)
    drift = torch.cumsum(torch.randn(B, S, 1, 3, generator=g, dtype=torch.float64) * 4.0, 1)
    wiggle = torch.randn(B, S, 21, 3, generator=g, dtype=torch.float64) * 2.0
    K = camera(B * S).reshape(B, S, 3, 3)
    return hand + drift + wiggle, K


def small(**kw) -> MotionConfig:
    return MotionConfig.from_params({"channels": 16, **kw})


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_validation():
    cfg = MotionConfig()
    assert (cfg.S, cfg.depth, cfg.representation, cfg.spectral_norm, cfg.augment) == (16, 2, "25d", False, True)
    assert MotionConfig.stage == "motion_model"
    with pytest.raises(ConfigError, match="kernel"):
        MotionConfig(kernel=4)
    with pytest.raises(ConfigError, match="representation"):
        MotionConfig(representation="2d")
    with pytest.raises(ConfigError, match="S"):
        MotionConfig(S=0)
    with pytest.raises(ConfigError, match="unknown"):
        MotionConfig.from_params({"sequence_length": 16})


# ----------------------------------------------------------------------------- D
@pytest.mark.parametrize("S,depth", [(1, 2), (16, 2), (32, 2), (64, 2), (16, 1), (16, 4), (16, 8), (1, 8), (64, 8)])
def test_output_shape_sequence_length_and_depth(S, depth):
    D = MotionDiscriminator(small(S=S, depth=depth))
    j3d, K = windows(5, S)
    out = D(encode_real(j3d, K, "25d"))
    assert out.shape == (5,) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("sn,rep,kernel", [(False, "25d", 3), (True, "25d", 3), (False, "3d", 3), (True, "3d", 3),
                                           (True, "25d", 1), (False, "3d", 5)])
def test_output_shape_spectral_norm_representation_kernel(sn, rep, kernel):
    D = MotionDiscriminator(small(spectral_norm=sn, representation=rep, kernel=kernel))
    j3d, K = windows(4, 16)
    out = D(encode_real(j3d, K, rep))
    assert out.shape == (4,)
    out.sum().backward()  # gradients flow through every (parametrised) layer
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    names = [n for n, _ in D.named_parameters()]
    assert any("parametrizations" in n for n in names) == sn


def test_wrong_input_shape_raises():
    D = MotionDiscriminator(small(S=16))
    with pytest.raises(ValueError, match=r"\(B, 16, 21, 3\)"):
        D(torch.zeros(2, 8, 21, 3))
    with pytest.raises(ValueError):
        D(torch.zeros(16, 21, 3))


def test_scores_are_raw_no_sigmoid():
    D = MotionDiscriminator(small())
    with torch.no_grad():
        for p in D.parameters():
            p.zero_()
        D.head.bias.fill_(3.7)
        assert torch.allclose(D(torch.randn(2, 16, 21, 3)), torch.full((2,), 3.7))
        D.head.bias.fill_(-2.0)
        assert torch.allclose(D(torch.randn(2, 16, 21, 3)), torch.full((2,), -2.0))


def test_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    D = MotionDiscriminator(small())
    x = encode_real(*windows(4, 16), "25d")
    ref = D(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = D(x.bfloat16())
        enc = encode_real(*windows(4, 16), "25d")
    assert out.dtype == torch.float32 and enc.dtype == torch.float32
    torch.testing.assert_close(enc, x, rtol=0, atol=0)
    torch.testing.assert_close(out, D(x.bfloat16().float()), rtol=0, atol=0)
    assert (out - ref).abs().max() < 0.05  # only the bf16 rounding of the input differs


def test_parameter_count_formula():
    C, k = 32, 3
    for depth in (1, 2, 4, 8):
        for sn in (False, True):
            D = MotionDiscriminator(MotionConfig(channels=C, depth=depth, kernel=k, spectral_norm=sn))
            expected = (63 * C * k + C) + depth * 2 * (C * C * k + C) + (C * (C // 2) * k + C // 2) + (C // 2 + 1)
            assert count_parameters(D) == expected


# ----------------------------------------------------------------------------- encoder
def prediction_path(j3d: torch.Tensor, K: torch.Tensor, rep: str) -> torch.Tensor:
    """The ground truth given to ``encode_motion`` as M would give its prediction, each quantity
    computed here from first principles (not through encode_real's helpers)."""
    uvw = torch.einsum("bsij,bsnj->bsni", K, j3d)
    j2d = uvw[..., :2] / uvw[..., 2:]
    z_rel = j3d[..., 2] - j3d[..., :1, 2]
    C = (j3d[..., 9, :] - j3d[..., 0, :]).norm(dim=-1).mean(-1)  # (B,) wrist -> middle MCP
    return encode_motion(j2d, z_rel, K, C, rep, z_root=j3d[..., 0, 2])


@pytest.mark.parametrize("rep", ["25d", "3d"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_real_and_predicted_paths_give_the_same_tensor(rep, dtype):
    j3d, K = windows(4, 16, seed=1)
    j3d, K = j3d.to(dtype), K.to(dtype)
    real, pred = encode_real(j3d, K, rep), prediction_path(j3d, K, rep)
    assert real.shape == (4, 16, 21, 3) and real.dtype == torch.float32 == pred.dtype
    torch.testing.assert_close(pred, real, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rep", ["25d", "3d"])
def test_encoding_is_what_the_docstring_says(rep):
    j3d, K = windows(3, 8, seed=2)
    C = (j3d[..., 9, :] - j3d[..., 0, :]).norm(dim=-1).mean(-1)[:, None, None, None]  # (B, 1, 1, 1)
    x = encode_real(j3d, K, rep).double()
    if rep == "3d":
        expected = (j3d - j3d[..., :1, :]) / C
    else:
        expected = torch.cat([j3d[..., :2] / j3d[..., 2:], (j3d[..., 2:] - j3d[..., :1, 2:]) / C], -1)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rep", ["25d", "3d"])
def test_encoding_ignores_hand_size_and_crop(rep):
    j3d, K = windows(3, 8, seed=3)
    x = encode_real(j3d, K, rep)
    # a bigger hand at a proportionally larger distance (a scaling about the camera centre)
    torch.testing.assert_close(encode_real(1.25 * j3d, K, rep), x, rtol=1e-5, atol=1e-6)
    # another crop / camera: different K, same 3D motion
    K2 = K.clone()
    K2[..., 0, 0] *= 1.7
    K2[..., 1, 1] *= 1.7
    K2[..., :2, 2] -= 40.0
    torch.testing.assert_close(encode_real(j3d, K2, rep), x, rtol=1e-5, atol=1e-6)


def test_bone_length_per_window_or_per_frame_and_3d_needs_root():
    j3d, K = windows(2, 4, seed=4)
    uvw = torch.einsum("bsij,bsnj->bsni", K, j3d)
    j2d, z_rel = uvw[..., :2] / uvw[..., 2:], j3d[..., 2] - j3d[..., :1, 2]
    per_window = encode_motion(j2d, z_rel, K, torch.tensor([80.0, 90.0]), "25d")
    per_frame = encode_motion(j2d, z_rel, K, torch.tensor([[80.0] * 4, [90.0] * 4]), "25d")
    torch.testing.assert_close(per_window, per_frame)
    torch.testing.assert_close(per_window[1, ..., 2], (z_rel[1] / 90.0).float())
    with pytest.raises(ValueError, match="z_root"):
        encode_motion(j2d, z_rel, K, 80.0, "3d")
    with pytest.raises(ValueError, match="representation"):
        encode_motion(j2d, z_rel, K, 80.0, "2d")


# ----------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("rep", ["25d", "3d"])
def test_augmentation_same_for_identical_inputs(rep):
    x = encode_real(*windows(6, 16, seed=5), rep)
    a = augment_windows(x.clone(), torch.Generator().manual_seed(7))
    b = augment_windows(x.clone(), torch.Generator().manual_seed(7))
    c = augment_windows(x.clone(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    torch.testing.assert_close(augment_windows(x, torch.Generator().manual_seed(7), max_deg=0.0), x)


@pytest.mark.parametrize("rep", ["25d", "3d"])
def test_augmentation_is_rigid_per_window(rep):
    x = encode_real(*windows(6, 16, seed=6), rep).double()
    y = augment_windows(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y[..., 2], x[..., 2], rtol=0, atol=0)  # channel 2 untouched
    # every joint's inter-frame displacement keeps its magnitude (speeds kept) ...
    torch.testing.assert_close(torch.diff(y, dim=1).norm(dim=-1), torch.diff(x, dim=1).norm(dim=-1))
    # ... and so does every distance between two joints of one frame (bone lengths in 3D)
    torch.testing.assert_close(bone_lengths(y), bone_lengths(x))
    # frame 0's root is the centre of the rotation
    torch.testing.assert_close(y[:, 0, 0], x[:, 0, 0])
    # one angle per window: the rotation of frame 0 says where every other frame goes
    dx0, dy0 = x[:, 0, 5, :2] - x[:, 0, 0, :2], y[:, 0, 5, :2] - y[:, 0, 0, :2]
    ang = torch.atan2(dy0[:, 1], dy0[:, 0]) - torch.atan2(dx0[:, 1], dx0[:, 0])  # (B,)
    c, s = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
    rel = x[..., :2] - x[:, :1, :1, :2]
    expected = torch.stack([c * rel[..., 0] - s * rel[..., 1], s * rel[..., 0] + c * rel[..., 1]], -1)
    torch.testing.assert_close(y[..., :2] - y[:, :1, :1, :2], expected)


def test_augmentation_angles_span_the_range():
    x = torch.zeros(2000, 1, 21, 3)
    x[:, 0, 1, 0] = 1.0  # joint 1 on the x axis, root at the origin
    y = augment_windows(x, torch.Generator().manual_seed(1), max_deg=90.0)
    ang = torch.rad2deg(torch.atan2(y[:, 0, 1, 1], y[:, 0, 1, 0]))
    assert ang.min() > -90.0 and ang.max() < 90.0 and ang.min() < -85 and ang.max() > 85
    assert abs(float(ang.mean())) < 5.0
