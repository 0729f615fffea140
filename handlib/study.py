"""The study runner: stage notebooks x parameter grids from params/*.yaml, run with papermill.

    python -m handlib.study --params params/quick.yaml [--dry-run] [--only pretrain]
        [--jobs N] [--executor local|slurm] [--rerun-stale]

A params file lists ``stages``; each names a notebook, its ``parameters``, an optional
``grid`` (lists whose product gives one run each; a list of mappings is a linked axis whose
entries set several keys together, e.g. ``seed: [{seed: 0, pretrain_seed: 0}, ...]``) and
optional ``points`` (explicit parameter sets, e.g. ``{seed: 1, pretrain_seed: 1}``; with a
grid, each point is combined with every grid cell); ``always: true`` marks an aggregation
stage (the report), run every time after all other runs. Shared defaults sit once in
``base`` (stage name -> parameters), optionally read from files listed in ``include`` (paths
relative to the params file); a stage's own parameters override them.

Every run gets a deterministic id (``handlib.repro.run_id``: stage, the varied keys in
clear, a hash of all parameters). Notebooks that declare ``run_name`` receive it and write
their record to ``results/runs/<id>/``; the executed notebook is saved there as
``run.ipynb`` and the runner adds ``runner.json`` (code version, commit, wall time). A run
whose record exists is skipped (the same parameters under another id are reused), so an
interrupted study resumes; ``--dry-run`` marks runs made by other code as stale and
``--rerun-stale`` reruns them.

Before anything runs, every run's parameters are checked against its notebook's declared
parameters and its stage config (``STAGE_CONFIGS``): a bad key or value anywhere fails at
once, naming the file, the stage, the run and what is allowed. Adversarial-stage runs
depend on the pre-training run they start from; dependencies run first. A failed run does
not stop the others (its dependents are skipped); the study ends with a summary and a
non-zero exit status if any run failed.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import importlib
import itertools
import json
import logging
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handlib.config import ConfigError
from handlib.paths import REPO_ROOT, results_dir
from handlib.repro import atomic_write_text, git_commit, run_id

STAGE_CONFIGS = {"pretrain": "handlib.train.pretrain:PretrainConfig",
                 "adversarial": "handlib.train.adversarial:AdversarialConfig"}
COST_KEYS = ("dataset", "preset", "image_size", "steps", "frozen_steps", "batch_size", "method", "unlabelled_frames")


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


# ---------------------------------------------------------------- checks before running
def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters``-tagged cell."""
    import nbformat

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


