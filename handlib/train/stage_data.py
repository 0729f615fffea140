"""A stage's data and split: the dataset its config names, the labelled / validation / test /
video split (from the config, or read back from a run's ``split.csv``), and the data
parameters every stage shares (``DataParams``, inherited by the stage configs)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from handlib.config import ConfigError, StageConfig, param
from handlib.data import registry
from handlib.data.protocols import Split, assert_no_leak, make_split

DATASETS = ("handsim", "fphab", "ho3d")


@dataclass(frozen=True)
class DataParams(StageConfig):
    """The data a stage trains on, as flat parameters (declared here only)."""

    dataset: str = param("handsim", choices=DATASETS)
    root: str | None = param(None, help="dataset root on disk (real datasets)")
    preset: str = param("smoke", choices=("smoke", "quick", "full"), help="HandSim preset")
    appearance_shift: float | None = param(None, range=(0.0, 1.0),
                                           help="HandSim: labelled vs other subjects' look; None = preset's (1.0)")
    protocol: int = param(2, choices=(1, 2))
    fraction: float = param(0.1, range=(0.0, 1.0), help="labelled fraction of the training sequences")
    image_size: int = param(128, range=(64, 256))
    cache_root: str | None = param(None)


def load_data(cfg):
    """The dataset object named by the config (``.store``, ``.motion``, ``.crop_source``,
    ``.crop_note``), through ``registry.load_dataset`` with every dataset option the config
    has: dataset, root, image_size, preset, cache_root, ``appearance_shift`` (HandSim) and
    ``test_crop`` / ``missing_images`` (FPHAB only) where the config has these fields."""
    kw: dict[str, Any] = {}
    if getattr(cfg, "test_crop", None) is not None:
        kw["test_crop"] = cfg.test_crop
    if cfg.dataset == "fphab" and getattr(cfg, "missing_images", None) is not None:
        kw["missing_images"] = cfg.missing_images
    if cfg.dataset == "handsim" and hasattr(cfg, "progress"):
        kw["progress"] = cfg.progress
    if cfg.dataset == "handsim" and getattr(cfg, "appearance_shift", None) is not None:
        kw["appearance_shift"] = cfg.appearance_shift
    data = registry.load_dataset(cfg.dataset, root=cfg.root, image_size=cfg.image_size, preset=cfg.preset,
                                 cache_root=cfg.cache_root, **kw)
    check_image_size(cfg, data.store)
    return data


def check_image_size(cfg, store) -> None:
    if store.image_size != cfg.image_size:
        raise ConfigError(f"{type(cfg).__name__}.image_size: {cfg.image_size} but the store holds "
                          f"{store.image_size} px images")


def default_motion_source(dataset: str) -> str:
    """What a dataset's ``.motion`` is: HandSim's unpaired corpus, or the real datasets'
    ground-truth motion of the training split."""
    return "corpus" if dataset == "handsim" else "train_gt"


def build_split(cfg, store) -> Split:
    """``protocols.make_split`` with the config's protocol, fraction, split seed (``split_seed``,
    else ``seed``) and val_fraction (and its ``motion_source`` where it has one)."""
    return make_split(store.meta, protocol=cfg.protocol, fraction=cfg.fraction, seed=split_seed_of(cfg),
                      val_fraction=cfg.val_fraction,
                      motion_source=getattr(cfg, "motion_source", None) or default_motion_source(cfg.dataset))


def split_seed_of(cfg) -> int:
    """The seed of a run's split: its ``split_seed`` where set, else its model ``seed`` (config
    object or config dict)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    s = get("split_seed", None)
    return int(get("seed", 0) if s is None else s)


def read_split(path, store, config: dict | None = None) -> Split:
    """The Split a run wrote with ``Split.to_csv`` (one row per store frame: sequence, frame,
    role), mapped back onto ``store``'s rows. ``config`` (the run's config dict, e.g.
    ``find_pretrain(...)["config"]``) fills protocol, fraction, seed, val_fraction, motion_source.
    Raises ValueError if the file's frames are not exactly the store's (other data)."""
    c = dict(config or {})
    df = pd.read_csv(path, dtype={"sequence": str}, keep_default_na=False)
    if list(df.columns[:3]) != ["sequence", "frame", "role"]:
        raise ValueError(f"{path}: expected columns sequence, frame, role; got {list(df.columns)}")
    meta = store.meta
    if len(df) != len(meta) or not ((df["sequence"].to_numpy() == meta["sequence"].astype(str).to_numpy()).all()
                                    and (df["frame"].to_numpy() == meta["frame"].to_numpy()).all()):
        raise ValueError(f"{path}: its {len(df)} (sequence, frame) rows are not the store's {len(meta)} "
                         "frames in order: the split was written for other data")
    role, seq = df["role"].to_numpy(), df["sequence"].to_numpy()

    def seqs(*roles: str) -> list[str]:
        return list(dict.fromkeys(seq[np.isin(role, roles)]))

    protocol = int(c.get("protocol", 2))
    split = Split(protocol=protocol, fraction=float(c.get("fraction", np.nan)), seed=split_seed_of(c),
                  val_fraction=float(c.get("val_fraction", np.nan)),
                  motion_source=c.get("motion_source") or default_motion_source(c.get("dataset", "handsim")),
                  labelled_rows=np.flatnonzero(role == "labelled").astype(np.int64),
                  # P1: every labelled sequence is also video (its other frames say 'unlabelled')
                  unlabelled_sequences=seqs("unlabelled", "labelled") if protocol == 1 else seqs("unlabelled"),
                  val_rows=np.flatnonzero(role == "val").astype(np.int64),
                  test_rows=np.flatnonzero(role == "test").astype(np.int64),
                  labelled_sequences=seqs("labelled"), val_sequences=seqs("val"),
                  notes=[f"read from {path}"], meta=meta)
    assert_no_leak(split)
    return split


def same_split(a: Split, b: Split) -> bool:
    """Same labelled, validation and test rows and the same unlabelled videos."""
    return (np.array_equal(a.labelled_rows, b.labelled_rows) and np.array_equal(a.val_rows, b.val_rows)
            and np.array_equal(a.test_rows, b.test_rows)
            and list(a.unlabelled_sequences) == list(b.unlabelled_sequences))
