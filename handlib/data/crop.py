"""The one crop-intrinsics function of the data layer.

Convention (OpenCV's, used by ``cv2.resize`` / ``cv2.warpAffine`` and by ``cv2.fillPoly``):
integer pixel coordinates are pixel *centres*. A square ``box`` = [x0, y0, side, side] px is the
region of the full image whose top-left pixel *corner* is (x0, y0); cutting it and resizing it to
``out_size`` px maps full-image pixel u to crop pixel u' with (u' + 0.5) = (u - x0 + 0.5) * s,
s = out_size / side. ``crop_K`` returns the K under which ``geometry.project`` of the 3D joints
lands exactly on those crop pixels: it is ``geometry.crop_intrinsics`` (u' = (u - b) * s) with the
box corner moved to b = x0 + (1/s - 1) / 2.

``centre_box`` converts a box given by the full-image pixel *centre* that should land on the
crop's first pixel centre (u' = (u - x0) * s, HandSim's rendering convention) to this one.
"""
from __future__ import annotations

import numpy as np
import torch

from handlib.geometry import crop_intrinsics


def crop_K(K: np.ndarray, box: np.ndarray, out_size: int) -> np.ndarray:
    """Crop intrinsics: K (..., 3, 3) full image, box (..., 4) [x0, y0, side, side] px (corner
    convention above) -> (..., 3, 3) float64, broadcast over the leading dims."""
    box = np.asarray(box, dtype=np.float64)
    K = np.broadcast_to(np.asarray(K, dtype=np.float64), box.shape[:-1] + (3, 3))
    shift = 0.5 * (box[..., 2] / out_size - 1.0)  # (1/s - 1) / 2
    b = box.copy()
    b[..., 0] += shift
    b[..., 1] += shift
    return crop_intrinsics(torch.from_numpy(K.copy()), torch.from_numpy(b), out_size).numpy()


def centre_box(box: np.ndarray, out_size: int) -> np.ndarray:
    """(..., 4) box whose x0, y0 is a pixel centre (u' = (u - x0) s) -> the same crop as a
    corner-convention box (x0 + 1/2 - 1/(2 s)), for ``crop_K``."""
    box = np.asarray(box, dtype=np.float64).copy()
    d = 0.5 - 0.5 * box[..., 2] / out_size
    box[..., 0] += d
    box[..., 1] += d
    return box


def propagate_boxes(boxes: np.ndarray) -> np.ndarray:
    """Label-free boxes for a sequence: (T, 4) per-frame boxes -> (T, 4) where frame t gets
    the box of frames t-1 and t-2 moved on at constant velocity (centre 2 c[t-1] - c[t-2],
    side of t-1). Frame 0 keeps its own box (a tracker's initialisation), frame 1 takes frame 0's."""
    boxes = np.asarray(boxes, dtype=np.float64)
    c = boxes[:, :2] + boxes[:, 2:] / 2
    prev = np.concatenate([c[:1], c[:-1]])
    prev2 = np.concatenate([c[:1], c[:1], c[:-2]])[: len(c)]
    side = np.concatenate([boxes[:1, 2:], boxes[:-1, 2:]])
    return np.concatenate([2 * prev - prev2 - side / 2, side], 1)


def propagate_specs(specs: list, split: str) -> None:
    """In place: the boxes of ``split``'s frames (FrameSpec list, ids with sequence, frame,
    split) become ``propagate_boxes`` of their sequence in frame order."""
    by_seq: dict[str, list] = {}
    for s in specs:
        if s.ids["split"] == split:
            by_seq.setdefault(s.ids["sequence"], []).append(s)
    for seq in by_seq.values():
        seq.sort(key=lambda s: s.ids["frame"])
        for s, b in zip(seq, propagate_boxes(np.stack([s.box for s in seq]))):
            s.box = b
