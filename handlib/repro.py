"""Seeding, run ids and atomic run records.

A run record is ``results/runs/<run_id>/{config.json, metrics.json, ...}``; it is
the only thing aggregation reads.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlib.paths import REPO_ROOT, results_dir

_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "handlib")


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels.
    Returns a torch Generator seeded with ``seed`` for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def git_commit(root: Path = REPO_ROOT) -> str:
    """Current commit hash, with '+dirty' if the tree has changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def device_info(device: str | torch.device | None = None) -> dict[str, Any]:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, Any] = {"device": str(dev), "machine": platform.machine(),
                            "threads": torch.get_num_threads()}
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


SLUG_MAX = 40  # characters of one value shown in a run id (a pre-training run's id as a value is
# ~120): ids stay well under the file system's 255 per name; the hash covers the full value


def _slug(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:g}"
    elif isinstance(v, (list, tuple)):
        s = "-".join(_slug(x) for x in v)
    else:
        s = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "", s.replace("/", "-"))[:SLUG_MAX]


def run_id(stage: str, config: dict[str, Any], vary: list[str] | tuple[str, ...] = ()) -> str:
    """Deterministic, readable id: ``<stage>__k1-v1__k2-v2__<hash8>``.

    ``vary`` names the keys shown in clear (those a grid varies); the short hash
    covers the whole config, so two configs never share an id.
    """
    h = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]
    parts = [stage] + [f"{k}-{_slug(config[k])}" for k in vary if k in config] + [h]
    return "__".join(parts)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class RunRecord:
    """The record of one run: ``results/runs/<run_id>/``."""

    def __init__(self, stage: str, config: dict[str, Any], seed: int,
                 vary: tuple[str, ...] | list[str] = (), results: str | Path | None = None,
                 device: str | torch.device | None = None, run_name: str | None = None):
        self.stage, self.config, self.seed = stage, dict(config), seed
        self.id = run_name or run_id(stage, {**self.config, "seed": seed}, list(vary) + ["seed"])
        self.dir = results_dir(results) / "runs" / self.id
        self.device = device

    def write_config(self) -> Path:
        rec = {"stage": self.stage, "run_id": self.id, "seed": self.seed, "config": self.config,
               "commit": git_commit(), "versions": versions(), "device": device_info(self.device)}
        atomic_write_json(self.dir / "config.json", rec)
        return self.dir / "config.json"

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        atomic_write_json(self.dir / "metrics.json", {"run_id": self.id, **metrics})
        return self.dir / "metrics.json"

    def path(self, name: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / name

    @property
    def done(self) -> bool:
        return (self.dir / "metrics.json").exists()


def read_records(results: str | Path | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    """All complete runs (config + metrics) under results/runs, optionally for one stage."""
    out = []
    for d in sorted((results_dir(results) / "runs").glob("*")):
        c, m = d / "config.json", d / "metrics.json"
        if not (c.exists() and m.exists()):
            continue
        cfg, met = json.loads(c.read_text()), json.loads(m.read_text())
        if stage is None or cfg.get("stage") == stage:
            out.append({"config": cfg, "metrics": met})
    return out
