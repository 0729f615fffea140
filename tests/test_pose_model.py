import pytest
import torch

from handlib.config import ConfigError
from handlib.geometry import from_25d, project, to_25d
from handlib.models.pose import ZCF_CLAMP, PoseConfig, PoseModel, soft_argmax_25d
from handlib.skeleton import REF_BONE
from tests.helpers import camera, random_hand


def _inputs(n=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = camera(n, f=60.0, c=size / 2).float()
    return torch.rand(n, 3, size, size, generator=g), K


def _ref_bone(j3d):
    return (j3d[:, REF_BONE[0]] - j3d[:, REF_BONE[1]]).norm(dim=-1)


@pytest.mark.parametrize("head", ["heatmap", "regression"])
def test_output_shapes_and_units(head):
    torch.manual_seed(0)
    m = PoseModel(PoseConfig(image_size=64, head=head)).eval()
    x, K = _inputs()
    C = torch.tensor([80.0, 90.0, 100.0])
    with torch.no_grad():
        out = m(x, K, C)
    assert out.j2d.shape == (3, 21, 2) and out.z_rel.shape == (3, 21)
    assert out.z_root.shape == (3,) and out.j3d.shape == (3, 21, 3)
    assert torch.all(out.z_rel[:, 0] == 0)  # root-relative by construction
    # Eq. 3 consistency: j3d projects back onto j2d and its depths are z_rel + z_root
    assert torch.allclose(project(out.j3d, K), out.j2d, atol=1e-3)
    assert torch.allclose(out.j3d[..., 2], out.z_rel + out.z_root[:, None], atol=1e-3)
    assert torch.all(out.z_root > 0)
    # z_rel and z_root are predicted in units of the bone length: doubling C doubles them (mm)
    with torch.no_grad():
        out2 = m(x, K, 2 * C)
    assert torch.allclose(out2.z_rel, 2 * out.z_rel, rtol=1e-4, atol=1e-4)
    assert torch.allclose(out2.z_root, 2 * out.z_root, rtol=1e-4)
    assert torch.allclose(out2.j2d, out.j2d)


def test_prior_scale_used_without_bone_length():
    torch.manual_seed(0)
    m = PoseModel(PoseConfig(image_size=64)).eval()
    m.bone_prior.fill_(77.0)
    x, K = _inputs()
    with torch.no_grad():
        a, b = m(x, K, None), m(x, K, torch.full((3,), 77.0))
    assert torch.allclose(a.j3d, b.j3d)


def test_3d_recovery_from_ground_truth_25d():
    g = torch.Generator().manual_seed(1)
    j3d = random_hand(16, g, depth=(150.0, 350.0)).float()
    K = camera(16).float()
    C = _ref_bone(j3d)
    ratio = j3d[:, 0, 2] / C
    assert ratio.min() > ZCF_CLAMP[0] and ratio.max() < ZCF_CLAMP[1]  # inside the MLP's input range
    j2d, z_rel = to_25d(j3d, K)
    m = PoseModel(PoseConfig(image_size=64)).eval()
    with torch.no_grad():
        z_root = m.root_depth(j2d, z_rel / C[:, None], K) * C  # closed form + zero correction
    assert torch.allclose(z_root, j3d[:, 0, 2], rtol=1e-4)
    rec = from_25d(j2d, z_rel, z_root, K)
    assert (rec - j3d).abs().max() < 0.2  # mm, fp32


def test_refiner_starts_at_zero_correction_and_is_trainable():
    m = PoseModel(PoseConfig(image_size=64)).train()
    assert torch.all(m.refiner.net[-1].weight == 0)
    x, K = _inputs(4)
    out = m(x, K, torch.full((4,), 90.0))
    out.z_root.sum().backward()
    assert m.refiner.net[-1].weight.grad.abs().sum() > 0


def test_soft_argmax_peak_location():
    logits = torch.full((1, 21, 8, 8), -1e4)
    logits[0, :, 2, 5] = 0.0  # row 2, column 5
    depth = torch.zeros(1, 21, 8, 8)
    depth[0, :, 2, 5] = 0.3
    uv, z = soft_argmax_25d(logits, depth)
    assert torch.allclose(uv[0, 0], torch.tensor([5.5 / 8, 2.5 / 8]))
    assert torch.allclose(z, torch.full((1, 21), 0.3))


@pytest.mark.parametrize("bad,field", [({"image_size": 65}, "image_size"), ({"image_size": 512}, "image_size"),
                                       ({"head": "mlp"}, "head"), ({"scale_source": "x"}, "scale_source")])
def test_bad_config_names_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        PoseConfig.from_params(bad)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("stride", [4, 8, 16])
def test_heatmap_shapes_at_every_stride(size, stride):
    m = PoseModel(PoseConfig(image_size=size, head_stride=stride)).eval()
    x, K = _inputs(2, size)
    with torch.no_grad():
        logits, depth = m.heatmaps(x)
        out = m(x, K, torch.full((2,), 90.0))
    assert logits.shape == depth.shape == (2, 21, size // stride, size // stride)
    assert logits.dtype == torch.float32
    assert out.j2d.shape == (2, 21, 2) and out.j3d.shape == (2, 21, 3)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_soft_argmax_lands_on_a_synthetic_peak_at_every_stride(stride, monkeypatch):
    size = 64
    n = size // stride
    m = PoseModel(PoseConfig(image_size=size, head_stride=stride)).eval()
    x, K = _inputs(1, size)
    rows, cols = torch.arange(21) % n, (torch.arange(21) * 3 + 1) % n  # a different cell per joint
    logits = torch.full((1, 21, n, n), -1e4)
    logits[0, torch.arange(21), rows, cols] = 0.0
    monkeypatch.setattr(m, "heatmaps", lambda images: (logits, torch.zeros_like(logits)))
    with torch.no_grad():
        out = m(x, K, torch.full((1,), 90.0))
    centre = torch.stack([(cols + 0.5) * stride, (rows + 0.5) * stride], -1).float()  # (21, 2) px
    assert torch.allclose(out.j2d[0], centre, atol=1e-4)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_gradients_reach_the_backbone_through_every_level(stride):
    torch.manual_seed(0)
    m = PoseModel(PoseConfig(image_size=64, head_stride=stride)).train()
    x, K = _inputs(4)
    out = m(x, K, torch.full((4,), 90.0))
    (out.j2d.sum() + out.z_rel.sum()).backward()
    for name, p in [("conv1", m.stem[0].weight), ("layer1", m.stem[4][0].conv1.weight),
                    ("layer4", m.layer4[-1].conv2.weight), ("lat3", m.lat3.weight),
                    *[(f"lats.{i}", lat.weight) for i, lat in enumerate(m.lats)]]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(m.lats) == {16: 0, 8: 1, 4: 2}[stride]


def test_stride_16_is_the_first_studys_head():
    """Same modules and state-dict keys as the original stride-16 head: its checkpoints load."""
    keys = set(PoseModel(PoseConfig(image_size=64, head_stride=16)).state_dict())
    assert not any(k.startswith(("lats.", "smooths.")) for k in keys)
    assert {"lat4.weight", "lat3.weight", "fuse.2.weight", "out.weight", "stem.4.0.conv1.weight"} <= keys
    fine = set(PoseModel(PoseConfig(image_size=64, head_stride=4)).state_dict())
    assert keys < fine


def test_bad_head_stride_names_field():
    with pytest.raises(ConfigError, match="head_stride"):
        PoseConfig.from_params({"head_stride": 2})
