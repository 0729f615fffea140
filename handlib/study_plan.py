"""A study's plan: every run checked before anything runs (``preflight``), dependencies and
order (``resolve_dependencies``), each run's state (todo / done / stale, ``run_state``) and
estimated cost from recorded runs, and the plan ``--dry-run`` prints."""
from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import nbformat

from handlib.config import ConfigError
from handlib.paths import REPO_ROOT
from handlib.study_grid import Run, StudyError, _finished, config_of, declared_parameters, did_you_mean, stage_config

COST_KEYS = ("dataset", "preset", "image_size", "steps", "frozen_steps", "batch_size", "method", "unlabelled_frames")


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


def label_progress(order: list[Run], res: Path, rerun: set[str] = frozenset()) -> None:
    """Set each run's ``progress``: its place in the study, its estimated cost and the estimated
    time left from its start (runs still to do, from recorded similar runs; finished ones cost 0)."""
    walls = recorded_wall(res)
    est = [0.0 if (_finished(r.out_dir) and r.id not in rerun) or r.always else (estimate(r, walls) or 0.0)
           for r in order]
    for i, (r, e) in enumerate(zip(order, est)):
        left = sum(est[i:])
        r.progress = f"{i + 1}/{len(order)}" + (f", ~{e / 60:.0f} min, ~{left / 60:.0f} min left" if e else "")



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
