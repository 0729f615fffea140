"""HO-3D v3 reader (Hampali et al., CVPR'20; v3 report arXiv:2107.00887); v2 also reads.

On-disk layout (as distributed)::

    ROOT/train.txt, ROOT/evaluation.txt          one "SEQ/id" line per frame
    ROOT/train/<SEQ>/rgb/<id>.jpg                (v2: .png), 640x480
    ROOT/train/<SEQ>/meta/<id>.pkl               handJoints3D (21,3) m OpenGL, camMat (3,3), ...
    ROOT/evaluation/<SEQ>/{rgb,meta}/...         meta: root joint (handJoints3D (3,)), handBoundingBox

Pickles are read with ``safe_pickle`` (untrusted files). Joints: OpenGL -> OpenCV
(negate y and z), metres -> mm, MANO order -> canonical. Training frames whose
``handJoints3D`` is None are excluded and counted. Evaluation frames carry no labels
(j3d NaN); their root joint is kept in meta (``root_x/y/z`` mm, OpenCV) and they are
cropped around ``handBoundingBox``. ``export_ho3d_submission`` writes predictions in the
official CodaLab format.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handlib.data import safe_pickle
from handlib.data.crop import propagate_specs
from handlib.data.realdata import (
    DatasetError,
    FrameSpec,
    RealDataset,
    box_from_bbox,
    box_from_points,
    cached_store,
    file_signature,
    train_motion,
)
from handlib.geometry import project_np
from handlib.repro import atomic_write_text
from handlib.skeleton import CANON_TO_MANO, MANO_TO_CANON

log = logging.getLogger(__name__)

SPLITS = {"train": "train", "evaluation": "test"}  # HO3D split name -> store split
# Published sizes: the official evaluation scripts (db_size) give 78,297 training and
# 20,137 evaluation samples for v3 (v2: 66,034 / 11,524, which are the list-file lengths);
# the official README counts 103,462 annotated images in v3, i.e. 83,325 training images.
PUBLISHED_FRAMES = {"train": 78297, "evaluation": 20137}
PUBLISHED_TRAIN_IMAGES = 83325
GL_TO_CV = np.array([1.0, -1.0, -1.0])
NUM_VERTS = 778


def check_layout(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"HO3D root {root} does not exist or is not a directory")
    missing = [n for n in ("train.txt", "evaluation.txt", "train", "evaluation") if not (root / n).exists()]
    if missing:
        raise DatasetError(f"{root} does not look like HO3D: missing {', '.join(missing)}")
    return root


def read_list(path: Path) -> list[tuple[str, str]]:
    """``SEQ/id`` lines -> [(SEQ, id)]."""
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1].isdigit():
            raise DatasetError(f"{path}:{lineno}: expected 'SEQ/id', got {line!r}")
        out.append((parts[0], parts[1]))
    return out


def find_image(root: Path, split: str, seq: str, fid: str) -> Path | None:
    for ext in (".jpg", ".png"):  # v3 jpg, v2 png
        p = root / split / seq / "rgb" / f"{fid}{ext}"
        if p.exists():
            return p
    return None


def read_meta(path: Path) -> dict:
    meta = safe_pickle.load(path)
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(meta).__name__}")
    return meta


def _array(meta: dict, key: str, path: Path, shapes: tuple[tuple[int, ...], ...]):
    v = meta.get(key)
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64)
    if a.shape not in shapes:
        raise DatasetError(f"{path}: {key} has shape {a.shape}, expected one of {list(shapes)}")
    return a


def subject_of(seq: str) -> str:
    """HO3D sequence names are a capture code plus a camera/take number (``ABF10``)."""
    return seq.rstrip("0123456789") or seq


@dataclass
class Scan:
    specs: list[FrameSpec] = field(default_factory=list)
    listed: dict[str, int] = field(default_factory=dict)  # lines per list file
    excluded: dict[str, int] = field(default_factory=dict)  # frames with None annotations
    problems: list[tuple[str, str]] = field(default_factory=list)


def scan_ho3d(root, margin: float = 0.25, raise_on_problem: bool = True) -> Scan:
    """Read both list files and every meta pickle; check images exist; build FrameSpecs."""
    root = check_layout(root)
    scan = Scan()
    for split, store_split in SPLITS.items():
        items = read_list(root / f"{split}.txt")
        scan.listed[split] = len(items)
        scan.excluded[split] = 0
        for seq, fid in items:
            mpath = root / split / seq / "meta" / f"{fid}.pkl"
            try:
                if not mpath.exists():
                    raise DatasetError(f"{mpath}: missing meta file")
                meta = read_meta(mpath)
                img = find_image(root, split, seq, fid)
                if img is None:
                    raise DatasetError(f"{root / split / seq / 'rgb' / fid}.jpg: missing image")
                if meta.get("handJoints3D") is None:  # no annotation for this frame
                    scan.excluded[split] += 1
                    continue
                K = _array(meta, "camMat", mpath, ((3, 3),))
                if K is None:
                    raise DatasetError(f"{mpath}: camMat is missing or None")
                ids = {"sequence": seq, "subject": subject_of(seq), "action": "", "frame": int(fid),
                       "split": store_split, "file_id": fid}
                if split == "train":
                    j = _array(meta, "handJoints3D", mpath, ((21, 3),))
                    cam = (j * GL_TO_CV * 1000.0)[MANO_TO_CANON]  # (21, 3) mm OpenCV canonical
                    box = box_from_points(project_np(cam, K), margin)
                    j3d = cam.astype(np.float32)
                    ids.update(root_x=cam[0, 0], root_y=cam[0, 1], root_z=cam[0, 2])
                else:
                    r = _array(meta, "handJoints3D", mpath, ((3,), (1, 3), (21, 3)))
                    bb = _array(meta, "handBoundingBox", mpath, ((4,),))
                    if bb is None:
                        raise DatasetError(f"{mpath}: handBoundingBox is missing or None")
                    rc = r.reshape(-1, 3)[0] * GL_TO_CV * 1000.0
                    box, j3d = box_from_bbox(bb, margin), np.full((21, 3), np.nan, np.float32)
                    ids.update(root_x=rc[0], root_y=rc[1], root_z=rc[2])
            except (DatasetError, pickle.UnpicklingError) as e:
                if raise_on_problem:
                    raise DatasetError(str(e)) from e
                path, _, reason = str(e).partition(": ")
                scan.problems.append((path, reason))
                continue
            scan.specs.append(FrameSpec(image=str(img), j3d=j3d, K=K, box=box, ids=ids))
    # rows of one sequence contiguous and frame-ordered (the FrameStore contract)
    scan.specs.sort(key=lambda s: (s.ids["split"] != "train", s.ids["sequence"], s.ids["frame"]))
    return scan


TEST_CROPS = {  # test_crop -> the dataset's crop_source and crop_note
    "gt": {"crop_source": "gt_joints+gt_bbox",
           "crop_note": "training crops around the true 2D joints; evaluation crops around the official "
                        "handBoundingBox (derived from the ground truth)"},
    "previous": {"crop_source": "previous_frame",
                 "crop_note": "evaluation crops: handBoundingBox of frames t-1, t-2 propagated at constant "
                              "velocity (frame 0 initialises); training crops around true joints"},
}


def load_ho3d(root, image_size: int = 128, cache_root=None, margin: float = 0.25,
              workers: int = 4, test_crop: str = "gt") -> RealDataset:
    """HO3D train (labelled) + evaluation (unlabelled, split 'test') as a cached store.
    ``test_crop`` "previous": evaluation crops from the previous frames' boxes (``TEST_CROPS``)."""
    if test_crop not in TEST_CROPS:
        raise ValueError(f"test_crop must be one of {list(TEST_CROPS)}, not {test_crop!r}")
    root = check_layout(root)

    def make_specs():
        scan = scan_ho3d(root, margin=margin)
        if scan.excluded.get("train"):
            log.warning("HO3D: excluded %d training frames with None annotations", scan.excluded["train"])
        if test_crop == "previous":
            propagate_specs(scan.specs, "test")
        return scan.specs, {"listed": scan.listed, "excluded_none": scan.excluded,
                            "published_frames": PUBLISHED_FRAMES}

    settings = {"margin": margin, "listing": file_signature([root / "train.txt", root / "evaluation.txt"]),
                **({"test_crop": test_crop} if test_crop != "gt" else {})}
    store, path, info = cached_store("ho3d", root, image_size, settings, make_specs,
                                     cache_root=cache_root, workers=workers)
    info.update(cache=str(path), frames=store.meta["split"].value_counts().to_dict())
    return RealDataset(store=store, motion=train_motion(store), info=info, **TEST_CROPS[test_crop])


