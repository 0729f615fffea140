"""The adversarial stage's inputs: the pre-training run it starts from, that run's split, the
real motion D learns from, and the motion sequences held out of D's training (for D's
validation: its paired sensitivity and accuracy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from handlib.config import ConfigError
from handlib.data.protocols import make_split
from handlib.data.realdata import train_motion
from handlib.repro import read_records
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.stage_data import split_seed_of


def find_pretrain_run(cfg: AdversarialConfig) -> str:
    """The pre-training run id: ``cfg.pretrain_run``, or the unique finished pre-training record
    ``cfg`` starts from (``AdversarialConfig.starts_from``: ``PRETRAIN_MATCH``)."""
    if cfg.pretrain_run:
        return cfg.pretrain_run
    found = [r["config"]["run_id"] for r in read_records(cfg.results, stage="pretrain")
             if cfg.starts_from(r["config"]["config"])]
    if len(found) != 1:
        what = "no finished pre-training run" if not found else f"{len(found)} pre-training runs ({', '.join(found)})"
        raise FileNotFoundError(f"{what} matches {cfg.pretrain_params()} in {cfg.results or 'results/'}runs: run "
                                "the pre-training stage first, or name one with AdversarialConfig.pretrain_run")
    return found[0]


def rebuild_split(pre_cfg, store, split_csv: Path):
    """The pre-training run's split, rebuilt from its config and checked against its split.csv."""
    split = make_split(store.meta, protocol=pre_cfg["protocol"], fraction=pre_cfg["fraction"],
                       seed=split_seed_of(pre_cfg), val_fraction=pre_cfg["val_fraction"])
    saved = pd.read_csv(split_csv)
    now = split.to_frame()
    if len(saved) != len(now) or not (saved["role"].to_numpy() == now["role"].to_numpy()).all():
        raise RuntimeError(f"the split rebuilt from the pre-training config differs from {split_csv}: "
                           "data or protocol code changed since pre-training")
    return split


def motion_source(cfg: AdversarialConfig, data, split) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """(name, sequences, Ks) of the real motion D learns from; see AdversarialConfig.motion_source."""
    name = cfg.motion_source
    if name == "auto":
        name = "corpus" if getattr(data, "motion", None) is not None else "train_gt"
    if name == "corpus":
        if getattr(data, "motion", None) is None:
            raise ConfigError(f"AdversarialConfig.motion_source: dataset {cfg.dataset!r} has no motion corpus")
        seqs, Ks = data.motion
        return name, list(seqs), list(Ks)
    seqs, Ks = train_motion(data.store, exclude=set(split.val_sequences))
    return name, seqs, Ks


def hold_out(seqs: list, Ks: list, every: int = 10) -> tuple[tuple[list, list], tuple[list, list]]:
    """Whole sequences held out of D's training, every ``every``-th (for D's validation)."""
    n = len(seqs)
    held = [i for i in range(n) if i % every == every - 1] or ([n - 1] if n >= 2 else [])
    keep = [i for i in range(n) if i not in held]
    return ([seqs[i] for i in keep], [Ks[i] for i in keep]), ([seqs[i] for i in held], [Ks[i] for i in held])