def preflight(runs: list[Run]) -> None:
    """Every run's keys and values checked against its notebook and stage config; all
    problems reported together (StudyError) before anything runs."""
    errors, declared = [], {}
    for n, run in enumerate(runs, 1):
        if run.notebook not in declared:
            if not run.notebook.exists():
                errors.append(f"{run.source}: notebook {run.notebook} does not exist")
                declared[run.notebook] = None
                continue
            declared[run.notebook] = set(declared_parameters(run.notebook))
        names = declared[run.notebook]
        if names is None:
            continue
        cls = stage_config(run.stage)
        allowed = names | set(cls.field_names() if cls else ())
        bad = sorted(set(run.parameters) - allowed)
        if bad:
            errors.append(f"{run.source}, run {n} ({run.id}): unknown parameter(s) "
                          + ", ".join(f"{b!r}{did_you_mean(b, allowed)}" for b in bad)
                          + f" for {run.notebook.name}; allowed: {sorted(allowed)}")
            continue
        try:
            config_of(run)
        except (ConfigError, TypeError) as e:
            errors.append(f"{run.source}, run {n} ({run.id}): {e}")
    if errors:
        raise StudyError(f"{len(errors)} problem(s); nothing was run:\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------- dependencies and order
def resolve_dependencies(runs: list[Run]) -> list[Run]:
    """Fill ``deps`` (adversarial runs -> the pre-training run of this study they start from;
    ``always`` aggregation stages -> every other run) and order them: dependencies first, and
    each run's dependents as soon as they are ready (a pre-training, then its continuations,
    then the next pre-training), otherwise file order. Run one at a time, a study stopped
    part-way thus leaves finished comparisons, not a row of pre-trainings with none."""
    pre = [(r, config_of(r)) for r in runs if r.stage == "pretrain"]
    for r in runs:
        if r.stage != "adversarial":
            continue
        cfg = config_of(r)
        if cfg.pretrain_run:
            r.deps = [p.id for p, _ in pre if p.id == cfg.pretrain_run]
        else:
            r.deps = [p.id for p, pc in pre if cfg.starts_from(pc)]
    for r in runs:  # aggregation stages read the records of every other run
        if r.always:
            r.deps = [o.id for o in runs if not o.always]
    order, placed = [], set()
    pending = list(runs)
    while pending:
        ready = [r for r in pending if all(d in placed for d in r.deps)]
        if not ready:  # a cycle cannot arise from stages, but never loop forever
            raise StudyError("unsatisfiable dependencies: " + ", ".join(r.id for r in pending))
        # the dependents of what was just placed go first; else the first ready run in file order
        nxt = [r for r in ready if order and order[-1].id in r.deps and not r.always] or ready[:1]
        for r in nxt:
            order.append(r)
            placed.add(r.id)
        pending = [r for r in pending if r.id not in placed]
    return order


def unpaired_seeds(order: list[Run]) -> dict[str, str]:
    """Adversarial runs that start from another seed's pre-training although the study pre-trains
    their own seed too (a grid that varies ``seed`` without ``pretrain_seed``): run id -> note.
    Deliberate for an initialisation-only sweep, a mistake otherwise, so the plan says it."""
    pre = {r.id: config_of(r) for r in order if r.stage == "pretrain"}
    notes = {}
    for r in order:
        if r.stage != "adversarial" or len(r.deps) != 1 or r.deps[0] not in pre:
            continue
        cfg, dep = config_of(r), pre[r.deps[0]]
        own = [i for i, pc in pre.items() if pc.seed == cfg.seed and cfg.starts_from(pc, ignore=("pretrain_seed",))]
        if dep.seed != cfg.seed and own:
            notes[r.id] = (f"seed {cfg.seed} starts from pre-training seed {dep.seed}, though {own[0]} "
                           f"is in this study (set pretrain_seed to pair them)")
    return notes


# ---------------------------------------------------------------- code versions and cost
def code_version(notebook: Path) -> str:
    """Hash of handlib's sources and the notebook's cell sources (outputs ignored)."""
    import nbformat

    h = hashlib.sha1()
    for p in sorted((REPO_ROOT / "handlib").rglob("*.py")):
        h.update(p.relative_to(REPO_ROOT).as_posix().encode())
        h.update(p.read_bytes())
    nb = nbformat.read(str(notebook), as_version=4)
    h.update("\n".join(c.source for c in nb.cells).encode())
    return h.hexdigest()[:12]


def outdated(run: Run) -> bool:
    """A finished run that started from another pre-training run than the one it depends on
    now (e.g. the grid changed the pre-training's steps): its record no longer belongs to
    this study, so it is rerun (its parameters alone would have skipped it)."""
    m = run.out_dir / "metrics.json"
    if run.always or not run.deps or not m.exists():
        return False
    pre = json.loads(m.read_text()).get("pretrain_run")
    return pre is not None and pre not in run.deps


def run_state(run: Run, versions: dict[Path, str]) -> str:
    """'todo' (no record, or an outdated one: see ``outdated``), 'done', or 'stale' (finished
    by another code version, or by an unknown one)."""
    if not _finished(run.out_dir) or outdated(run):
        return "todo"
    info = run.out_dir / "runner.json"
    if not info.exists():
        return "stale"
    if run.notebook not in versions:
        versions[run.notebook] = code_version(run.notebook)
    return "done" if json.loads(info.read_text()).get("code") == versions[run.notebook] else "stale"


def recorded_wall(res: Path) -> list[tuple[str, dict, float]]:
    """(stage, parameters or config, wall seconds) of finished runs under ``res``."""
    out = []
    for d in sorted((res / "runs").glob("*")):
        wall, params = None, {}
        if (d / "runner.json").exists():
            info = json.loads((d / "runner.json").read_text())
            wall, params = info.get("wall_s"), info.get("parameters", {})
        if wall is None and (d / "metrics.json").exists() and (d / "config.json").exists():
            m, c = json.loads((d / "metrics.json").read_text()), json.loads((d / "config.json").read_text())
            wall, params = m.get("wall_time_s"), c.get("config", {})
        if wall is not None:
            out.append((d.name.split("__", 1)[0], params, float(wall)))
    return out


def estimate(run: Run, walls: list[tuple[str, dict, float]]) -> float | None:
    """Median wall time of recorded runs of the same stage that agree on the cost keys."""
    same = [w for s, p, w in walls if s == run.stage
            and all(p.get(k) == run.parameters.get(k) for k in COST_KEYS if k in run.parameters)]
    return statistics.median(same) if same else None


# ---------------------------------------------------------------- execution
class _DropUnknownParameter(logging.Filter):
    def __init__(self, names: set[str]):
        super().__init__()
        self.names = {f"Passed unknown parameter: {n}" for n in names}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.names


def execute(run: Run, rerun: bool = False, stream: bool = True) -> str:
    """Run one notebook with papermill; returns its status. Raises on failure."""
    import papermill as pm

    if _finished(run.out_dir) and not rerun:
        return "skipped (done)"
    declared = declared_parameters(run.notebook)
    params = dict(run.parameters)
    if "run_name" in declared:
        params["run_name"] = run.id
    cls = stage_config(run.stage)
    unknown = set(params) - set(declared) - set(cls.field_names() if cls else ())
    if unknown:
        raise StudyError(f"{run.notebook.name}: parameters {sorted(unknown)} are not declared by the notebook")
    run.out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "DONE"):
        (run.out_dir / stale).unlink(missing_ok=True)
    t0 = time.time()
    out = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if stream else {}
    # config fields the notebook does not name are expected (from_namespace reads them): keep
    # papermill's "Passed unknown parameter" warning for those off the user's screen
    quiet = _DropUnknownParameter(set(params) - set(declared))
    os.environ["HANDLIB_PROGRESS"] = "text"  # the kernel inherits it: text progress, a line per evaluation
    pm_log = logging.getLogger("papermill")
    pm_log.addFilter(quiet)
    try:
        pm.execute_notebook(str(run.notebook), str(run.out_dir / "run.ipynb"), parameters=params,
                            kernel_name="python3", language="python", cwd=str(run.notebook.parent),
                            progress_bar=False, kernel_manager_class="handlib.kernel.QuietKernelManager", **out)
    finally:
        pm_log.removeFilter(quiet)
    wall = time.time() - t0
    if "run_name" not in declared:  # data notebooks write no metrics: mark completion here
        atomic_write_text(run.out_dir / "DONE", f"{wall:.1f} s\n")
    atomic_write_text(run.out_dir / "runner.json", json.dumps(
        {"code": code_version(run.notebook), "commit": git_commit(), "wall_s": round(wall, 1),
         "parameters": run.parameters, "source": run.source}, indent=1, default=str))
    return f"ran in {wall:.0f} s"


