"""D inside the adversarial stage: its validation windows, the measures taken at every
evaluation and for the warm-started and final D, and the warm start itself (resumable), and D's
checkpoint (which ``python -m handlib.analysis.probe_d`` loads).

Validation of D never touches test data: held-out *whole* motion sequences of the real motion
source (``hold_out``), all windows at stride ``d_probe_stride`` < S, for its paired sensitivity;
M's windows on the validation videos (with their labels) for its accuracy and the Spearman
correlation of its score with a window's error.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlib.analysis.d_probe import ProbeWindows, predict_probe, probe_windows, score_probe
from handlib.analysis.d_sensitivity import discriminator_sensitivity, flat_sensitivity
from handlib.data.datasets import MotionWindows
from handlib.models.motion import MotionDiscriminator
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.discriminator import DTrainer, predicted_windows, warm_start

SUBSET_EVERY = 4  # the warm start's frequent evaluations use every 4th held-out window


@dataclass
class DValidation:
    """D's validation data: held-out real windows (``real``: j3d, K) and the probe windows."""
    cfg: AdversarialConfig
    real: dict[str, torch.Tensor] | None
    probe: ProbeWindows | None

    @classmethod
    def build(cls, cfg: AdversarialConfig, store, val_sequences, held: tuple[list, list]) -> DValidation:
        S = cfg.window
        real = None
        if held[0]:
            mw = MotionWindows(*held, S=S, stride=cfg.d_probe_stride)
            if len(mw):
                real = mw.__getitems__(list(range(len(mw))))
        return cls(cfg, real, probe_windows(store, val_sequences, held, S, cfg.d_probe_frames))

    @property
    def n_real(self) -> int:
        return 0 if self.real is None else len(self.real["j3d"])

    def subset(self) -> dict[str, torch.Tensor] | None:
        return None if self.real is None else {k: v[::SUBSET_EVERY] for k, v in self.real.items()}

    def sensitivity(self, D: MotionDiscriminator, subset: bool = False) -> dict[str, dict[str, float]]:
        w = self.subset() if subset else self.real
        if w is None:
            return {}
        return discriminator_sensitivity(D, w, self.cfg.representation, self.cfg.center, seed=self.cfg.seed)

    def predict(self, model, runtime) -> dict[str, torch.Tensor] | None:
        if self.probe is None or not self.probe.video_idx:
            return None
        return predict_probe(model.to(runtime.device), self.probe, runtime, self.cfg.representation, self.cfg.center)

    def score(self, D: MotionDiscriminator, pred: dict[str, torch.Tensor] | None) -> dict[str, float]:
        if pred is None:
            return {}
        real = self.probe.real if self.probe is not None else None
        return score_probe(D, pred, real, self.cfg.representation, self.cfg.center)

    def at_eval(self, model, D: MotionDiscriminator, runtime) -> dict[str, float]:
        """Every evaluation: accuracy / AUC / Spearman on M's validation windows and the paired shares."""
        return {**self.score(D, self.predict(model, runtime)), **flat_sensitivity(self.sensitivity(D))}

    def report(self, model, D: MotionDiscriminator, runtime) -> dict[str, Any]:
        """For the record: the full paired sensitivity and the probe of M's windows vs real."""
        return {"sensitivity": self.sensitivity(D), "probe": self.score(D, self.predict(model, runtime)),
                "n_real_windows": self.n_real}


def objective(row: dict[str, float]) -> float:
    """The warm start's validation objective (higher is better): D's accuracy on M's validation
    windows vs held-out real ones plus its mean paired share over the sensitivity checks."""
    shares = [v for k, v in row.items() if k.startswith("dsens_")]
    return float(row.get("d_acc", 0.0) + (np.mean(shares) if shares else 0.0))


def warm_eval(dval: DValidation, D: MotionDiscriminator, val_pred) -> dict[str, float]:
    """The warm start's evaluation: D on M's cached validation windows, paired shares on every
    ``SUBSET_EVERY``-th held-out window, and the ``objective``."""
    row = {**dval.score(D, val_pred), **flat_sensitivity(dval.sensitivity(D, subset=True))}
    return {**row, "objective": objective(row)}


def run_warm_start(cfg: AdversarialConfig, trainer: DTrainer, model, store, unlabelled_sequences, motion,
                   dval: DValidation, runtime, path: Path, resume: bool = True) -> dict[str, Any]:
    """D's warm start against the frozen pre-trained ``model``'s windows of the unlabelled videos
    (predicted once); saved to ``path`` (D, trainer state, record) and loaded from it on resume."""
    if resume and path.exists():
        st = torch.load(path, map_location="cpu", weights_only=True)
        trainer.D.load_state_dict(st["D"])
        trainer.load_state_dict(st["trainer"])
        return st["record"]
    D, rec = trainer.D, {"steps": 0, "stopped": "off", "history": []}
    if cfg.d_warm_steps > 0:
        fakes = predicted_windows(model.to(runtime.device), store, unlabelled_sequences, cfg.window, runtime,
                                  cfg.representation, cfg.center)
        val_pred = dval.predict(model, runtime)
        rec = warm_start(trainer, motion, fakes, partial(warm_eval, dval, D, val_pred)) | {
            "predicted_windows": len(fakes)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"D": D.state_dict(), "trainer": trainer.state_dict(), "record": rec}, path)
    return rec
