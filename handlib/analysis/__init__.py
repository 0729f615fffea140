"""Read-only views of data, models and predictions (analysis never imports train or study)."""
from handlib.analysis.diagnostics import (
    angle_violations,
    bone_length_variation,
    discriminator_auc,
    dof_angles,
    jitter,
    motion_diagnostics,
    perturb_windows,
    roc_auc,
    sequences_of,
)

__all__ = ["angle_violations", "bone_length_variation", "discriminator_auc", "jitter", "dof_angles",
           "motion_diagnostics", "perturb_windows", "roc_auc", "sequences_of"]