def evaluation_keys(root) -> list[str]:
    """The official order of evaluation frames (``evaluation.txt``)."""
    return [f"{s}/{f}" for s, f in read_list(Path(root) / "evaluation.txt")]


def to_submission_frame(points_mm: np.ndarray) -> np.ndarray:
    """(..., P, 3) mm OpenCV -> metres OpenGL (the submission convention)."""
    return np.asarray(points_mm, dtype=np.float64) / 1000.0 * GL_TO_CV


def export_ho3d_submission(out_path, j3d: np.ndarray, keys: list[str], verts: np.ndarray | None = None,
                           expected_keys: list[str] | None = None, make_zip: bool = True) -> Path:
    """Write HO3D's CodaLab ``pred.json``: ``[joints, verts]``, one (21,3) and one (778,3)
    list per evaluation frame, metres, OpenGL, MANO joint order, in ``expected_keys``
    order (e.g. ``evaluation_keys(root)``). ``j3d``: (N,21,3) mm OpenCV canonical;
    ``verts``: (N,778,3) mm OpenCV or None (zeros are written: mesh scores meaningless).
    Also writes ``pred.zip`` next to it when ``make_zip``."""
    j3d = np.asarray(j3d, dtype=np.float64)
    if j3d.ndim != 3 or j3d.shape[1:] != (21, 3) or len(j3d) != len(keys):
        raise ValueError(f"export_ho3d_submission: j3d {j3d.shape} must be (len(keys)={len(keys)}, 21, 3)")
    if not np.isfinite(j3d).all():
        raise ValueError("export_ho3d_submission: non-finite joint predictions")
    if verts is None:
        log.warning("HO3D submission without vertices: writing zeros (mesh metrics meaningless)")
        verts = np.zeros((len(keys), NUM_VERTS, 3))
    verts = np.asarray(verts, dtype=np.float64)
    if verts.shape != (len(keys), NUM_VERTS, 3):
        raise ValueError(f"export_ho3d_submission: verts {verts.shape} must be ({len(keys)}, {NUM_VERTS}, 3)")
    order = list(range(len(keys)))
    if expected_keys is not None:
        pos = {k: i for i, k in enumerate(keys)}
        missing = [k for k in expected_keys if k not in pos]
        if missing:
            raise ValueError(f"export_ho3d_submission: {len(missing)} evaluation frames lack a "
                             f"prediction, e.g. {missing[0]}")
        order = [pos[k] for k in expected_keys]
    joints = to_submission_frame(j3d[order][:, CANON_TO_MANO])
    vs = to_submission_frame(verts[order])
    out_path = Path(out_path)
    atomic_write_text(out_path, json.dumps([joints.tolist(), vs.tolist()]))
    if make_zip:
        tmp = out_path.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(out_path, arcname="pred.json")
        os.replace(tmp, out_path.with_suffix(".zip"))
    return out_path


def read_motion(root, split: str = "train") -> list[np.ndarray]:
    """Ground-truth motion of the training split from the meta pickles only (no images):
    (T, 21, 3) mm OpenCV canonical arrays, cut at None annotations and frame gaps."""
    root = check_layout(root)
    if split != "train":
        raise ValueError("HO3D has 3D joints for the training split only")
    runs: list[list[np.ndarray]] = []
    prev = None
    for seq, fid in read_list(root / "train.txt"):
        mpath = root / "train" / seq / "meta" / f"{fid}.pkl"
        j = _array(read_meta(mpath), "handJoints3D", mpath, ((21, 3),))
        key = (seq, int(fid))
        if j is None:
            prev = None
            continue
        if prev is None or prev[0] != seq or prev[1] + 1 != key[1]:
            runs.append([])
        runs[-1].append((j * GL_TO_CV * 1000.0)[MANO_TO_CANON])
        prev = key
    return [np.stack(r).astype(np.float32) for r in runs]
