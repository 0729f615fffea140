"""Running a study's runs: one notebook with papermill (``execute``; ``execute_safely`` never
raises), level by level after their dependencies (``run_waves``), on this machine
(``local_executor``, optionally several at once) or as SLURM job arrays (``submitit_executor``)."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import submitit

from handlib.repro import atomic_write_text, git_commit
from handlib.study_grid import Run, StudyError, _finished, declared_parameters, stage_config
from handlib.study_plan import code_version


class _DropUnknownParameter(logging.Filter):
    def __init__(self, names: set[str]):
        super().__init__()
        self.names = {f"Passed unknown parameter: {n}" for n in names}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.names


def execute(run: Run, rerun: bool = False, stream: bool = True) -> str:
    """Run one notebook with papermill; returns its status. Raises on failure."""
    import papermill as pm  # deferred: it loads nbclient and jupyter (1-2 s); only running a notebook needs it

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
        with ThreadPoolExecutor(jobs) as pool:  # each run is its own kernel process
            out = list(pool.map(lambda r: execute_safely(r, r.id in rerun_ids or r.always, stream=False), runs))
        for res in out:
            print(f"    {res['id']}: {res['status']}: {res['msg']}", flush=True)
        return out
    ex.one_at_a_time = jobs <= 1
    return ex


def submitit_executor(folder: Path, cluster: str | None = "slurm", **slurm: Any):
    """Each wave as one submitit job array (``cluster="local"`` runs it on this machine: tests)."""
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
