"""Hand pose model M (Sec. 3.1): ResNet-18 -> 2.5D (j2d, z_rel) -> refined root depth -> 3D.

Two 2.5D heads, chosen by ``PoseConfig.head``:

- ``"heatmap"``: latent 2.5D heatmaps (Iqbal et al. ECCV'18). A light top-down decoder (FPN /
  Simple-Baselines style) fuses layer4 (upsampled) with layer3 at stride 16, then, down to
  ``head_stride`` (16, 8 or 4), upsamples bilinearly, adds a 1x1 lateral projection of layer2
  (stride 8) and layer1 (stride 4) and smooths with a 3x3 conv; it outputs per joint a 2D
  heatmap logit map H_j and a depth map D_j at that stride. j2d = soft-argmax(H_j);
  z_rel_j = sum(softmax(H_j) * D_j). ``head_stride=16`` is the original head (same modules and
  state-dict keys: checkpoints of the committed first study load into it).
- ``"regression"``: global average pool -> linear -> 21 x (u, v, z).

Default: ``"heatmap"``. Measured on HandSim quick (Protocol 2, 100 % labels, 128 px, 250 steps
x 32, BN batch statistics, seed 0; an early development measurement): heatmap vs regression test errors
root-rel 42.5 vs 43.9 mm, PA 19.3 vs 20.8 mm, 2D 20.5 vs 23.0 px, val root-rel 34.8 vs 38.1 mm.
A small but consistent margin on every metric (one seed): the soft-argmax keeps the spatial
layout of the features (translation-equivariant 2D localisation, sub-cell precision) instead
of asking a pooled vector to encode absolute pixel positions; its decoder (stride 16, 128
channels) costs a few percent of the backbone's FLOPs.

z_rel is predicted scale-normalised (divided by the reference bone length C,
``skeleton.REF_BONE``) and multiplied by C at the model's edge. The root's z_rel is 0 by
construction. Root depth: closed form (``geometry.root_depth``, detached) + a refinement MLP
(PeCLR / Spurr et al. ECCV'20; inputs detached, so the root loss trains the MLP only: 21
normalised z_rel + 42 K^-1-normalised 2D coords + closed-form root depth / C = 64 inputs;
2 x (128, BN, LeakyReLU); 1 output, a correction in units of C, initialised at zero).
j3d from Eq. 3 (``geometry.from_25d``). Geometry runs in fp32.

Hand scale C at test time: the caller passes ``bone_length`` (ground truth, as most papers),
or None to use the bone-length prior ``model.bone_prior`` (a buffer; the pre-training stage
sets it to the mean training reference-bone length). Which one was used is a config field
recorded with every result (``PoseConfig.scale_source``).

The closed-form root has no exact solution for some 2.5D inputs (``geometry.root_depth``'s
``valid`` flag: degenerate reference bone or negative discriminant); it is then clamped like
any other value. Each forward keeps its flags in ``last_root_valid`` / ``last_root_clamped``
((B,) bool) and, in eval mode, adds them to ``root_counts()``; evaluation reports the count and
fraction of invalid solutions per split (``train.evaluate``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from handlib.config import ConfigError, StageConfig, param
from handlib.geometry import from_25d, normalize_points, root_depth
from handlib.skeleton import NUM_JOINTS, REF_BONE, ROOT

HEAD_STRIDE = 4  # the heatmap head's default output stride (see PoseConfig.head_stride)
ZCF_CLAMP = (1.0, 20.0)  # closed-form root depth / C fed on: hands 1-20 reference bones away (~0.1-2 m)


class PoseOutput(NamedTuple):
    """M's prediction. j2d (B,21,2) px of the input crop; z_rel (B,21) mm; z_root (B,) mm;
    j3d (B,21,3) mm camera frame."""

    j2d: Tensor
    z_rel: Tensor
    z_root: Tensor
    j3d: Tensor


@dataclass(frozen=True)
class PoseParams(StageConfig):
    """The pose model's parameters that a training stage exposes (declared once: ``PoseConfig``
    and ``PretrainConfig`` inherit them)."""
    head: str = param("heatmap", choices=("heatmap", "regression"))
    head_stride: int = param(HEAD_STRIDE, choices=(4, 8, 16),
                             help="heatmap stride: 16 = the first study's head (4 x 4 maps at 64 px)")
    refine: bool = param(True, help="refinement MLP on the closed-form root depth")
    scale_source: str = param("gt", choices=("gt", "prior"),
                              help="hand scale at test time: ground-truth bone or the prior")


@dataclass(frozen=True)
class PoseConfig(PoseParams):
    stage = "pose_model"
    image_size: int = param(128, range=(64, 256), help="square input size in px")
    decoder_channels: int = param(128, range=(16, 512), help="heatmap decoder width (stride 16 and 8; half at 4)")
    bone_prior_mm: float = param(90.0, range=(1.0, 500.0), help="initial reference-bone prior")
    backbone_weights: str | None = param(None, help="optional local ResNet-18 state-dict path")

    def validate(self) -> None:
        if self.image_size % 32:
            raise ConfigError(f"PoseConfig.image_size: {self.image_size} must be a multiple of 32")


def _backbone(weights_path: str | None) -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    if weights_path:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


class RootRefiner(nn.Module):
    """64 -> 128 -> 128 -> 1 MLP predicting a correction (units of C) to the closed-form root."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        n_in = NUM_JOINTS + 2 * NUM_JOINTS + 1
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, 1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start exactly at the closed-form solution
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z_rel_n: Tensor, xy_n: Tensor, zcf_n: Tensor) -> Tensor:
        x = torch.cat([z_rel_n, xy_n.flatten(1), zcf_n[:, None]], 1)  # (B, 64)
        return self.net(x)[:, 0]  # (B,)


