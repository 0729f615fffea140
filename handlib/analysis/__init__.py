"""Read-only views of data, models and predictions (analysis never imports train or study)."""
from handlib.analysis.diagnostics import (
    angle_violations,
    bone_length_variation,
    discriminator_auc,
    jitter,
    joint_angles,
    motion_diagnostics,
    perturb_windows,
    roc_auc,
    sequences_of,
)

__all__ = ["angle_violations", "bone_length_variation", "discriminator_auc", "jitter", "joint_angles",
           "motion_diagnostics", "perturb_windows", "roc_auc", "sequences_of"]
