"""Shared machinery of the real-dataset readers (FPHAB, HO3D): hand crops with the
matching intrinsics, and the on-disk cache of preprocessed crops.

A reader produces a list of ``FrameSpec`` (image path, 3D joints in mm camera frame
canonical order or NaN, full-image K, crop box, ids). ``cached_store`` crops and resizes
every image once into ``cache_dir()/<name>/<hash>/`` (uint8 ``images.npy`` opened with
mmap, plus ``j3d.npy``, ``K.npy``, ``meta.csv``, ``info.json``); the hash covers the
dataset root, image size, crop settings, the size/mtime of the split files and
``CACHE_VERSION``. A warm cache is opened without scanning the dataset tree. The directory is written under a temporary
name and renamed when complete, so an interrupted build never looks finished.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from handlib.data.crop import crop_K
from handlib.data.datasets import FrameStore
from handlib.paths import cache_dir

log = logging.getLogger(__name__)
CACHE_VERSION = 1


class DatasetError(RuntimeError):
    """A dataset root is missing, malformed or unreadable; the message names the path."""


@dataclass
class FrameSpec:
    """One frame to preprocess."""

    image: str  # path of the full image
    j3d: np.ndarray  # (21, 3) mm camera frame canonical, NaN if unlabelled
    K: np.ndarray  # (3, 3) intrinsics of the full image
    box: np.ndarray  # (4,) [x0, y0, side, side] px square crop in the full image (crop.py's convention)
    ids: dict = field(default_factory=dict)  # sequence, subject, action, frame, split, ...


@dataclass
class RealDataset:
    """What a reader returns: the store and the ground-truth motion of its training split."""

    store: FrameStore
    motion: tuple[list[np.ndarray], list[np.ndarray]]  # ([(T,21,3) mm], [(T,3,3)])
    info: dict = field(default_factory=dict)  # counts, skipped sequences, cache path
    crop_source: str = "gt_joints"  # where test crops come from (written into every run record)
    crop_note: str = ""  # one line saying so, for readers of a record


def box_from_points(j2d: np.ndarray, margin: float, min_side: float = 32.0) -> np.ndarray:
    """Square box around 2D points: (J, 2) px -> [x0, y0, side, side], side = extent*(1+2*margin)."""
    lo, hi = np.nanmin(j2d, 0), np.nanmax(j2d, 0)
    side = max(float((hi - lo).max()) * (1 + 2 * margin), min_side)
    c = (lo + hi) / 2
    return np.array([c[0] - side / 2, c[1] - side / 2, side, side], dtype=np.float64)


def box_from_bbox(bbox, margin: float, min_side: float = 32.0) -> np.ndarray:
    """Square box around an [x0, y0, x1, y1] bounding box (e.g. HO3D's handBoundingBox)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(bbox).ravel()[:4])
    return box_from_points(np.array([[x0, y0], [x1, y1]]), margin, min_side)


def integer_box(box: np.ndarray) -> tuple[int, int, int]:
    """The pixel-aligned box actually cut: (x0, y0, side) ints."""
    side = max(int(round(box[2])), 1)
    return int(round(box[0])), int(round(box[1])), side


def crop_image(img: np.ndarray, box: np.ndarray, out_size: int) -> np.ndarray:
    """Cut the integer box (zero padding outside the image) and resize to out_size^2."""
    x0, y0, side = integer_box(box)
    H, W = img.shape[:2]
    out = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side > out_size else cv2.INTER_LINEAR
    return cv2.resize(out, (out_size, out_size), interpolation=interp)


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises DatasetError naming the path if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: missing or unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def cache_key(name: str, root: str | os.PathLike, settings: dict) -> str:
    payload = {"dataset": name, "root": str(Path(root).resolve()), "version": CACHE_VERSION, **settings}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def open_store(path: Path) -> FrameStore:
    """Memory-map a finished cache directory."""
    meta = pd.read_csv(path / "meta.csv", dtype={"sequence": str, "subject": str, "action": str, "split": str,
                                                      "file_id": str},
                       keep_default_na=False)
    return FrameStore(images=np.load(path / "images.npy", mmap_mode="r"),
                      j3d=np.load(path / "j3d.npy"), K=np.load(path / "K.npy"), meta=meta)


def file_signature(paths) -> list:
    """(name, size, mtime) of the files that define a dataset's listing (split/list files)."""
    return [[Path(p).name, Path(p).stat().st_size, int(Path(p).stat().st_mtime)] for p in paths]


def cached_store(name: str, root, image_size: int, settings: dict,
                 make_specs: Callable[[], tuple[list[FrameSpec], dict]], cache_root=None,
                 workers: int = 4) -> tuple[FrameStore, Path, dict]:
    """Return the memory-mapped store of ``cache_dir(cache_root)/<name>/<key>/``, building it
    first if missing. The key hashes the resolved root, ``image_size``, ``settings`` (crop
    margin, signature of the list files, ...) and ``CACHE_VERSION``; ``make_specs`` (which
    scans the tree: slow for large datasets) runs only on a miss and returns the frames and
    a JSON-able info dict, kept in the cache as ``info.json``."""
    base = cache_dir(cache_root) / name
    final = base / cache_key(name, root, {"image_size": image_size, **settings})
    if (final / "meta.csv").exists():
        return open_store(final), final, json.loads((final / "info.json").read_text())
    specs, info = make_specs()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-"))
    try:
        n = len(specs)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, image_size, image_size, 3))
        j3d = np.stack([s.j3d for s in specs]).astype(np.float32) if n else np.zeros((0, 21, 3), np.float32)
        K = (np.stack([crop_K(s.K, np.array(integer_box(s.box))[[0, 1, 2, 2]], image_size)
                       for s in specs]).astype(np.float32)
             if n else np.zeros((0, 3, 3), np.float32))

        def work(i: int) -> None:
            images[i] = crop_image(read_rgb(specs[i].image), specs[i].box, image_size)

        with ThreadPoolExecutor(max(1, workers)) as ex:  # cv2 releases the GIL while decoding
            list(ex.map(work, range(n)))
        images.flush()
        np.save(tmp / "j3d.npy", j3d)
        np.save(tmp / "K.npy", K)
        pd.DataFrame([s.ids for s in specs]).to_csv(tmp / "meta.csv", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=2, default=str))
        (tmp / "settings.json").write_text(json.dumps({"root": str(root), "image_size": image_size,
                                                       "version": CACHE_VERSION, **settings}, indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: cached %d frames at %s", name, len(specs), final)
    return open_store(final), final, json.loads((final / "info.json").read_text())


def train_motion(store: FrameStore, exclude: set[str] | None = None,
                 split: str = "train") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ground-truth motion of the training split: per sequence (T,21,3) mm and (T,3,3) K,
    cut into runs at unlabelled (NaN) frames and at gaps in the frame numbers (excluded
    frames); ``exclude`` drops sequences (e.g. validation); ``split`` picks another split."""
    seqs, Ks = [], []
    meta = store.meta
    train = meta[meta["split"] == split]
    for seq, grp in train.groupby("sequence", sort=False):
        if exclude and seq in exclude:
            continue
        rows = grp.index.to_numpy()
        ok = ~np.isnan(store.j3d[rows]).any(axis=(1, 2))
        # split into runs of consecutive labelled frames (a gap in frame numbers also cuts)
        gap = np.diff(grp["frame"].to_numpy()) != 1
        breaks = np.flatnonzero((np.diff(ok.astype(np.int8)) != 0) | gap) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            if len(run) and ok[run[0]]:
                seqs.append(np.asarray(store.j3d[rows[run]], dtype=np.float32))
                Ks.append(np.asarray(store.K[rows[run]], dtype=np.float32))
    return seqs, Ks
