"""Probe a trained D on any motion: does the learned prior recognise real hand motion, and does
it react to motion corrupted in time?

    python -m handlib.analysis.probe_d --d RUN_ID_OR_PATH --source handsim [--preset quick]
    python -m handlib.analysis.probe_d --d RUN_ID_OR_PATH --source fphab --root /data/fphab [--split test]
    python -m handlib.analysis.probe_d --d RUN_ID_OR_PATH --source ho3d --root /data/ho3d

``--d`` is an adversarial run's id (its record names D's final checkpoint, ``d_checkpoint``;
``--which warm_start`` takes the warm-started one) or a checkpoint path. Motion: HandSim's
unpaired motion corpus (``--handsim-part corpus``) or the ground truth of its test videos
(``test``); FPHAB / HO3D ground-truth motion read from their annotation files only (no images).
Prints one JSON line: D's score distribution on the windows (``score_summary``) and its paired
sensitivity (``discriminator_sensitivity``), windows at ``--stride``.

HO3D's annotations are read without intrinsics; windows are encoded with a nominal camera
(``NOMINAL_K``): in "25d" the rays are x/z, y/z of the 3D joints whatever K is, so the encoding
does not depend on it (and "3d" is root-relative 3D).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from handlib.analysis.d_sensitivity import discriminator_sensitivity, score_summary, score_windows
from handlib.data.datasets import MotionWindows
from handlib.data.fphab import CAM_INTR
from handlib.data.fphab import read_motion as read_fphab_motion
from handlib.data.ho3d import read_motion as read_ho3d_motion
from handlib.data.realdata import train_motion
from handlib.data.registry import load_dataset
from handlib.models.motion import MotionDiscriminator, load_discriminator
from handlib.paths import results_dir

NOMINAL_K = np.array([[617.0, 0.0, 320.0], [0.0, 617.0, 240.0], [0.0, 0.0, 1.0]], np.float32)


def resolve_d(d: str, which: str = "final", results: str | None = None) -> Path:
    """A checkpoint path, or an adversarial run id -> the D checkpoint its record names."""
    p = Path(d)
    if p.suffix == ".pt" and p.exists():
        return p
    met = results_dir(results) / "runs" / d / "metrics.json"
    if not met.exists():
        raise FileNotFoundError(f"probe_d: {d} is neither a checkpoint file nor a finished run ({met})")
    m = json.loads(met.read_text())
    key = {"final": "d_checkpoint", "warm_start": "d_warm_start_checkpoint"}[which]
    if not m.get(key):
        raise FileNotFoundError(f"probe_d: the record of {d} names no {key} (made before D's checkpoints were kept)")
    path = Path(m[key])
    if not path.exists():
        raise FileNotFoundError(f"probe_d: {path} is gone (cache wiped or another machine)")
    return path


def motion_of(source: str, root=None, split: str = "train", preset: str = "quick", handsim_part: str = "corpus",
              cache_root=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(sequences (T, 21, 3) mm camera frame, Ks) of a motion source."""
    if source == "handsim":
        data = load_dataset("handsim", preset=preset, cache_root=cache_root)
        if handsim_part == "corpus":
            seqs, Ks = data.motion
            return list(seqs), list(Ks)
        return train_motion(data.store, split=handsim_part)
    if source == "fphab":
        seqs = read_fphab_motion(root, split)
        return seqs, [CAM_INTR.astype(np.float32)] * len(seqs)
    if source == "ho3d":
        seqs = read_ho3d_motion(root, split)
        return seqs, [NOMINAL_K] * len(seqs)
    raise ValueError(f"probe_d: unknown source {source!r} (handsim, fphab, ho3d)")


def probe_motion(D: MotionDiscriminator, seqs: list[np.ndarray], Ks: list[np.ndarray], representation: str = "25d",
                 center: bool = False, stride: int = 4, seed: int = 0, max_windows: int = 5000) -> dict:
    """D's score distribution and paired sensitivity on every window (S = D's) of ``seqs``
    (at most ``max_windows``, evenly spread)."""
    mw = MotionWindows(seqs, Ks, S=D.cfg.S, stride=stride)
    if not len(mw):
        raise ValueError(f"probe_d: no window of {D.cfg.S} frames in {len(seqs)} sequences")
    idx = np.unique(np.linspace(0, len(mw) - 1, min(len(mw), max_windows)).round().astype(int)).tolist()
    w = mw.__getitems__(idx)
    D.eval()
    scores = score_windows(D, w["j3d"], w["K"], representation, center)
    return {"n_sequences": len(seqs), "n_windows": len(idx), "stride": stride,
            "scores": score_summary(scores.numpy()),
            "sensitivity": discriminator_sensitivity(D, w, representation, center, seed=seed)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.analysis.probe_d")
    p.add_argument("--d", required=True, help="adversarial run id or D checkpoint (.pt)")
    p.add_argument("--which", default="final", choices=("final", "warm_start"))
    p.add_argument("--results", default=None)
    p.add_argument("--source", default="handsim", choices=("handsim", "fphab", "ho3d"))
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="train")
    p.add_argument("--preset", default="quick")
    p.add_argument("--handsim-part", default="corpus", help="corpus, or a split of the videos (test, train)")
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--max-windows", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-root", default=None)
    args = p.parse_args(argv)
    path = resolve_d(args.d, args.which, args.results)
    D, extra = load_discriminator(path)
    seqs, Ks = motion_of(args.source, args.root, args.split, args.preset, args.handsim_part, args.cache_root)
    torch.manual_seed(args.seed)
    res = probe_motion(D, seqs, Ks, extra.get("representation", D.cfg.representation), bool(extra.get("center")),
                       args.stride, args.seed, args.max_windows)
    print(json.dumps({"d": str(path), "source": args.source, "part": args.handsim_part if args.source == "handsim"
                      else args.split, **res}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
