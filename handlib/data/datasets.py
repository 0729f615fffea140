"""The one Dataset interface every source (HandSim, FPHAB, HO3D) implements.

A source is turned, at its boundary, into a ``FrameStore``: arrays with one row per
frame, joints in the canonical order, 3D in mm (camera frame), images already cropped
around the hand and resized to the model's input, K the intrinsics of that crop. The
three torch datasets below read from a store:

- ``LabelledFrames``: single frames with labels, for the supervised losses.
- ``VideoWindows``: S consecutive frames of a sequence, images and K only.
- ``MotionWindows``: S consecutive poses (j3d, K) of a motion source, no images.

Each implements ``__getitems__`` so a DataLoader with a batch sampler reads a batch
from the (memory-mapped) arrays with one fancy-indexing call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from handlib.geometry import to_25d

META_COLUMNS = ("sequence", "subject", "action", "frame", "split")


@dataclass
class FrameStore:
    """All frames of a dataset. Rows of one sequence are contiguous and frame-ordered."""

    images: np.ndarray  # (N, H, W, 3) uint8, usually a read-only memmap
    j3d: np.ndarray  # (N, 21, 3) float32 mm, camera frame, canonical order; NaN if unlabelled
    K: np.ndarray  # (N, 3, 3) float32, intrinsics of the crop
    meta: pd.DataFrame  # N rows, META_COLUMNS at least; RangeIndex

    def __post_init__(self) -> None:
        n = len(self.meta)
        missing = [c for c in META_COLUMNS if c not in self.meta.columns]
        if missing:
            raise ValueError(f"FrameStore.meta lacks columns {missing}")
        for name, arr, shape in (("images", self.images, None), ("j3d", self.j3d, (21, 3)),
                                 ("K", self.K, (3, 3))):
            if len(arr) != n:
                raise ValueError(f"FrameStore.{name} has {len(arr)} rows, meta has {n}")
            if shape is not None and tuple(arr.shape[1:]) != shape:
                raise ValueError(f"FrameStore.{name} has shape {arr.shape}, expected (N, {shape})")

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def sequences(self, split: str | None = None) -> list[str]:
        m = self.meta if split is None else self.meta[self.meta["split"] == split]
        return list(dict.fromkeys(m["sequence"]))

    def rows_of(self, sequences) -> np.ndarray:
        """Row indices of all frames of the given sequences, in store order."""
        return np.flatnonzero(self.meta["sequence"].isin(list(sequences)).to_numpy())

    def sequence_bounds(self) -> pd.DataFrame:
        """Per sequence: first row, number of frames."""
        g = self.meta.reset_index().groupby("sequence", sort=False)["index"]
        return pd.DataFrame({"start": g.min(), "length": g.size()})

    def frame_runs(self, sequences=None) -> pd.DataFrame:
        """Runs of consecutive frame numbers (a gap, e.g. a skipped missing image, cuts):
        first row, number of frames, sequence; for ``sequences`` (default all), in store order."""
        rows = np.arange(len(self.meta)) if sequences is None else self.rows_of(sequences)
        seq = self.meta["sequence"].to_numpy()[rows]
        frame = self.meta["frame"].to_numpy()[rows]
        cut = np.flatnonzero((seq[1:] != seq[:-1]) | (np.diff(frame) != 1) | (np.diff(rows) != 1)) + 1
        first = np.concatenate([[0], cut]).astype(np.int64)
        length = np.diff(np.concatenate([first, [len(rows)]]))
        return pd.DataFrame({"start": rows[first] if len(rows) else first, "length": length,
                             "sequence": seq[first] if len(rows) else []})


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    return t.movedim(-1, -3).float().div_(255.0)


class LabelledFrames(Dataset):
    """Single labelled frames: image (3,H,W) float, j3d (21,3) mm, j2d (21,2) px,
    z_rel (21,) mm, K (3,3), and the row index (for ids via ``store.meta``)."""

    def __init__(self, store: FrameStore, rows: np.ndarray, transform=None):
        self.store, self.rows, self.transform = store, np.asarray(rows, dtype=np.int64), transform
        if len(self.rows) and np.isnan(store.j3d[self.rows]).any():
            raise ValueError("LabelledFrames: some requested rows have no 3D label")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        rows = np.sort(self.rows[np.asarray(idx)])  # sorted reads are kinder to a memmap
        j3d = torch.from_numpy(self.store.j3d[rows]).float()
        K = torch.from_numpy(self.store.K[rows]).float()
        batch = {"image": images_to_tensor(self.store.images[rows]), "j3d": j3d, "K": K,
                 "row": torch.from_numpy(rows)}
        if self.transform is not None:
            batch = self.transform(batch)
        batch["j2d"], batch["z_rel"] = to_25d(batch["j3d"], batch["K"])
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def window_starts(bounds: pd.DataFrame, S: int, stride: int) -> np.ndarray:
    """First rows of all length-S windows (step ``stride``) inside each sequence."""
    starts = [b + np.arange(0, n - S + 1, stride) for b, n in zip(bounds["start"], bounds["length"]) if n >= S]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


class VideoWindows(Dataset):
    """S consecutive frames of unlabelled video: images (S,3,H,W), K (S,3,3), start row.
    Labels are deliberately not returned: the adversarial stage must never read them.
    No window spans a gap in frame numbers (``FrameStore.frame_runs``)."""

    def __init__(self, store: FrameStore, sequences, S: int = 16, stride: int = 1):
        self.store, self.S = store, S
        self.starts = window_starts(store.frame_runs(list(sequences)), S, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        rows = self.starts[np.asarray(idx)][:, None] + np.arange(self.S)  # (B, S)
        return {"images": images_to_tensor(self.store.images[rows.ravel()]).unflatten(0, rows.shape),
                "K": torch.from_numpy(self.store.K[rows]).float(), "start": torch.from_numpy(rows[:, 0])}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


class MotionWindows(Dataset):
    """S consecutive poses of a motion source: j3d (S,21,3) mm and K (S,3,3).

    ``sequences`` is a list of (T_i, 21, 3) arrays (mm, camera frame, canonical order)
    and ``Ks`` a matching list of (3, 3) or (T_i, 3, 3) intrinsics, so either
    representation (3D or 2.5D) can be built from a window exactly as from M's output.
    """

    def __init__(self, sequences: list[np.ndarray], Ks: list[np.ndarray], S: int = 16, stride: int = 1):
        if len(sequences) != len(Ks):
            raise ValueError("MotionWindows: one K per sequence is required")
        lengths = [len(s) for s in sequences]
        self.j3d = np.concatenate(sequences).astype(np.float32)
        self.K = np.concatenate([np.broadcast_to(k, (n, 3, 3)) for k, n in zip(Ks, lengths)]).astype(np.float32)
        starts = np.cumsum([0] + lengths[:-1])
        self.S = S
        self.starts = window_starts(pd.DataFrame({"start": starts, "length": lengths}), S, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        rows = self.starts[np.asarray(idx)][:, None] + np.arange(self.S)
        return {"j3d": torch.from_numpy(self.j3d[rows]), "K": torch.from_numpy(self.K[rows])}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def identity_collate(batch):
    """Batches come whole from ``__getitems__``: nothing to collate."""
    return batch


def batch_loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader that hands whole index batches to ``__getitems__`` (no per-item collate)."""
    g = torch.Generator()
    g.manual_seed(seed)
    sampler = (torch.utils.data.RandomSampler(ds, generator=g) if shuffle
               else torch.utils.data.SequentialSampler(ds))
    bs = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
    return torch.utils.data.DataLoader(ds, batch_sampler=bs, collate_fn=identity_collate,
                                       num_workers=num_workers)