def execute_safely(run: Run, rerun: bool = False, stream: bool = True) -> dict[str, Any]:
    """``execute`` that never raises: status done / skipped / failed, with the executed
    notebook's path and the error's last line for a failure."""
    t0 = time.time()
    try:
        msg = execute(run, rerun, stream)
        return {"id": run.id, "status": "skipped" if msg.startswith("skipped") else "done", "msg": msg,
                "wall_s": time.time() - t0}
    except Exception as e:  # noqa: BLE001 - a failed run is reported, the study goes on
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
        last = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1])
        return {"id": run.id, "status": "failed", "msg": last.strip()[:300], "notebook": str(run.out_dir / "run.ipynb"),
                "wall_s": time.time() - t0, "trace": traceback.format_exc(limit=3)}


def run_waves(order: list[Run], executor, rerun_ids: set[str]) -> list[dict]:
    """Runs level by level (a run waits for its dependencies); ``executor(runs, rerun_ids)``
    returns one result per run. Dependents of a failed run are skipped. An executor marked
    ``one_at_a_time`` gets the runs singly in ``order`` (depth-first: see resolve_dependencies)."""
    results: dict[str, dict] = {}
    pending = list(order)
    while pending:
        wave = [r for r in pending if all(d in results for d in r.deps)]
        if getattr(executor, "one_at_a_time", False):
            wave = wave[:1]
        blocked = [r for r in wave if not r.always and any(results[d]["status"] in ("failed", "blocked")
                                                           for d in r.deps)]
        for r in blocked:
            results[r.id] = {"id": r.id, "status": "blocked", "msg": "a run it depends on failed", "wall_s": 0.0}
        todo = [r for r in wave if r not in blocked]
        for res in executor(todo, rerun_ids) if todo else []:
            results[res["id"]] = res
        pending = [r for r in pending if r.id not in results]
    return [results[r.id] for r in order]


