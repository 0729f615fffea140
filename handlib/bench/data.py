"""Data benchmarks: ``render`` (HandSim frames rendered per second) and ``cache`` (decoded,
batched frames per second as the training loader sees them). Each prints one JSON line.

    python -m handlib.bench render --size 128
    python -m handlib.bench cache --preset quick --batch-size 64
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _render(args) -> dict:
    from handlib.data.handsim.anatomy import make_subject
    from handlib.data.handsim.motion import ACTION_NAMES, subject_style
    from handlib.data.handsim.render import render_sequence
    from handlib.data.handsim.scene import build_sequence, make_canon, make_look

    rng = np.random.default_rng(args.seed)
    canon = make_canon(rng)
    jobs = []
    t0 = time.perf_counter()
    for i in range(args.sequences):
        subj = make_subject(f"S{i}", rng)
        mode = ("ego", "third")[i % 2]
        scene = build_sequence(ACTION_NAMES[i % len(ACTION_NAMES)], subj, subject_style(rng), args.frames, mode,
                               args.size, rng, canon, 1.0)
        look, _ = make_look(rng, canon, 1.0, subj, 8.0, 1.0)
        jobs.append((scene, look))
    setup = time.perf_counter() - t0
    n = args.sequences * args.frames
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for scene, look in jobs:
            render_sequence(scene, look, args.size, np.random.default_rng(0))
        best = min(best, time.perf_counter() - t0)
    return {"bench": "render", "size": args.size, "frames": n, "seconds": round(best, 4),
            "frames_per_s": round(n / best, 1), "motion_and_scene_frames_per_s": round(n / setup, 1),
            "repeats": args.repeats}


def _cache(args) -> dict:
    from handlib.data.datasets import LabelledFrames, batch_loader
    from handlib.data.handsim import load_handsim

    t0 = time.perf_counter()
    hs = load_handsim(args.preset, cache_root=args.cache_root, progress=False)
    load_s = time.perf_counter() - t0
    st = hs.store
    rows = np.flatnonzero((st.meta["split"] == "train").to_numpy())
    ds = LabelledFrames(st, rows)
    best, n_best = float("inf"), 0
    for rep in range(args.repeats + 1):  # the first pass warms the page cache
        n = 0
        t0 = time.perf_counter()
        for batch in batch_loader(ds, args.batch_size, shuffle=True, seed=rep, num_workers=args.workers):
            n += batch["image"].shape[0]
            if n >= args.max_frames:
                break
        dt = time.perf_counter() - t0
        if rep > 0 and n / dt > (n_best / best if n_best else 0):
            best, n_best = dt, n
    return {"bench": "cache", "preset": args.preset, "image_size": st.image_size, "batch_size": args.batch_size,
            "frames": n_best, "seconds": round(best, 4), "frames_per_s": round(n_best / best, 1),
            "load_or_generate_s": round(load_s, 3), "workers": args.workers, "repeats": args.repeats}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("render", help="HandSim rendering throughput")
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--sequences", type=int, default=8)
    r.add_argument("--frames", type=int, default=60, help="frames per sequence")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("cache", help="cached HandSim read throughput through LabelledFrames + batch_loader")
    c.add_argument("--preset", default="quick")
    c.add_argument("--cache-root", default=None)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--max-frames", type=int, default=20000)
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    out = _render(args) if args.what == "render" else _cache(args)
    print(json.dumps(out))
    return 0
