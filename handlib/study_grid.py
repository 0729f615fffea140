"""A study's params file: read (``load_study``: includes, shared ``base`` parameters), expanded
into runs (``expand``: points x grid, each with its deterministic id, or the id of the finished
run it names again), and each run's notebook and stage config (``declared_parameters``,
``config_of``). See ``handlib.study`` for the file format."""
from __future__ import annotations

import ast
import difflib
import importlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from handlib.config import ConfigError
from handlib.paths import REPO_ROOT, results_dir
from handlib.repro import run_id

STAGE_CONFIGS = {"pretrain": "handlib.train.pretrain:PretrainConfig",
                 "adversarial": "handlib.train.adversarial_config:AdversarialConfig"}
TOP_KEYS = {"stages", "not_built", "results", "base", "include"}
STAGE_KEYS = {"name", "notebook", "parameters", "grid", "points", "always"}


class StudyError(ValueError):
    """A params file that cannot run; the message names file, stage, run and key."""


@dataclass
class Run:
    stage: str
    notebook: Path
    parameters: dict[str, Any]
    id: str
    out_dir: Path
    source: str = ""  # "<params file>: stage <i> (<name>)"
    deps: list[str] = field(default_factory=list)
    always: bool = False  # aggregation stages: run every time (they read whatever records exist)
    progress: str = ""  # "5/30, ~8 min, ~85 min left": where the run sits in its study (``label_progress``)


@dataclass
class Study:
    stages: list[dict[str, Any]]
    not_built: list[str] = field(default_factory=list)
    results: str | None = None
    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str = ""


# ---------------------------------------------------------------- params files
def _read_base(path: Path, seen: set) -> dict[str, dict]:
    raw = yaml.safe_load(path.read_text()) or {}
    base: dict[str, dict] = {}
    for inc in raw.get("include", []) or []:
        p = (path.parent / inc).resolve()
        if p in seen:
            raise StudyError(f"{path}: include cycle through {p}")
        for k, v in _read_base(p, seen | {p}).items():
            base[k] = {**base.get(k, {}), **v}
    for k, v in (raw.get("base") or {}).items():
        base[k] = {**base.get(k, {}), **(v or {})}
    return base


def load_study(path: str | Path) -> Study:
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise StudyError(f"{path}: unknown top-level keys "
                         + ", ".join(f"{k!r}{did_you_mean(k, TOP_KEYS)}" for k in sorted(unknown)))
    for i, st in enumerate(raw.get("stages", [])):
        missing = {"name", "notebook"} - set(st)
        if missing:
            raise StudyError(f"{path}: stage {i} lacks {sorted(missing)}")
        extra = set(st) - STAGE_KEYS
        if extra:
            raise StudyError(f"{path}: stage {i} ({st['name']}): unknown keys "
                             + ", ".join(f"{k!r}{did_you_mean(k, STAGE_KEYS)}" for k in sorted(extra)))
    return Study(raw.get("stages", []), raw.get("not_built", []), raw.get("results"),
                 _read_base(path.resolve(), {path.resolve()}), str(path))


def expand(study: Study, only: list[str] | None = None) -> list[Run]:
    """All runs of a study, in file order: each stage's points x grid in row-major order."""
    runs = []
    res = results_dir(study.results)
    for i, st in enumerate(study.stages):
        if only and st["name"] not in only:
            continue
        grid = st.get("grid") or {}
        keys = list(grid)
        for point in st.get("points") or [{}]:
            for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
                cell = {}
                for k, v in zip(keys, values):  # a mapping sets its keys together (a linked axis)
                    cell.update(v if isinstance(v, dict) else {k: v})
                params = {**study.base.get(st["name"], {}), **(st.get("parameters") or {}), **point, **cell}
                rid = run_id(st["name"], params, list(point) + list(cell))
                rid = _finished_alias(res, st["name"], rid) or _same_config(res, st["name"], params) or rid
                runs.append(Run(st["name"], REPO_ROOT / st["notebook"], params, rid, res / "runs" / rid,
                                f"{study.path}: stage {i} ({st['name']})", always=bool(st.get("always"))))
    return runs


IGNORED = ("run_name", "progress")  # config fields that do not change a run's result


def _same_config(res: Path, stage: str, params: dict) -> str | None:
    """A finished run of ``stage`` whose recorded config equals the one ``params`` build (the
    same run written with other, e.g. default-valued, keys)."""
    cls = stage_config(stage)
    if cls is None:
        return None
    try:
        want = cls.from_params({k: v for k, v in params.items() if k in cls.field_names()}).to_dict()
    except (ConfigError, TypeError):
        return None  # the pre-flight check reports it
    cfg = cls(**want)
    skip = set(IGNORED) | set(cfg.unused_fields() if hasattr(cfg, "unused_fields") else ())
    if want.get("pretrain_run") is None:  # resolved by the stage and recorded: any is fine
        skip.add("pretrain_run")
    want = {k: v for k, v in want.items() if k not in skip}
    for d in sorted((res / "runs").glob(f"{stage}__*")):
        c = d / "config.json"
        if not (c.exists() and _finished(d)):
            continue
        got = cls.record_params(json.loads(c.read_text()))  # older names and defaults as recorded
        if all(got.get(k, cls.__dataclass_fields__[k].default) == v for k, v in want.items()):
            return d.name
    return None


def _finished_alias(res: Path, stage: str, rid: str) -> str | None:
    """A finished run of the same stage and parameter hash under another id (other grid keys)."""
    h = rid.rsplit("__", 1)[-1]
    for d in sorted((res / "runs").glob(f"{stage}__*{h}")):
        if d.name.rsplit("__", 1)[-1] == h and _finished(d):
            return d.name
    return None


def _finished(d: Path) -> bool:
    return (d / "metrics.json").exists() or (d / "DONE").exists()


def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell."""
    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise StudyError(f"{notebook}: no cell tagged 'parameters'")
    names = []
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def stage_config(stage: str):
    """The config class of a stage (None for notebooks without one)."""
    if stage not in STAGE_CONFIGS:
        return None
    mod, name = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(mod), name)


def config_of(run: Run):
    cls = stage_config(run.stage)
    if cls is None:
        return None
    return cls.from_params({k: v for k, v in run.parameters.items() if k in cls.field_names()})


def did_you_mean(name: str, allowed) -> str:
    """' (did you mean 'x'?)' for the closest allowed name, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
