"""Losses. Supervised (Eq. 2 + root depth) for M; LSGAN (Eq. 4, 5) and a temporal
smoothness prior for the adversarial stage. All computed in fp32.

Units: 2D losses on coordinates normalised by the crop size (j2d / image_size, so a
value of 0.01 is 1 % of the crop); depth losses on scale-normalised depths (mm / C,
C = the reference-bone length of each hand), i.e. the units M predicts in.
"""
from __future__ import annotations

import torch
from torch import Tensor


# ---------------------------------------------------------------- supervised (M)
def loss_2d(pred_j2d: Tensor, gt_j2d: Tensor, image_size: int) -> Tensor:
    """L1 on 2D keypoints in normalised crop coordinates: (B,21,2) px -> scalar."""
    return (pred_j2d.float() - gt_j2d.float()).abs().mean() / float(image_size)


def loss_zrel(pred_z_rel: Tensor, gt_z_rel: Tensor, bone_length: Tensor) -> Tensor:
    """L1 on root-relative depth, scale-normalised: (B,21) mm, (B,) mm -> scalar."""
    return ((pred_z_rel.float() - gt_z_rel.float()).abs() / bone_length.float()[:, None]).mean()


def loss_root(pred_z_root: Tensor, gt_z_root: Tensor, bone_length: Tensor) -> Tensor:
    """L1 on the refined absolute root depth, scale-normalised: (B,), (B,), (B,) mm -> scalar."""
    return ((pred_z_root.float() - gt_z_root.float()).abs() / bone_length.float()).mean()


def supervised_loss(out, batch: dict[str, Tensor], bone_length: Tensor, image_size: int,
                    lambda_z: float = 1.0, lambda_root: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """L_2D + lambda_z L_z + lambda_root L_root for a ``PoseOutput`` and a labelled batch."""
    parts = {
        "l2d": loss_2d(out.j2d, batch["j2d"], image_size),
        "lz": loss_zrel(out.z_rel, batch["z_rel"], bone_length),
        "lroot": loss_root(out.z_root, batch["j3d"][:, 0, 2], bone_length),
    }
    total = parts["l2d"] + lambda_z * parts["lz"] + lambda_root * parts["lroot"]
    return total, parts


# ---------------------------------------------------------------- adversarial (D and M)
def lsgan_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Eq. 4: E[(1 - D(real))^2] + E[D(fake)^2]; scores (B,)."""
    return ((1.0 - d_real.float()) ** 2).mean() + (d_fake.float() ** 2).mean()


def lsgan_g_loss(d_fake: Tensor) -> Tensor:
    """Eq. 5: E[(1 - D(M(I)))^2]; M's adversarial loss on its predicted windows."""
    return ((1.0 - d_fake.float()) ** 2).mean()


def smoothness_loss(seq: Tensor, order: int = 1) -> Tensor:
    """Temporal prior baseline: mean squared finite difference of ``order`` along time.
    seq (B, S, 21, C) -> scalar; order 1 penalises velocity, 2 acceleration."""
    if order not in (1, 2):
        raise ValueError(f"smoothness_loss: order must be 1 or 2, got {order}")
    d = torch.diff(seq.float(), n=order, dim=1)
    return (d**2).sum(-1).mean()
