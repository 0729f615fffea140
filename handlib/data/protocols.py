"""Semi-supervised label splits for any dataset's ``FrameStore.meta`` (HandSim, FPHAB, HO3D).

- **Protocol 1** (Hasson et al. CVPR'20): in every training sequence label the frame at
  position 0, every ``int(1/fraction)``-th position after it, and the last one; the
  whole sequence is also unlabelled video. Positions count the sequence's frames in
  order (not the ``frame`` numbers, which may skip excluded frames).
- **Protocol 2** (the paper's): whole training sequences are labelled, ``fraction`` of
  them (rounded half up, at least one), stratified by (subject, action) and seeded;
  the other training sequences are unlabelled video.

Validation (honest model selection, never the test split): ``val_fraction`` of the
training sequences, stratified and seeded, fully labelled, and used for nothing else.
Under P1 they are drawn first and removed from the labelled/video pool. Under P2 they
are drawn from the sequences *not* chosen as labelled (so the labelled fraction is
exactly the paper's fraction of all training sequences); only if too few remain (e.g.
fraction 1.0) the shortfall comes from the labelled ones, which is noted in ``notes``.

The motion source for the discriminator is recorded: ``"train_gt"`` (ground-truth motion
of the training sequences, val excluded; the paper's setting on real data) or
``"corpus"`` (an independent corpus such as HandSim's ``hs.motion``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from handlib.config import StageConfig, param
from handlib.repro import atomic_write_text

PAPER_FRACTIONS = (0.00625, 0.0125, 0.025, 0.05, 0.1, 0.2, 1.0)
ROLES = ("labelled", "unlabelled", "val", "test", "unused")


class LeakError(AssertionError):
    """A test sequence (or a validation sequence) appeared in a training role."""


@dataclass(frozen=True)
class ProtocolConfig(StageConfig):
    protocol: int = param(2, choices=(1, 2))
    fraction: float = param(0.1, range=(1e-6, 1.0))
    seed: int = param(0)
    val_fraction: float = param(0.1, range=(0.0, 0.5))
    motion_source: str = param("train_gt", choices=("train_gt", "corpus"))


@dataclass
class Split:
    protocol: int
    fraction: float
    seed: int
    val_fraction: float
    motion_source: str
    labelled_rows: np.ndarray  # store rows used for the supervised losses
    unlabelled_sequences: list[str]  # training sequences used as unlabelled video
    val_rows: np.ndarray  # rows of held-out training sequences (labelled)
    test_rows: np.ndarray  # rows with meta split == "test"
    labelled_sequences: list[str] = field(default_factory=list)
    val_sequences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: pd.DataFrame | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per store frame: (sequence, frame, role); P1's labelled frames say
        'labelled' although their sequences are also unlabelled video."""
        m = self.meta
        role = np.full(len(m), "unused", dtype=object)
        role[(m["sequence"].isin(self.unlabelled_sequences) & (m["split"] == "train")).to_numpy()] = "unlabelled"
        role[self.labelled_rows] = "labelled"
        role[self.val_rows] = "val"
        role[self.test_rows] = "test"
        return pd.DataFrame({"sequence": m["sequence"].to_numpy(), "frame": m["frame"].to_numpy(),
                             "role": role})

    def to_csv(self, path) -> Path:
        assert_no_leak(self)
        path = Path(path)
        atomic_write_text(path, self.to_frame().to_csv(index=False))
        return path

    def summary(self) -> dict:
        return {"protocol": self.protocol, "fraction": self.fraction, "seed": self.seed,
                "val_fraction": self.val_fraction, "motion_source": self.motion_source,
                "labelled_frames": int(len(self.labelled_rows)),
                "labelled_sequences": len(self.labelled_sequences),
                "unlabelled_sequences": len(self.unlabelled_sequences),
                "val_sequences": len(self.val_sequences), "val_frames": int(len(self.val_rows)),
                "test_frames": int(len(self.test_rows)), "notes": list(self.notes)}


def label_step(fraction: float) -> int:
    """int(1/fraction), guarded against float error (1/0.1 must be 10, not 9)."""
    return max(1, int(1.0 / fraction + 1e-9))


def round_half_up(x: float) -> int:
    """Sequence counts round x.5 up (Python's ``round`` rounds half to even: 2.5 -> 2)."""
    return int(np.floor(x + 0.5 + 1e-9))