def soft_argmax_25d(logits: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
    """(B,J,h,w) heatmap logits and depth maps -> uv in [0,1] (B,J,2), z (B,J)."""
    B, J, h, w = logits.shape
    p = logits.flatten(2).softmax(-1).view(B, J, h, w)
    xs = (torch.arange(w, device=p.device, dtype=p.dtype) + 0.5) / w  # cell centres
    ys = (torch.arange(h, device=p.device, dtype=p.dtype) + 0.5) / h
    u = (p.sum(2) * xs).sum(-1)
    v = (p.sum(3) * ys).sum(-1)
    z = (p * depth).flatten(2).sum(-1)
    return torch.stack([u, v], -1), z


class PoseModel(nn.Module):
    def __init__(self, cfg: PoseConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PoseConfig()
        r = _backbone(cfg.backbone_weights)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2)
        self.layer3, self.layer4 = r.layer3, r.layer4
        J = NUM_JOINTS
        if cfg.head == "heatmap":
            c = cfg.decoder_channels
            self.lat4 = nn.Conv2d(512, c, 1, bias=False)
            self.lat3 = nn.Conv2d(256, c, 1, bias=False)
            self.fuse = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                      nn.Conv2d(c, c, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            # finer levels: (lateral input channels, width) at stride 8 (layer2) and 4 (layer1)
            levels = [(128, c), (64, max(16, c // 2))][: {16: 0, 8: 1, 4: 2}[cfg.head_stride]]
            self.lats, self.smooths, w = nn.ModuleList(), nn.ModuleList(), c
            for cin, cout in levels:
                self.lats.append(nn.Conv2d(cin, w, 1, bias=False))
                self.smooths.append(nn.Sequential(nn.Conv2d(w, cout, 3, padding=1, bias=False),
                                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))
                w = cout
            self.out = nn.Conv2d(w, 2 * J, 1)
        else:
            self.fc = nn.Linear(512, 3 * J)
        self.refiner = RootRefiner() if cfg.refine else None
        self.register_buffer("bone_prior", torch.tensor(float(cfg.bone_prior_mm)))
        # closed-form root flags of the last forward, (B,) bool (not buffers: checkpoints unchanged)
        self.last_root_valid: Tensor | None = None
        self.last_root_clamped: Tensor | None = None
        self.reset_root_counts()

    def reset_root_counts(self) -> None:
        """Zero the running count of closed-form root solutions seen in eval mode."""
        self._root_counts: Tensor | None = None

    def root_counts(self) -> dict[str, int]:
        """Frames seen in eval mode since ``reset_root_counts`` and how many of their closed-form
        root depths were invalid (degenerate bone or negative discriminant: no exact solution) or
        clamped to ``ZCF_CLAMP``."""
        c = [0, 0, 0] if self._root_counts is None else [int(v) for v in self._root_counts.tolist()]
        return {"frames": c[0], "invalid": c[1], "clamped": c[2]}

    def features(self, images: Tensor) -> list[Tensor]:
        """images (B,3,H,W) in [0,1] -> ResNet stages [layer1 (B,64,H/4,W/4), layer2 (B,128,H/8),
        layer3 (B,256,H/16), layer4 (B,512,H/32)]."""
        x = (images - 0.45) / 0.225
        f1 = self.stem[:5](x)  # conv1, bn1, relu, maxpool, layer1
        f2 = self.stem[5](f1)  # layer2
        f3 = self.layer3(f2)
        return [f1, f2, f3, self.layer4(f3)]

    def heatmaps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmap head: images (B,3,H,W) -> logits, depth (B,21,H/s,W/s) fp32, s = head_stride."""
        f1, f2, f3, f4 = self.features(images)
        y = self.fuse(self.lat3(f3) + F.interpolate(self.lat4(f4), size=f3.shape[-2:], mode="nearest"))
        for lat, smooth, f in zip(self.lats, self.smooths, (f2, f1)):  # stride 16 -> 8 -> 4
            up = F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False)
            y = smooth(lat(f) + up)
        y = self.out(y).float()  # (B, 42, h, w): soft-argmax in fp32
        return y[:, :NUM_JOINTS], y[:, NUM_JOINTS:]

    def predict_25d(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B,3,H,W) in [0,1] -> uv (B,21,2) in [0,1] of the crop, z_rel / C (B,21); fp32."""
        if self.cfg.head == "heatmap":
            uv, z = soft_argmax_25d(*self.heatmaps(images))
        else:
            f4 = self.features(images)[-1]
            y = self.fc(f4.mean((2, 3))).float().view(-1, NUM_JOINTS, 3)
            uv, z = y[..., :2] + 0.5, y[..., 2]
        return uv, z - z[:, ROOT : ROOT + 1]

    def forward(self, images: Tensor, K: Tensor, bone_length: Tensor | None = None) -> PoseOutput:
        """images (B,3,H,W) [0,1]; K (B,3,3) crop intrinsics; bone_length (B,) mm or None (prior)."""
        uv, z_rel_n = self.predict_25d(images)
        B, size = images.shape[0], images.shape[-1]
        with torch.autocast(images.device.type, enabled=False):
            K = K.float()
            C = (self.bone_prior.float().expand(B) if bone_length is None
                 else bone_length.float().to(images.device))
            j2d = uv * size  # (B, 21, 2) px
            z_root = self.root_depth(j2d, z_rel_n, K)  # (B,) in units of C
            z_rel = z_rel_n * C[:, None]  # (B, 21) mm
            z_root = z_root * C
            j3d = from_25d(j2d, z_rel, z_root, K)
        return PoseOutput(j2d, z_rel, z_root, j3d)

    def root_depth(self, j2d: Tensor, z_rel_n: Tensor, K: Tensor) -> Tensor:
        """Closed-form root depth (detached, units of C) + the MLP's correction -> (B,)."""
        zcf, valid = root_depth(j2d.detach(), z_rel_n.detach(), K, 1.0, REF_BONE)
        clamped = (zcf < ZCF_CLAMP[0]) | (zcf > ZCF_CLAMP[1]) | ~torch.isfinite(zcf)
        zcf = zcf.clamp(*ZCF_CLAMP)
        self.last_root_valid, self.last_root_clamped = valid.detach(), clamped.detach()
        if not self.training:  # counted on the device, read by root_counts() (no sync here)
            c = torch.stack([torch.tensor(valid.numel(), device=valid.device), (~valid).sum(), clamped.sum()])
            self._root_counts = c if self._root_counts is None else self._root_counts + c.to(self._root_counts)
        if self.refiner is None:
            return zcf
        # inputs detached: the root loss trains the MLP only, the backbone learns from Eq. 2
        xy_n = normalize_points(j2d.detach(), K)[..., :2]  # (B, 21, 2)
        return zcf + self.refiner(z_rel_n.detach(), xy_n, zcf)