def local_executor(jobs: int = 1):
    def ex(runs: list[Run], rerun_ids: set[str]) -> list[dict]:
        out = []
        if jobs <= 1:
            for r in runs:
                when = time.strftime("%H:%M")
                print(f"[{r.stage}{' ' + r.progress if r.progress else ''}] {r.id} ... ({when})", flush=True)
                res = execute_safely(r, r.id in rerun_ids or r.always)
                print(f"    {res['status']}: {res['msg']}" + (f" (see {res['notebook']})" if "notebook" in res else ""),
                      flush=True)
                out.append(res)
            return out
        from concurrent.futures import ThreadPoolExecutor  # each run is its own kernel process

        with ThreadPoolExecutor(jobs) as pool:
            out = list(pool.map(lambda r: execute_safely(r, r.id in rerun_ids or r.always, stream=False), runs))
        for res in out:
            print(f"    {res['id']}: {res['status']}: {res['msg']}", flush=True)
        return out
    ex.one_at_a_time = jobs <= 1
    return ex


def submitit_executor(folder: Path, cluster: str | None = "slurm", **slurm: Any):
    """Each wave as one submitit job array (``cluster="local"`` runs it on this machine: tests)."""
    import submitit

    def ex(runs: list[Run], rerun_ids: set[str]) -> list[dict]:
        executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        executor.update_parameters(**{k: v for k, v in slurm.items() if v is not None})
        jobs = executor.map_array(execute_safely, runs, [r.id in rerun_ids or r.always for r in runs],
                                  [False] * len(runs))
        out = []
        for r, job in zip(runs, jobs):
            try:
                out.append(job.result())
            except Exception as e:  # noqa: BLE001 - the job itself died (e.g. timeout)
                out.append({"id": r.id, "status": "failed", "msg": str(e).strip().splitlines()[-1][:300],
                            "notebook": str(r.out_dir / "run.ipynb"), "wall_s": 0.0})
        return out
    return ex


def label_progress(order: list[Run], res: Path, rerun: set[str] = frozenset()) -> None:
    """Set each run's ``progress``: its place in the study, its estimated cost and the estimated
    time left from its start (runs still to do, from recorded similar runs; finished ones cost 0)."""
    walls = recorded_wall(res)
    est = [0.0 if (_finished(r.out_dir) and r.id not in rerun) or r.always else (estimate(r, walls) or 0.0)
           for r in order]
    for i, (r, e) in enumerate(zip(order, est)):
        left = sum(est[i:])
        r.progress = f"{i + 1}/{len(order)}" + (f", ~{e / 60:.0f} min, ~{left / 60:.0f} min left" if e else "")


