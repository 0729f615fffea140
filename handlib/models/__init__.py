"""Networks: the hand pose model M (pose.py) and the motion discriminator D (motion.py)."""
from handlib.models.motion import (
    MotionConfig,
    MotionDiscriminator,
    augment_windows,
    count_parameters,
    encode_motion,
    encode_real,
)
from handlib.models.pose import PoseConfig, PoseModel, PoseOutput

__all__ = ["MotionConfig", "MotionDiscriminator", "PoseConfig", "PoseModel", "PoseOutput", "augment_windows",
           "count_parameters", "encode_motion", "encode_real"]
