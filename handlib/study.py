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

The runner's parts: ``study_grid`` (params files, runs and their ids), ``study_plan``
(pre-flight, dependencies, state, cost, the plan), ``study_exec`` (papermill, executors); this
module is the command line and gathers their names.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from handlib.paths import REPO_ROOT, results_dir
from handlib.repro import run_id  # noqa: F401  (re-exported)
from handlib.study_exec import (  # noqa: F401  (re-exported: the runner's API is handlib.study)
    _DropUnknownParameter,
    execute,
    execute_safely,
    local_executor,
    run_waves,
    submitit_executor,
)
from handlib.study_grid import (  # noqa: F401
    IGNORED,
    STAGE_CONFIGS,
    Run,
    Study,
    StudyError,
    _finished,
    _finished_alias,
    _same_config,
    config_of,
    declared_parameters,
    did_you_mean,
    expand,
    load_study,
    stage_config,
)
from handlib.study_plan import (  # noqa: F401
    COST_KEYS,
    code_version,
    estimate,
    label_progress,
    outdated,
    plan,
    preflight,
    recorded_wall,
    resolve_dependencies,
    run_state,
    unpaired_seeds,
)


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
