"""The motion discriminator D (paper Sec. 3.2-3.3, Fig. 3) and the one encoder of its input.

D scores a window of S hand poses, ``(B, S, 21, 3)``, with one raw number per window (LSGAN,
Eq. 4-5: no sigmoid; real windows are pushed towards 1, predicted ones towards 0).

Representation (``encode_motion``, used for real *and* predicted windows alike)
------------------------------------------------------------------------------
Whatever lets D separate real from predicted motion by a cue other than plausibility is a
cue M will chase instead of plausibility. So both kinds of window go through one function,
and everything that is not hand motion is divided out:

- ``"25d"`` (the paper's choice): channels 0, 1 are the joint's camera ray ``K^-1 [u, v, 1]``
  (x/z, y/z): pixel coordinates without the crop and the camera's intrinsics in them;
  channel 2 is the root-relative depth ``z_rel / C``. Bounded and translation-invariant
  in depth, as the paper argues.
- ``"3d"``: the root-relative 3D joints ``(P - P_root) / C`` with ``P`` back-projected from
  the 2.5D values and the root depth (Eq. 3).

``C`` is each window's own hand scale (the reference bone's length, one value per window):
real windows use their ground truth's mean over the window; predicted windows should use the
scale M converted its normalised depths with (then channel 2 of ``"25d"`` is M's own output).
Dividing every window by its own hand's size keeps D from telling the two apart by hand size.
Real windows are built by ``encode_real`` from ``(j3d, K)``, which routes the ground truth
through the same 2.5D quantities M predicts, so a perfect prediction encodes to exactly the
real tensor.

Augmentation (``augment_windows``): one random rotation per window about the camera z-axis
through frame 0's root (``geometry.rotate_about_camera_z``): channels 0, 1 turn in the image
plane, channel 2 is left alone. One function for real and predicted windows, applied to the
encoded tensor, so both kinds see exactly the same transform. In ``"3d"`` this is a rigid
rotation of the whole window; in ``"25d"`` it turns the rays in the image plane about the
first root's ray, which keeps every inter-frame displacement's magnitude.

Architecture (Fig. 3: "encoding layer, two residual blocks, decoding layer")
---------------------------------------------------------------------------
The window is a 1-D signal over time with 63 channels, ``(B, 63, S)``:
encoder ``Conv1d(63 -> C, k)``; ``depth`` pre-activation residual blocks
``x + Conv1d(LReLU(Conv1d(LReLU(x))))``; decoder ``LReLU -> Conv1d(C -> C/2, k) -> LReLU ->
Linear(C/2 -> 1)`` per time step; the mean over time is the score. Zero ("same") padding, so
any S >= 1 works (S = 1 is the single-frame pose prior). The receptive field of one time
step's score is ``1 + (2 depth + 2)(kernel - 1)`` frames (13 for the paper's kernel 3, depth 2:
less than S = 16, so no score sees a whole window).

Motion-aware options (each off in the paper's D; see ``MotionConfig``):
- ``motion_input="pose_diff"``: frame-to-frame differences of the encoded window (times
  ``diff_scale``; zero at frame 0) as 63 more input channels, so motion is an input, not
  something D must find by subtracting neighbouring frames;
- ``pool="window"``: the decoder's features pooled over the whole window (mean and std over
  time) and scored once by the head: every score sees all S frames, and the std over time
  is itself a measure of motion;
- ``kernel`` 5 (receptive field 25 >= 16) as the other way to a score that sees a window.

No BatchNorm: D sees real and fake batches separately and batch statistics would mix them.
Optional spectral normalisation of every Conv/Linear. D always runs in fp32, also inside the
training loop's bf16 autocast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from handlib import geometry
from handlib.config import ConfigError, StageConfig, param
from handlib.skeleton import NUM_JOINTS, ROOT, ref_bone_length

REPRESENTATIONS = ("25d", "3d")


@dataclass(frozen=True)
class MotionConfig(StageConfig):
    stage = "motion_model"
    S: int = param(16, range=(1, 256), help="sequence length (1 = single-frame pose prior)")
    depth: int = param(2, range=(1, 16), help="residual blocks between encoder and decoder")
    channels: int = param(256, range=(8, 2048), help="width of the encoder and the residual blocks")
    kernel: int = param(3, range=(1, 15), help="temporal kernel size (odd)")
    spectral_norm: bool = param(False, help="spectral normalisation of every Conv/Linear")
    representation: str = param("25d", choices=REPRESENTATIONS, help="D's input: 2.5D rays + z_rel/C, or 3D/C")
    augment: bool = param(True, help="one random rotation about the camera z-axis per window")
    center: bool = param(False, help="'25d': rays relative to frame 0's root ray (no position in the view)")
    max_rotation_deg: float = param(180.0, range=(0.0, 180.0), help="rotation angles uniform in +-this")
    motion_input: str = param("pose", choices=("pose", "pose_diff"),
                              help="pose_diff: frame differences (x diff_scale) beside the poses")
    diff_scale: float = param(10.0, range=(0.0, None), help="pose_diff: encoded units move ~1e-2 per frame")
    pool: str = param("score", choices=("score", "window"),
                      help="score: mean of per-step scores (paper); window: mean+std of features over time")

    def validate(self) -> None:
        if self.kernel % 2 != 1:
            raise ConfigError(f"MotionConfig.kernel: {self.kernel} must be odd ('same' padding over time)")

    @property
    def receptive_field(self) -> int:
        """Frames one time step's score depends on (pool "window": the whole window, S)."""
        rf = 1 + (2 * self.depth + 2) * (self.kernel - 1)
        return max(rf, self.S) if self.pool == "window" else rf


