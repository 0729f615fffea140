"""Networks: the hand pose model M (pose.py) and the motion discriminator D (motion.py)."""
from handlib.models.motion import (
    MotionConfig,
    MotionDiscriminator,
    augment_windows,
    encode_motion,
    encode_real,
)
from handlib.models.pose import PoseConfig, PoseModel, PoseOutput


def count_parameters(module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of M, D or any module; spectral norm's power-iteration
    vectors are buffers, not parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["MotionConfig", "MotionDiscriminator", "PoseConfig", "PoseModel", "PoseOutput", "augment_windows",
           "count_parameters", "encode_motion", "encode_real"]