# ---------------------------------------------------------------- command line
def plan(order: list[Run], res: Path) -> list[str]:
    """One line per run (state, id, dependencies, estimated cost) and a total per state."""
    walls, versions, lines, unpaired = recorded_wall(res), {}, [], unpaired_seeds(order)
    cost = {"todo": [0, 0.0], "stale": [0, 0.0], "done": [0, 0.0]}
    for i, r in enumerate(order, 1):
        state = run_state(r, versions)
        est = estimate(r, walls) if state != "done" else None
        cost[state][0] += 1
        cost[state][1] += est or 0.0
        deps = " after every other run" if r.always else (f" after {', '.join(r.deps)}" if r.deps else "")
        note = f" ~{est / 60:.1f} min" if est else (" (no similar run recorded)" if state != "done" else "")
        note += " (its record started from another pre-training run)" if state == "todo" and outdated(r) else ""
        note += f" NOTE: {unpaired[r.id]}" if r.id in unpaired else ""
        lines.append(f"[{i}/{len(order)}] {state:5s} {r.id}{deps}{note}")
    lines.append(f"{cost['todo'][0]} to do (~{cost['todo'][1] / 60:.0f} min), {cost['done'][0]} done, "
                 f"{cost['stale'][0]} stale: made by other code or by an unrecorded version "
                 f"(~{cost['stale'][1] / 60:.0f} min with --rerun-stale); estimates from recorded similar runs")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handlib.study", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO_ROOT / "params" / "quick.yaml"))
    ap.add_argument("--only", nargs="*", help="stage names to run")
    ap.add_argument("--dry-run", action="store_true", help="print the plan: runs, dependencies, state, cost")
    ap.add_argument("--rerun-stale", action="store_true", help="rerun runs finished by another code version")
    ap.add_argument("--jobs", type=int, default=1, help="local runs at once (1 is right for 2 cores)")
    ap.add_argument("--executor", choices=("local", "slurm"), default="local")
    ap.add_argument("--partition"), ap.add_argument("--time-min", type=int, default=240)
    ap.add_argument("--gpus", type=int, default=0), ap.add_argument("--array-parallelism", type=int, default=16)
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        study = load_study(args.params)
        runs = expand(study, args.only)
        preflight(runs)
        order = resolve_dependencies(runs)
    except StudyError as e:  # a mistake in the grid: say what, without a traceback
        print(f"python -m handlib.study: {e}", file=sys.stderr)
        return 2
    res = results_dir(study.results)
    print(f"{len(order)} run(s) from {args.params}", flush=True)
    unpaired = unpaired_seeds(order)
    if unpaired:
        print(f"NOTE: {len(unpaired)} adversarial run(s) start from another seed's pre-training, e.g. "
              + next(iter(unpaired.values())), flush=True)
    if args.dry_run:
        print("\n".join(plan(order, res)))
        return 0
    versions: dict[Path, str] = {}
    rerun = {r.id for r in order if outdated(r) or (args.rerun_stale and run_state(r, versions) == "stale")}
    label_progress(order, res, rerun)
    if args.executor == "slurm":
        ex = submitit_executor(res / "slurm", "slurm", slurm_partition=args.partition, timeout_min=args.time_min,
                               gpus_per_node=args.gpus or None, slurm_array_parallelism=args.array_parallelism)
    else:
        ex = local_executor(args.jobs)
    results = run_waves(order, ex, rerun)
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed", "blocked")}
    print(f"study finished in {time.time() - t0:.0f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for r in results:
        if r["status"] in ("failed", "blocked"):
            print(f"  {r['status'].upper()} {r['id']}: {r['msg']}" + (f"\n    notebook: {r['notebook']}"
                                                                        if "notebook" in r else ""))
    for item in study.not_built:
        print(f"NOT BUILT YET: {item}")
    return 1 if counts["failed"] or counts["blocked"] else 0


if __name__ == "__main__":
    sys.exit(main())
