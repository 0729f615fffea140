"""BatchNorm phases. The paper pre-trains M twice: first with batch statistics, then with
BN in eval mode using the aggregate (running) statistics, which stay fixed from then on
(M diverges in the adversarial stage otherwise). Affine parameters keep training."""
from __future__ import annotations

from torch import nn

BN_PHASES = ("batch", "frozen")


def bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """Put every BN layer in eval mode (normalise with running statistics, never update
    them) while leaving its weight and bias trainable. Call after ``model.train()``,
    which would switch BN back to batch statistics."""
    for m in bn_modules(model):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(True)
    return model


def set_train_mode(model: nn.Module, bn_phase: str) -> nn.Module:
    """``model.train()`` then apply the BN phase: 'batch' (batch stats) or 'frozen'."""
    if bn_phase not in BN_PHASES:
        raise ValueError(f"bn_phase: {bn_phase!r} not in {BN_PHASES}")
    model.train()
    if bn_phase == "frozen":
        freeze_bn_stats(model)
    return model