def p1_positions(n: int, fraction: float) -> np.ndarray:
    """Labelled positions in an n-frame sequence: 0, k, 2k, ... and n-1 (k = int(1/fraction))."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.union1d(np.arange(0, n, label_step(fraction)), [n - 1])


def stratified_choice(seqs: pd.DataFrame, n: int, rng: np.random.Generator) -> list[str]:
    """Pick n sequences, allocated over strata ('stratum' column) by largest remainder
    (ties broken at random), then at random inside each stratum."""
    if n <= 0 or len(seqs) == 0:
        return []
    n = min(n, len(seqs))
    groups = {k: list(g["sequence"]) for k, g in seqs.groupby("stratum", sort=True)}
    keys = list(groups)
    sizes = np.array([len(groups[k]) for k in keys], dtype=np.float64)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    rest = n - take.sum()
    if rest:
        tie = rng.random(len(keys))
        order = np.lexsort((tie, -(quota - take)))  # largest remainder first, random ties
        take[order[:rest]] += 1
    out = []
    for k, t in zip(keys, take):
        members = groups[k]
        out += [members[i] for i in rng.permutation(len(members))[:t]]
    return out


def _sequence_table(meta: pd.DataFrame) -> pd.DataFrame:
    train = meta[meta["split"] == "train"]
    seqs = train.groupby("sequence", sort=False).agg(subject=("subject", "first"), action=("action", "first"))
    seqs = seqs.reset_index()
    seqs["stratum"] = seqs["subject"].astype(str) + "|" + seqs["action"].astype(str)
    return seqs


def make_split(meta: pd.DataFrame, protocol: int = 2, fraction: float = 0.1, seed: int = 0,
               val_fraction: float = 0.1, motion_source: str = "train_gt") -> Split:
    """Build a P1/P2 split of ``meta`` (a FrameStore's meta); see the module docstring."""
    cfg = ProtocolConfig(protocol=protocol, fraction=fraction, seed=seed, val_fraction=val_fraction,
                         motion_source=motion_source)
    rng = np.random.default_rng(cfg.seed)
    seqs = _sequence_table(meta)
    all_seqs = list(seqs["sequence"])
    n_seq = len(all_seqs)
    n_val = round_half_up(cfg.val_fraction * n_seq) if cfg.val_fraction > 0 else 0
    if cfg.val_fraction > 0 and n_seq > 1:
        n_val = max(1, n_val)
    notes: list[str] = []
    if cfg.protocol == 1:
        val = stratified_choice(seqs, n_val, rng)
        pool = [s for s in all_seqs if s not in set(val)]
        labelled_seqs, video = pool, pool
    else:
        n_lab = max(1, round_half_up(cfg.fraction * n_seq))
        labelled_seqs = stratified_choice(seqs, n_lab, rng)
        rest = seqs[~seqs["sequence"].isin(labelled_seqs)]
        val = stratified_choice(rest, n_val, rng)
        short = n_val - len(val)
        if short > 0:
            extra = stratified_choice(seqs[seqs["sequence"].isin(labelled_seqs)], short, rng)
            val += extra
            notes.append(f"only {len(rest)} unlabelled sequences: {len(extra)} validation sequences "
                         "taken from the labelled ones")
        taken = set(labelled_seqs) | set(val)
        labelled_seqs = [s for s in labelled_seqs if s not in set(val)]
        video = [s for s in all_seqs if s not in taken]
    order = {s: i for i, s in enumerate(all_seqs)}
    labelled_seqs = sorted(labelled_seqs, key=order.get)
    val = sorted(val, key=order.get)
    video = sorted(video, key=order.get)

    seq_col = meta["sequence"].to_numpy()
    is_train = (meta["split"] == "train").to_numpy()
    if cfg.protocol == 1:
        rows = []
        for s in labelled_seqs:
            r = np.flatnonzero((seq_col == s) & is_train)
            r = r[np.argsort(meta["frame"].to_numpy()[r], kind="stable")]
            rows.append(r[p1_positions(len(r), cfg.fraction)])
        labelled_rows = np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    else:
        labelled_rows = np.flatnonzero(np.isin(seq_col, labelled_seqs) & is_train)
    split = Split(protocol=cfg.protocol, fraction=cfg.fraction, seed=cfg.seed, val_fraction=cfg.val_fraction,
                  motion_source=cfg.motion_source, labelled_rows=labelled_rows.astype(np.int64),
                  unlabelled_sequences=video,
                  val_rows=np.flatnonzero(np.isin(seq_col, val) & is_train).astype(np.int64),
                  test_rows=np.flatnonzero((meta["split"] == "test").to_numpy()).astype(np.int64),
                  labelled_sequences=labelled_seqs, val_sequences=val, notes=notes, meta=meta)
    assert_no_leak(split)
    return split


def assert_no_leak(split: Split) -> None:
    """Raise LeakError if a test sequence has a training role, or validation overlaps training."""
    m = split.meta
    test_seqs = set(m["sequence"].to_numpy()[split.test_rows])
    lab_seqs = set(m["sequence"].to_numpy()[split.labelled_rows])
    val_seqs = set(m["sequence"].to_numpy()[split.val_rows])
    video = set(split.unlabelled_sequences)
    for name, s in (("labelled", lab_seqs), ("unlabelled", video), ("val", val_seqs)):
        if s & test_seqs:
            raise LeakError(f"test sequence(s) {sorted(s & test_seqs)[:3]} in the {name} role")
    if val_seqs & (lab_seqs | video):
        raise LeakError(f"validation sequence(s) {sorted(val_seqs & (lab_seqs | video))[:3]} used for training")
    if (m["split"].to_numpy()[split.labelled_rows] != "train").any():
        raise LeakError("labelled rows outside the training split")


def motion_for_split(store, split: Split, corpus=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Motion for the discriminator, as ``split.motion_source`` says: ``train_gt`` = ground
    truth of the training sequences except validation ones; ``corpus`` = ``corpus`` as given
    ((list of (T,21,3), list of K), e.g. ``hs.motion``)."""
    if split.motion_source == "corpus":
        if corpus is None:
            raise ValueError("motion_source='corpus' needs a corpus (e.g. hs.motion)")
        return corpus
    from handlib.data.realdata import train_motion

    return train_motion(store, exclude=set(split.val_sequences))
