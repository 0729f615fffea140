"""Named HandSim sizes. ``smoke`` for tests (seconds), ``quick`` for ``make study`` on a
laptop CPU (a couple of minutes to generate, ~9k frames), ``full`` for the CPU study
(FPHAB-like: 6 subjects, every action, 2-10 s sequences)."""
from __future__ import annotations

from handlib.data.handsim.motion import ACTION_NAMES

PRESETS: dict[str, dict] = {
    "smoke": dict(n_subjects=2, actions=("fist", "precision_pinch", "wave"), n_reps=2, seconds=(1.0, 1.5),
                  image_size=64, motion_subjects=2, motion_reps=1),
    "quick": dict(n_subjects=4, actions=("open_palm", "fist", "power_grasp", "precision_pinch", "point", "counting",
                                         "wave", "tapping"),
                  n_reps=3, seconds=(2.0, 4.0), image_size=128, motion_subjects=4, motion_reps=3),
    "full": dict(n_subjects=6, actions=ACTION_NAMES, n_reps=4, seconds=(2.0, 10.0), image_size=128,
                 motion_subjects=6, motion_reps=4),
}
