"""First-Person Hand Action Benchmark (FPHAB, Garcia-Hernando et al. CVPR'18) reader.

On-disk layout (as distributed)::

    ROOT/data_split_action_recognition.txt            "Training 600", "path class" lines, "Test 575", ...
    ROOT/Video_files/Subject_N/<action>/<seq>/color/color_XXXX.jpeg        1920x1080
    ROOT/Hand_pose_annotation_v1/Subject_N/<action>/<seq>/skeleton.txt     frame + 21*(x,y,z) mm world

Joints are moved from the magnetic-sensor world frame to the colour camera with the
published extrinsics (``CAM_EXTR``), put in the canonical order, and each frame is
cropped around its projected hand with a margin; the crop's K goes with it. Sequences
with empty or missing annotations are skipped with a logged reason (the official README
lists three such sequences: ``KNOWN_EMPTY``); a missing image or a malformed skeleton
file raises ``DatasetError`` naming the path.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handlib.data.crop import propagate_specs
from handlib.data.realdata import (
    DatasetError,
    FrameSpec,
    RealDataset,
    box_from_points,
    cached_store,
    file_signature,
    train_motion,
)
from handlib.geometry import project_np
from handlib.skeleton import FPHAB_TO_CANON

log = logging.getLogger(__name__)

SPLIT_FILE = "data_split_action_recognition.txt"
VIDEO_DIR = "Video_files"
POSE_DIR = "Hand_pose_annotation_v1"
PUBLISHED_SEQUENCES = {"train": 600, "test": 575}
KNOWN_EMPTY = ("Subject_2/close_milk/4", "Subject_2/put_tea_bag/2", "Subject_4/flip_sponge/2")

# Colour camera: world (mm) -> camera (mm) extrinsics and intrinsics published with FPHAB.
CAM_EXTR = np.array([
    [0.999988496304, -0.00468848412856, 0.000982563360594, 25.7],
    [0.00469115935266, 0.999985218048, -0.00273845880292, 1.22],
    [-0.000969709653873, 0.00274303671904, 0.99999576807, 3.902],
    [0.0, 0.0, 0.0, 1.0],
])
CAM_INTR = np.array([[1395.749023, 0.0, 935.732544], [0.0, 1395.749268, 540.681030], [0.0, 0.0, 1.0]])


def world_to_camera(j_world: np.ndarray) -> np.ndarray:
    """(..., 3) mm world -> (..., 3) mm colour-camera frame."""
    return j_world @ CAM_EXTR[:3, :3].T + CAM_EXTR[:3, 3]


def read_split_file(path: str | os.PathLike) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(sequence, class)], "test": [...]}``; the header counts must match."""
    path = Path(path)
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    declared: dict[str, int] = {}
    cur = None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit() or (cur is None and parts[0] not in ("Training", "Test")):
            raise DatasetError(f"{path}:{lineno}: expected 'Training N' / 'Test N' headers and "
                               f"'path class' lines, got {line!r}")
        if parts[0] in ("Training", "Test"):
            cur = "train" if parts[0] == "Training" else "test"
            declared[cur] = int(parts[1])
            continue
        out[cur].append((parts[0].strip("/"), int(parts[1])))
    for split in ("train", "test"):
        if split not in declared:
            raise DatasetError(f"{path}: no {'Training' if split == 'train' else 'Test'} header")
        if declared[split] != len(out[split]):
            raise DatasetError(f"{path}: header says {declared[split]} {split} sequences, "
                               f"file lists {len(out[split])}")
    return out


