import pytest
import torch

from handlib import losses as L
from handlib.models.pose import PoseOutput


def test_l1_2d_normalised_by_image_size():
    gt = torch.zeros(2, 21, 2)
    pred = gt + 6.4
    assert L.loss_2d(gt, gt, 64) == 0
    assert torch.isclose(L.loss_2d(pred, gt, 64), torch.tensor(0.1))
    assert torch.isclose(L.loss_2d(pred, gt, 128), torch.tensor(0.05))


def test_depth_losses_scale_normalised():
    gt = torch.zeros(2, 21)
    pred = gt.clone()
    pred[:, 1:] = 9.0  # mm
    C = torch.tensor([90.0, 45.0])
    expect = (20 / 21) * (0.1 + 0.2) / 2
    assert torch.isclose(L.loss_zrel(pred, gt, C), torch.tensor(expect))
    assert torch.isclose(L.loss_root(torch.tensor([100.0, 110.0]), torch.tensor([91.0, 110.0]), C),
                         torch.tensor(0.05))


def test_supervised_loss_zero_on_ground_truth_and_lambda():
    j3d = torch.rand(2, 21, 3) * 50 + torch.tensor([0.0, 0.0, 400.0])
    batch = {"j2d": torch.rand(2, 21, 2) * 64, "z_rel": j3d[..., 2] - j3d[:, :1, 2], "j3d": j3d}
    out = PoseOutput(batch["j2d"], batch["z_rel"], j3d[:, 0, 2], j3d)
    C = torch.full((2,), 80.0)
    total, parts = L.supervised_loss(out, batch, C, 64)
    assert total == 0 and set(parts) == {"l2d", "lz", "lroot"}
    out = out._replace(z_rel=out.z_rel + 8.0)
    t1, p1 = L.supervised_loss(out, batch, C, 64, lambda_z=1.0)
    t3, _ = L.supervised_loss(out, batch, C, 64, lambda_z=3.0)
    assert torch.isclose(p1["lz"], torch.tensor(0.1)) and torch.isclose(t3, 3 * t1)


def test_lsgan():
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert L.lsgan_d_loss(ones, zeros) == 0 and L.lsgan_d_loss(zeros, ones) == 2
    assert L.lsgan_g_loss(ones) == 0 and L.lsgan_g_loss(zeros) == 1
    assert torch.isclose(L.lsgan_g_loss(torch.full((3,), 0.5)), torch.tensor(0.25))


def test_smoothness():
    t = torch.arange(6.0)[None, :, None, None]
    linear = t.expand(2, 6, 21, 3)  # constant velocity
    assert L.smoothness_loss(linear, order=2) == 0
    assert torch.isclose(L.smoothness_loss(linear, order=1), torch.tensor(3.0))
    assert L.smoothness_loss(torch.ones(1, 4, 21, 3)) == 0
    with pytest.raises(ValueError, match="order"):
        L.smoothness_loss(linear, order=3)
