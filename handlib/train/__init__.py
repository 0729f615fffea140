"""The one training loop (pre-training and adversarial), BN phases, the pre-training stage."""
from handlib.train.bn import freeze_bn_stats, set_train_mode
from handlib.train.loop import LoopConfig, NonFiniteError, Task, train

__all__ = ["LoopConfig", "NonFiniteError", "Task", "train", "freeze_bn_stats", "set_train_mode"]
