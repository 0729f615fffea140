"""``python -m handlib.bench train --size 128 --batch 32 [--head-stride 4|8|16]``: one JSON line.

pose_img_s: M's training throughput through THE loop (``handlib.train.loop.train``) with data
loading from the HandSim cache included (LabelledFrames over the memory-mapped store), the
supervised losses, AdamW and gradient clipping. resnet18_img_s: bare torchvision ResNet-18
forward + backward + AdamW step on a fixed in-memory batch, same size, batch, precision and
memory format, in the same process. ratio = pose / bare (target >= 0.9). ``--compile`` also
times the bare network under torch.compile; ``--threads`` sets torch's thread count. Both are timed
alternately ``--repeats`` times; the best of each is reported (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
import torchvision

from handlib.data.datasets import FrameStore, LabelledFrames
from handlib.models.pose import HEAD_STRIDE, PoseConfig, PoseModel
from handlib.train.loop import LoopConfig, resolve_runtime, train
from handlib.train.pretrain import SupervisedTask


def _store(args) -> tuple[FrameStore, str]:
    from handlib.data.registry import load_dataset

    hs = load_dataset("handsim", preset=args.preset, image_size=args.size, cache_root=args.cache_root)
    return hs.store, f"handsim:{args.preset}"


def time_pose(store: FrameStore, rt, args) -> float:
    torch.manual_seed(0)
    rows = np.flatnonzero((store.meta["split"] == "train").to_numpy())
    model = PoseModel(PoseConfig(image_size=args.size, head=args.head, head_stride=args.head_stride))
    task = SupervisedTask(model, "batch", lambda_z=1.0, lambda_root=0.1)
    total = args.warmup + args.steps + 1  # the last step also saves a checkpoint: not timed
    stamps: dict[int, float] = {}
    cfg = LoopConfig(steps=total, lr=1e-4, warmup_steps=0, log_every=10_000, resume=False,
                     num_workers=args.workers, progress=False, device=str(rt.device))
    with tempfile.TemporaryDirectory() as d:
        train(task, {"labelled": (LabelledFrames(store, rows), args.batch)}, cfg, d, runtime=rt,
              on_step=lambda s, _: stamps.__setitem__(s, time.perf_counter()))
    return args.batch * args.steps / (stamps[args.warmup + args.steps] - stamps[args.warmup])


def time_resnet(rt, args, compiled: bool = False) -> float:
    torch.manual_seed(0)
    mf = torch.channels_last if rt.channels_last else torch.contiguous_format
    net = torchvision.models.resnet18(weights=None).to(rt.device, memory_format=mf).train()
    if compiled:  # torch.compile (inductor); its compile time falls in the warm-up steps
        net = torch.compile(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.size, args.size, device=rt.device).contiguous(memory_format=mf)
    y = torch.randint(0, 1000, (args.batch,), device=rt.device)

    def step():
        with rt.autocast():
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    _sync(rt)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(rt)
    return args.batch * args.steps / (time.perf_counter() - t0)


def _sync(rt) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.bench train")
    p.add_argument("what", nargs="?", default="train")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--head", default="heatmap", choices=("heatmap", "regression"))
    p.add_argument("--head-stride", type=int, default=HEAD_STRIDE, choices=(4, 8, 16),
                   help="heatmap head's output stride (16: the first study's head)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--cache-root", default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--compile", action="store_true",
                   help="also time the bare ResNet-18 under torch.compile (compile time reported apart)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rt = resolve_runtime(args.device, args.precision, args.channels_last)
    store, source = _store(args)
    if store.image_size != args.size:
        raise ValueError(f"HandSim cache holds {store.image_size} px images, asked for {args.size}")
    pose, bare = [], []
    for _ in range(args.repeats):
        pose.append(time_pose(store, rt, args))
        bare.append(time_resnet(rt, args))
    out = {"bench": "train", "size": args.size, "batch": args.batch, "head": args.head,
           "head_stride": args.head_stride if args.head == "heatmap" else None, "data": source,
           **rt.record(), "workers": args.workers, "steps": args.steps,
           "repeats": args.repeats, "pose_img_s": round(max(pose), 1), "resnet18_img_s": round(max(bare), 1),
           "ratio": round(max(pose) / max(bare), 3),
           "pose_all": [round(v, 1) for v in pose], "resnet18_all": [round(v, 1) for v in bare]}
    if args.compile:
        t0 = time.perf_counter()
        first = time_resnet(rt, args, compiled=True)
        out["compile_first_s"] = round(time.perf_counter() - t0, 1)  # compile + warm-up + timed steps
        comp = [first] + [time_resnet(rt, args, compiled=True) for _ in range(args.repeats - 1)]
        out["resnet18_compiled_img_s"] = round(max(comp), 1)
        out["compiled_vs_eager"] = round(max(comp) / max(bare), 3)
    if rt.device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(rt.device)
    print(json.dumps(out))
    return 0
