"""The study runner: stage notebooks x parameter grids from params/*.yaml, run with papermill.

    python -m handlib.study --params params/quick.yaml [--dry-run] [--only pretrain]

A params file lists stages; each names a notebook, its fixed ``parameters``, an
optional ``grid`` (lists whose product gives one run each) and optional ``points`` (a
list of explicit parameter sets, e.g. ``{seed: 1, pretrain_seed: 1}``; with a grid, each
point is combined with every grid cell). Every run gets a
deterministic id (``handlib.repro.run_id`` over the stage name and its parameters,
the grid keys in clear). Notebooks that declare a ``run_name`` parameter receive that
id and write their record to ``results/runs/<id>/``; the executed notebook is saved
there as ``run.ipynb``. A run whose ``metrics.json`` exists is skipped, so an
interrupted study resumes where it stopped; a run is known by its stage and the hash of
its parameters, so the same parameters listed in another file (under other grid keys)
reuse the finished run instead of repeating it.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handlib.paths import REPO_ROOT, results_dir
from handlib.repro import atomic_write_text, run_id


@dataclass
class Run:
    stage: str
    notebook: Path
    parameters: dict[str, Any]
    id: str
    out_dir: Path


@dataclass
class Study:
    stages: list[dict[str, Any]]
    not_built: list[str] = field(default_factory=list)
    results: str | None = None


def load_study(path: str | Path) -> Study:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - {"stages", "not_built", "results"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    for i, st in enumerate(raw.get("stages", [])):
        missing = {"name", "notebook"} - set(st)
        if missing:
            raise ValueError(f"{path}: stage {i} lacks {sorted(missing)}")
    return Study(raw.get("stages", []), raw.get("not_built", []), raw.get("results"))


def expand(study: Study, only: list[str] | None = None) -> list[Run]:
    """All runs of a study, in order: each stage's grid expanded in row-major order."""
    runs = []
    res = results_dir(study.results)
    for st in study.stages:
        if only and st["name"] not in only:
            continue
        grid = st.get("grid") or {}
        keys = list(grid)
        for point in st.get("points") or [{}]:
            for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
                params = {**(st.get("parameters") or {}), **point, **dict(zip(keys, values))}
                rid = run_id(st["name"], params, list(point) + keys)
                rid = _finished_alias(res, st["name"], rid) or rid
                runs.append(Run(st["name"], REPO_ROOT / st["notebook"], params, rid, res / "runs" / rid))
    return runs


def _finished_alias(res: Path, stage: str, rid: str) -> str | None:
    """A finished run of the same stage and parameter hash under another id (other grid keys)."""
    h = rid.rsplit("__", 1)[-1]
    for d in sorted((res / "runs").glob(f"{stage}__*{h}")):
        if d.name.rsplit("__", 1)[-1] == h and ((d / "metrics.json").exists() or (d / "DONE").exists()):
            return d.name
    return None


def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell."""
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(f"{notebook}: no cell tagged 'parameters'")
    names = []
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def execute(run: Run) -> str:
    """Run one notebook with papermill in the current interpreter; returns its status."""
    import papermill as pm

    if (run.out_dir / "metrics.json").exists() or (run.out_dir / "DONE").exists():
        return "skipped (done)"
    declared = declared_parameters(run.notebook)
    params = dict(run.parameters)
    if "run_name" in declared:
        params["run_name"] = run.id
    unknown = set(params) - set(declared)
    if unknown:
        raise ValueError(f"{run.notebook.name}: parameters {sorted(unknown)} are not declared by the notebook")
    run.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pm.execute_notebook(str(run.notebook), str(run.out_dir / "run.ipynb"), parameters=params,
                        kernel_name="python3", language="python", cwd=str(run.notebook.parent),
                        progress_bar=False)
    if "run_name" not in declared:  # data notebooks write no metrics: mark completion here
        atomic_write_text(run.out_dir / "DONE", f"{time.time() - t0:.1f} s\n")
    return f"ran in {time.time() - t0:.0f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handlib.study", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO_ROOT / "params" / "quick.yaml"))
    ap.add_argument("--only", nargs="*", help="stage names to run")
    ap.add_argument("--dry-run", action="store_true", help="list the runs without executing")
    args = ap.parse_args(argv)
    study = load_study(args.params)
    runs = expand(study, args.only)
    print(f"{len(runs)} run(s) from {args.params}")
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.stage}: {run.id}"
        if args.dry_run:
            print(head, run.parameters)
            continue
        print(head, "...", flush=True)
        print(f"    {execute(run)} -> {run.out_dir}", flush=True)
    for item in study.not_built:
        print(f"NOT BUILT YET: {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
