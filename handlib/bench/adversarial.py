"""``python -m handlib.bench adversarial --size 128``: one JSON line.

adversarial_img_s: images per second of an adversarial step through THE loop (every frame
through M counted: ``--batch`` labelled + ``--unlabelled`` frames of video windows of S), with
D's updates (``--d-config``: D's options and training, e.g. k updates, replay, NDA), the motion
windows and the encoder included. supervised_img_s: the supervised continuation's step
(labelled frames only), same task, loop, batch and precision.
ratio = time per image (adversarial / supervised); target <= 1.15 (D and the windows cost
little next to M). Both are timed alternately ``--repeats`` times; the best of each is kept.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from handlib.data.datasets import LabelledFrames, MotionWindows, VideoWindows
from handlib.models.motion import MotionDiscriminator
from handlib.models.pose import PoseConfig, PoseModel
from handlib.train.adversarial import AdversarialConfig, AdversarialTask
from handlib.train.loop import LoopConfig, resolve_runtime, train


def time_method(data, method: str, rt, args) -> float:
    """Images per second (labelled + unlabelled frames through M) of ``method``'s steps."""
    torch.manual_seed(0)
    store = data.store
    cfg = AdversarialConfig(method=method, S=args.S, unlabelled_frames=args.unlabelled, batch_size=args.batch,
                            d_warmup=0, lambda_warmup=0, image_size=args.size, progress=False,
                            **json.loads(args.d_config))
    model = PoseModel(PoseConfig(image_size=args.size))
    D = MotionDiscriminator(cfg.motion_config()) if cfg.uses_d else None
    train_seqs = store.sequences("train")
    streams = {"labelled": (LabelledFrames(store, store.rows_of(train_seqs)), args.batch)}
    n_win = args.unlabelled // cfg.window
    if cfg.uses_video:
        streams["unlabelled"] = (VideoWindows(store, train_seqs, S=cfg.window), n_win)
    if cfg.uses_d:
        dc = cfg.d_train_config()
        streams["motion"] = (MotionWindows(*data.motion, S=cfg.window), dc.real_batch * dc.updates)
    task = AdversarialTask(model, D, cfg, 1.0, 0.1)
    total = args.warmup + args.steps + 1  # the last step also saves a checkpoint: not timed
    stamps: dict[int, float] = {}
    lc = LoopConfig(steps=total, lr=1e-4, schedule="constant", log_every=10_000, resume=False,
                    progress=False, device=str(rt.device))
    with tempfile.TemporaryDirectory() as d:
        train(task, streams, lc, d, runtime=rt,
              on_step=lambda s, _: stamps.__setitem__(s, time.perf_counter()))
    per_step = args.batch + (n_win * cfg.window if cfg.uses_video else 0)
    return per_step * args.steps / (stamps[args.warmup + args.steps] - stamps[args.warmup])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.bench adversarial")
    p.add_argument("what", nargs="?", default="adversarial")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16, help="labelled frames per step")
    p.add_argument("--unlabelled", type=int, default=32, help="unlabelled frames per step")
    p.add_argument("--S", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", default="quick")
    p.add_argument("--d-config", default="{}", help="JSON of AdversarialConfig fields for D (e.g. replay, NDA)")
    p.add_argument("--cache-root", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    args = p.parse_args(argv)
    from handlib.data.registry import load_dataset

    rt = resolve_runtime(args.device, args.precision, args.channels_last)
    data = load_dataset("handsim", preset=args.preset, image_size=args.size, cache_root=args.cache_root)
    adv, sup = [], []
    for _ in range(args.repeats):
        adv.append(time_method(data, "adversarial", rt, args))
        sup.append(time_method(data, "supervised", rt, args))
    out = {"bench": "adversarial", "size": args.size, "batch": args.batch, "unlabelled": args.unlabelled,
           "S": args.S, "d_config": json.loads(args.d_config), "data": f"handsim:{args.preset}",
           **rt.record(), "steps": args.steps,
           "repeats": args.repeats, "adversarial_img_s": round(max(adv), 1), "supervised_img_s": round(max(sup), 1),
           "ratio": round(max(sup) / max(adv), 3),
           "adversarial_all": [round(v, 1) for v in adv], "supervised_all": [round(v, 1) for v in sup]}
    if rt.device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(rt.device)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