def read_skeleton(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T,) int, joints (T, 21, 3) mm world, FPHAB order). Empty file -> T = 0."""
    path = Path(path)
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 21, 3))
    bad = [i for i, r in enumerate(rows, 1) if len(r) != 64]
    if bad:
        raise DatasetError(f"{path}: line {bad[0]} has {len(rows[bad[0] - 1])} columns, "
                           "expected 64 (frame + 21 x (x, y, z))")
    try:
        arr = np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise DatasetError(f"{path}: non-numeric value ({e})") from None
    return arr[:, 0].astype(np.int64), arr[:, 1:].reshape(-1, 21, 3)


def image_path(root: Path, sequence: str, frame: int) -> Path:
    return root / VIDEO_DIR / sequence / "color" / f"color_{frame:04d}.jpeg"


def check_layout(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"FPHAB root {root} does not exist or is not a directory")
    missing = [n for n in (SPLIT_FILE, VIDEO_DIR, POSE_DIR) if not (root / n).exists()]
    if missing:
        raise DatasetError(f"{root} does not look like FPHAB: missing {', '.join(missing)}")
    return root


@dataclass
class Scan:
    """Everything found under a root, before any image is decoded."""

    specs: list[FrameSpec] = field(default_factory=list)
    sequences: dict[str, list[str]] = field(default_factory=lambda: {"train": [], "test": []})
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def scan_fphab(root, margin: float = 0.25, raise_on_problem: bool = True, strict: bool = False,
               skip_missing_images: bool = False) -> Scan:
    """Parse the split file and every skeleton, check every image exists, build FrameSpecs.

    Sequences with an empty or missing skeleton are skipped (``skipped``; an error if
    ``strict`` and not in ``KNOWN_EMPTY``). Missing images and malformed skeletons are
    problems: raised at once if ``raise_on_problem``, else collected; with
    ``skip_missing_images`` a missing image is collected (its frame dropped), never raised.
    """
    root = check_layout(root)
    split = read_split_file(root / SPLIT_FILE)
    scan = Scan()

    for name, entries in split.items():
        for seq, _cls in entries:
            skel = root / POSE_DIR / seq / "skeleton.txt"
            frames = np.zeros(0)
            if skel.exists():
                try:
                    frames, jw = read_skeleton(skel)
                except DatasetError as e:
                    if raise_on_problem:
                        raise
                    scan.problems.append((str(skel), str(e).split(": ", 1)[-1]))
                    continue
            if len(frames) == 0:
                reason = "empty skeleton.txt" if skel.exists() else "missing skeleton.txt"
                known = seq in KNOWN_EMPTY
                if strict and not known:
                    raise DatasetError(f"{skel}: {reason}")
                scan.skipped.append((str(skel), reason + (" (known, official README)" if known else "")))
                log.warning("FPHAB: skipping %s: %s", skel, reason)
                continue
            parts = seq.split("/")
            subject, action = parts[0], parts[1] if len(parts) > 1 else ""
            cam = world_to_camera(jw)[:, FPHAB_TO_CANON]  # (T, 21, 3) mm, canonical
            j2d = project_np(cam, CAM_INTR)  # (T, 21, 2) px of the full image
            for t, f in enumerate(frames):
                img = image_path(root, seq, int(f))
                if not img.exists():
                    if raise_on_problem and not skip_missing_images:
                        raise DatasetError(f"{img}: missing image (load_fphab(..., missing_images='skip') "
                                           "drops such frames; `python -m handlib.data check fphab ROOT` lists all)")
                    scan.problems.append((str(img), "missing image"))
                    continue
                scan.specs.append(FrameSpec(
                    image=str(img), j3d=cam[t].astype(np.float32), K=CAM_INTR.copy(),
                    box=box_from_points(j2d[t], margin),
                    ids={"sequence": seq, "subject": subject, "action": action, "frame": int(f),
                         "split": name}))
            scan.sequences[name].append(seq)
    return scan


TEST_CROPS = {  # test_crop -> the dataset's crop_source and crop_note
    "gt": {"crop_source": "gt_joints",
           "crop_note": "every crop (test too) around the frame's own true 2D joints, 25% margin"},
    "previous": {"crop_source": "previous_frame",
                 "crop_note": "test crops label-free: true boxes of frames t-1, t-2 propagated at constant "
                              "velocity (frame 0 initialises); training crops around true joints"},
}


def load_fphab(root, image_size: int = 128, cache_root=None, margin: float = 0.25,
               strict: bool = False, missing_images: str = "raise", workers: int = 4,
               test_crop: str = "gt") -> RealDataset:
    """FPHAB action split as a cached ``FrameStore`` plus the training split's motion.

    ``missing_images="skip"`` drops frames without an image (logged, listed in
    ``info["dropped"]``) instead of raising. ``test_crop``: "gt" crops every frame around its
    own true joints (the usual practice; reads the test labels); "previous" crops each test
    frame with the true boxes of frames t-1, t-2 propagated at constant velocity
    (``crop.propagate_boxes``; frame 0 initialises), training frames as with "gt"."""
    if missing_images not in ("raise", "skip"):
        raise ValueError(f"missing_images must be 'raise' or 'skip', not {missing_images!r}")
    if test_crop not in TEST_CROPS:
        raise ValueError(f"test_crop must be one of {list(TEST_CROPS)}, not {test_crop!r}")
    root = check_layout(root)

    def make_specs():
        scan = scan_fphab(root, margin=margin, strict=strict, skip_missing_images=missing_images == "skip")
        for path, reason in scan.problems:
            log.warning("FPHAB: dropping %s: %s", path, reason)
        info = {"skipped": scan.skipped, "dropped": scan.problems,
                "sequences": {k: len(v) for k, v in scan.sequences.items()},
                "published_sequences": PUBLISHED_SEQUENCES}
        if test_crop == "previous":
            propagate_specs(scan.specs, "test")
        return scan.specs, info

    settings = {"margin": margin, "strict": strict, "missing_images": missing_images,
                "listing": file_signature([root / SPLIT_FILE]),
                **({"test_crop": test_crop} if test_crop != "gt" else {})}
    store, path, info = cached_store("fphab", root, image_size, settings, make_specs,
                                     cache_root=cache_root, workers=workers)
    info.update(cache=str(path), frames=store.meta["split"].value_counts().to_dict())
    return RealDataset(store=store, motion=train_motion(store), info=info, **TEST_CROPS[test_crop])


def read_motion(root, split: str = "train") -> list[np.ndarray]:
    """Ground-truth motion of a split from the skeleton files only (no images): one
    (T, 21, 3) mm colour-camera, canonical-order array per sequence; empty ones skipped."""
    root = check_layout(root)
    out = []
    for seq, _cls in read_split_file(root / SPLIT_FILE)[split]:
        skel = root / POSE_DIR / seq / "skeleton.txt"
        if not skel.exists():
            log.warning("FPHAB: skipping %s: missing skeleton.txt", skel)
            continue
        _frames, jw = read_skeleton(skel)
        if len(jw):
            out.append(world_to_camera(jw)[:, FPHAB_TO_CANON].astype(np.float32))
    return out