# ----------------------------------------------------------------------------- representation
def _window_scale(bone_length: Tensor | float, j2d: Tensor) -> Tensor:
    """Hand scale as (..., S or 1, 1): one value per window (...,) or per frame (..., S)."""
    C = torch.as_tensor(bone_length, dtype=j2d.dtype, device=j2d.device)
    if C.ndim and C.ndim == j2d.ndim - 3:  # (...,): one per window -> broadcast over frames
        C = C[..., None]
    return C[..., None]  # (..., S|1, 1): broadcast over joints


def encode_motion(j2d: Tensor, z_rel: Tensor, K: Tensor, bone_length: Tensor | float, representation: str,
                  *, z_root: Tensor | None = None, center: bool = False) -> Tensor:
    """2.5D window quantities -> D's input (..., S, 21, 3) float32.

    j2d (..., S, 21, 2) px; z_rel (..., S, 21) mm; K (..., S, 3, 3) of the image j2d is in;
    bone_length (...,) mm, one per window (or broadcastable to (..., S)); z_root (..., S) mm,
    required for "3d". ``center`` ("25d" only): subtract frame 0's root ray from every ray, so
    where in the field of view the window happens to be is not an input (its motion still is).
    Computed in fp32 (or the inputs' fp64) even under autocast.
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(f"encode_motion: representation {representation!r} not in {REPRESENTATIONS}")
    if j2d.shape[-2:] != (NUM_JOINTS, 2) or j2d.ndim < 3:
        raise ValueError(f"encode_motion: j2d must be (..., S, 21, 2), got {tuple(j2d.shape)}")
    with torch.autocast(device_type=j2d.device.type, enabled=False):
        dt = torch.promote_types(j2d.dtype, torch.float32)
        j2d, z_rel, K = j2d.to(dt), z_rel.to(dt), K.to(dt)
        C = _window_scale(bone_length, j2d)  # (..., S|1, 1) mm
        if representation == "25d":
            rays = geometry.normalize_points(j2d, K)[..., :2]  # (..., S, 21, 2) x/z, y/z
            if center:
                rays = rays - rays[..., :1, ROOT : ROOT + 1, :]
            x = torch.cat([rays, (z_rel / C)[..., None]], -1)  # (..., S, 21, 3)
        else:
            if z_root is None:
                raise ValueError("encode_motion: representation '3d' needs z_root (..., S) mm")
            j3d = geometry.from_25d(j2d, z_rel, z_root.to(dt), K)  # (..., S, 21, 3) mm, camera frame
            x = (j3d - j3d[..., ROOT : ROOT + 1, :]) / C[..., None]  # root-relative, in hand scales
    return x.float()


def encode_real(j3d: Tensor, K: Tensor, representation: str, center: bool = False) -> Tensor:
    """Real motion windows j3d (..., S, 21, 3) mm camera frame, K (..., S, 3, 3) -> (..., S, 21, 3)
    float32, through the same 2.5D quantities M predicts and the same ``encode_motion``."""
    j2d, z_rel = geometry.to_25d(j3d, K)  # (..., S, 21, 2) px, (..., S, 21) mm
    C = ref_bone_length(j3d).mean(-1)  # (...,) mm: one scale per window
    return encode_motion(j2d, z_rel, K, C, representation, z_root=j3d[..., ROOT, 2], center=center)


def augment_windows(x: Tensor, generator: torch.Generator | None = None, max_deg: float = 180.0) -> Tensor:
    """One random rotation about the camera z-axis per window, through frame 0's root.

    x (B, S, 21, 3) encoded windows (either representation); angles uniform in +-max_deg,
    drawn from ``generator`` (on its own device). The same function for real and predicted
    windows: identical inputs and generator states give identical outputs."""
    if x.ndim != 4:
        raise ValueError(f"augment_windows: x must be (B, S, 21, 3), got {tuple(x.shape)}")
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(x.shape[0], generator=generator, device=device)
    angle = ((2 * u - 1) * math.radians(max_deg)).to(device=x.device, dtype=x.dtype)  # (B,)
    return geometry.rotate_about_camera_z(x, angle)


# ----------------------------------------------------------------------------- the network
class ResBlock1d(nn.Module):
    """Pre-activation residual block over time: x + conv(lrelu(conv(lrelu(x))))."""

    def __init__(self, channels: int, kernel: int, wrap):
        super().__init__()
        self.conv1 = wrap(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))
        self.conv2 = wrap(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, S)
        h = self.conv1(F.leaky_relu(x, 0.2))
        h = self.conv2(F.leaky_relu(h, 0.2))
        return x + h


class MotionDiscriminator(nn.Module):
    """D: (B, S, 21, 3) encoded windows -> (B,) raw scores."""

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        self.cfg = cfg
        wrap = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        C, k = cfg.channels, cfg.kernel
        c_in = NUM_JOINTS * 3 * (2 if cfg.motion_input == "pose_diff" else 1)
        self.encoder = wrap(nn.Conv1d(c_in, C, k, padding=k // 2))
        self.blocks = nn.ModuleList([ResBlock1d(C, k, wrap) for _ in range(cfg.depth)])
        self.decoder = wrap(nn.Conv1d(C, max(C // 2, 1), k, padding=k // 2))
        self.head = wrap(nn.Linear(max(C // 2, 1) * (2 if cfg.pool == "window" else 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.cfg.S, NUM_JOINTS, 3):
            raise ValueError(f"MotionDiscriminator: expected (B, {self.cfg.S}, 21, 3), got {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            B, S = x.shape[:2]
            h = x.float().reshape(B, S, NUM_JOINTS * 3).transpose(1, 2)  # (B, 63, S)
            if self.cfg.motion_input == "pose_diff":
                d = F.pad(torch.diff(h, dim=2), (1, 0)) * self.cfg.diff_scale  # (B, 63, S), 0 at frame 0
                h = torch.cat([h, d], 1)  # (B, 126, S)
            h = self.encoder(h)  # (B, C, S)
            for block in self.blocks:
                h = block(h)
            h = F.leaky_relu(self.decoder(F.leaky_relu(h, 0.2)), 0.2)  # (B, C/2, S)
            if self.cfg.pool == "window":  # one score from the whole window's features
                feats = torch.cat([h.mean(2), h.std(2, unbiased=False)], 1)  # (B, C)
                return self.head(feats).squeeze(-1)  # (B,)
            score = self.head(h.transpose(1, 2)).squeeze(-1)  # (B, S): one score per time step
            return score.mean(1)  # (B,)


def save_discriminator(D: MotionDiscriminator, path, **extra) -> str:
    """D's weights, its ``MotionConfig`` and ``extra`` (plain values: representation, center,
    where it came from) in one file, for ``load_discriminator``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"motion_config": D.cfg.to_dict(), "D": D.state_dict(), "extra": extra}, path)
    return str(path)


def load_discriminator(path) -> tuple[MotionDiscriminator, dict]:
    """(D in eval mode on the CPU, extra) from a ``save_discriminator`` file."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    D = MotionDiscriminator(MotionConfig(**st["motion_config"]))
    D.load_state_dict(st["D"])
    return D.eval(), dict(st.get("extra") or {})
