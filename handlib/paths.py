"""Where handlib keeps things: a cache (generated data, checkpoints) outside git,
and the results tree. Both overridable by environment variables."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """``override`` > $HANDLIB_CACHE > $XDG_CACHE_HOME/handlib > ~/.cache/handlib."""
    if override:
        p = Path(override)
    elif os.environ.get("HANDLIB_CACHE"):
        p = Path(os.environ["HANDLIB_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        p = Path(base) / "handlib"
    p.mkdir(parents=True, exist_ok=True)
    return p


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """``override`` > $HANDLIB_RESULTS > <repo>/results; a relative ``override`` is taken from
    the repository root (notebooks run in notebooks/, the runner anywhere: both agree)."""
    if override:
        p = Path(override)
        p = p if p.is_absolute() else REPO_ROOT / p
    elif os.environ.get("HANDLIB_RESULTS"):
        p = Path(os.environ["HANDLIB_RESULTS"])
    else:
        p = REPO_ROOT / "results"
    p.mkdir(parents=True, exist_ok=True)
    return p
