"""Bounds a run's test metrics must fall in on every machine: the checked cells of the stage
notebooks print these lines instead of last-digit errors.

A smoke training of a few dozen steps turns the last-bit differences between CPU kernels and
precisions (AVX2 fp32, AVX-512 bf16, a GPU) into differences of tens of millimetres, so a
golden that prints rounded errors only holds on the machine that made it. What holds
everywhere is that the metrics exist, are finite and are plausible for a hand: each bound is
wide enough for any machine's smoke run, and narrow enough that a broken stage (NaN, a unit
error, an error 10x too large, a metric missing) prints a different line.

    print(bounds_line(metrics["test"]["overall"], image_size=64))
    # mpjpe_abs in [1, 2000] mm, mpjpe_rr in [5, 200] mm, mpjpe_pa in [2, 60] mm, epe_2d in [0.5, 32] px: ok
"""
from __future__ import annotations

import math

# mm for the MPJPEs; the 2D error's upper bound is half the crop side (``image_size / 2``), a model
# that predicts the crop's centre for every joint stays well inside it
SMOKE_BOUNDS = {"mpjpe_abs": (1.0, 2000.0), "mpjpe_rr": (5.0, 200.0), "mpjpe_pa": (2.0, 60.0), "epe_2d": (0.5, None)}
UNITS = {"epe_2d": "px"}


def bounds_for(image_size: int, bounds: dict | None = None) -> dict[str, tuple[float, float]]:
    """The bounds with the 2D error's upper bound resolved to half the crop side."""
    b = dict(SMOKE_BOUNDS if bounds is None else bounds)
    return {k: (lo, image_size / 2 if hi is None else hi) for k, (lo, hi) in b.items()}


def out_of_bounds(metrics: dict, image_size: int, bounds: dict | None = None) -> list[str]:
    """One line per metric that is missing, not finite or outside its bounds; [] when all hold."""
    problems = []
    for k, (lo, hi) in bounds_for(image_size, bounds).items():
        v = metrics.get(k)
        if v is None:
            problems.append(f"{k} missing")
        elif not math.isfinite(float(v)):
            problems.append(f"{k} = {v}")
        elif not lo <= float(v) <= hi:
            problems.append(f"{k} = {float(v):.1f} outside [{lo:g}, {hi:g}]")
    return problems


def bounds_line(metrics: dict, image_size: int, bounds: dict | None = None) -> str:
    """'<metric> in [lo, hi] unit, ...: ok', or the same with the problems instead of 'ok'."""
    rule = ", ".join(f"{k} in [{lo:g}, {hi:g}] {UNITS.get(k, 'mm')}"
                     for k, (lo, hi) in bounds_for(image_size, bounds).items())
    problems = out_of_bounds(metrics, image_size, bounds)
    return f"{rule}: " + ("ok" if not problems else "FAILED (" + "; ".join(problems) + ")")
