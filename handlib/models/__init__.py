"""Networks: the hand pose model M (pose.py) and the motion discriminator D (motion.py)."""
from handlib.models.pose import PoseConfig, PoseModel, PoseOutput

__all__ = ["PoseConfig", "PoseModel", "PoseOutput"]
