import dataclasses
import json

import nbformat
import pytest
import yaml

from handlib import study
from handlib.train.adversarial_config import AdversarialConfig


def _notebook(path, with_run_name=True):
    nb = nbformat.v4.new_notebook()
    params = "x = 1\nresults = ''\n" + ("run_name = ''\n" if with_run_name else "")
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import json, pathlib\n"
        "d = pathlib.Path(results) / 'runs' / run_name\n"
        "d.mkdir(parents=True, exist_ok=True)\n"
        "(d / 'metrics.json').write_text(json.dumps({'x2': x * 2}))\n"
        if with_run_name else "print(x)")
    nb.cells = [p, body]
    nbformat.write(nb, path)


def _params(tmp_path, nb):
    y = tmp_path / "s.yaml"
    y.write_text(
        f"results: {tmp_path / 'res'}\n"
        "stages:\n"
        f"  - {{name: demo, notebook: {nb}, parameters: {{results: {tmp_path / 'res'}}}, grid: {{x: [1, 2]}}}}\n"
        "not_built: [everything else]\n")
    return y


def test_expand_grid_and_ids(tmp_path):
    s = study.load_study(_params(tmp_path, tmp_path / "n.ipynb"))
    runs = study.expand(s)
    assert [r.parameters["x"] for r in runs] == [1, 2]
    assert runs[0].id.startswith("demo__x-1__") and runs[0].id != runs[1].id
    assert study.expand(s) [0].id == runs[0].id  # deterministic
    assert study.expand(s, only=["other"]) == []


def test_bad_params_file(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("stagez: []\n")
    with pytest.raises(ValueError, match="stagez"):
        study.load_study(y)
    y.write_text("stages:\n  - {name: a}\n")
    with pytest.raises(ValueError, match="notebook"):
        study.load_study(y)


@pytest.mark.slow
def test_execute_and_resume(tmp_path, capsys):
    nb = tmp_path / "n.ipynb"
    _notebook(nb)
    y = _params(tmp_path, nb)
    assert study.main(["--params", str(y)]) == 0
    runs = study.expand(study.load_study(y))
    for r in runs:
        assert json.loads((r.out_dir / "metrics.json").read_text()) == {"x2": 2 * r.parameters["x"]}
        assert (r.out_dir / "run.ipynb").exists()
    out = capsys.readouterr().out
    assert "NOT BUILT YET: everything else" in out
    assert study.execute(runs[0]) == "skipped (done)"


def test_undeclared_parameter_refused(tmp_path):
    nb = tmp_path / "n.ipynb"
    _notebook(nb, with_run_name=False)
    run = study.Run("demo", nb, {"nope": 1}, "demo__x", tmp_path / "o")
    with pytest.raises(ValueError, match="nope"):
        study.execute(run)


def test_points_and_reuse_of_a_finished_run_by_parameter_hash(tmp_path):
    res = tmp_path / "res"
    y = tmp_path / "p.yaml"
    y.write_text(
        f"results: {res}\n"
        "stages:\n"
        f"  - {{name: demo, notebook: n.ipynb, parameters: {{a: 1}}, grid: {{x: [1, 2]}},\n"
        "     points: [{seed: 0, pre: 0}, {seed: 1, pre: 1}]}\n")
    runs = study.expand(study.load_study(y))
    assert [(r.parameters["seed"], r.parameters["pre"], r.parameters["x"]) for r in runs] == [
        (0, 0, 1), (0, 0, 2), (1, 1, 1), (1, 1, 2)]
    assert runs[0].id.startswith("demo__seed-0__pre-0__x-1__")
    # the same parameters, finished under another id (another file's grid keys): reused
    other = study.run_id("demo", runs[3].parameters, ["x"])
    (res / "runs" / other).mkdir(parents=True)
    assert study.expand(study.load_study(y))[3].id == runs[3].id  # not finished yet: own id
    (res / "runs" / other / "metrics.json").write_text("{}")
    again = study.expand(study.load_study(y))
    assert again[3].id == other and again[3].out_dir == res / "runs" / other
    assert [r.id for r in again[:3]] == [r.id for r in runs[:3]]


def _nb(path, body="", params="x = 1\nresults = ''\nrun_name = ''\n"):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


WRITE = ("import json, pathlib\n"
         "d = pathlib.Path(results) / 'runs' / run_name\n"
         "d.mkdir(parents=True, exist_ok=True)\n"
         "if x == 2:\n    raise RuntimeError('x must not be 2')\n"
         "(d / 'metrics.json').write_text(json.dumps({'x2': x * 2}))\n")


def test_base_and_include_give_shared_defaults_that_stages_override(tmp_path):
    (tmp_path / "base.yaml").write_text("base:\n  demo: {a: 1, b: 1}\n  other: {z: 0}\n")
    y = tmp_path / "s.yaml"
    y.write_text("include: [base.yaml]\nbase:\n  demo: {b: 2}\nstages:\n"
                 "  - {name: demo, notebook: n.ipynb, parameters: {c: 3}, grid: {a: [5, 6]}}\n"
                 "  - {name: demo, notebook: n.ipynb}\n")
    runs = study.expand(study.load_study(y))
    assert [r.parameters for r in runs] == [{"a": 5, "b": 2, "c": 3}, {"a": 6, "b": 2, "c": 3}, {"a": 1, "b": 2}]


def test_preflight_names_file_stage_run_key_and_value_before_anything_runs(tmp_path, capsys):
    y = tmp_path / "s.yaml"
    y.write_text(f"results: {tmp_path / 'res'}\nstages:\n"
                 "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb, parameters: {smoke: true},\n"
                 "     grid: {fraction: [0.5, 1.0]}}\n"
                 "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb, parameters: {fraction: 1.5}}\n"
                 "  - {name: adversarial, notebook: notebooks/03_adversarial.ipynb, parameters: {lamda_mm: 0.1}}\n"
                 "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb, parameters: {val_fraction: 0.2}}\n")
    assert study.main(["--params", str(y)]) == 2  # the CLI lists the problems and exits 2, no traceback
    msg = capsys.readouterr().err
    assert "2 problem(s); nothing was run" in msg
    assert "stage 1 (pretrain), run 3" in msg and "fraction: 1.5 is out of range" in msg
    assert "stage 2 (adversarial), run 4" in msg and "lamda_mm" in msg
    assert "val_fraction" not in msg  # a config field the notebook does not declare is settable
    assert not list((tmp_path / "res").rglob("*.json"))


def test_dependencies_run_first_and_match_the_pretraining_seed(tmp_path):
    y = tmp_path / "s.yaml"
    y.write_text(f"results: {tmp_path / 'res'}\nstages:\n"
                 "  - {name: adversarial, notebook: notebooks/03_adversarial.ipynb,\n"
                 "     parameters: {smoke: true, fraction: 0.5}, points: [{pretrain_seed: 1, seed: 1}, {pretrain_seed: 0}]}\n"
                 "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb, parameters: {smoke: true, fraction: 0.5},\n"
                 "     grid: {seed: [0, 1]}}\n")
    runs = study.expand(study.load_study(y))
    study.preflight(runs)
    order = study.resolve_dependencies(runs)
    # depth-first: each pre-training is followed by the runs that continue from it
    assert [r.stage for r in order] == ["pretrain", "adversarial", "pretrain", "adversarial"]
    assert [order[0].parameters["seed"], order[2].parameters["seed"]] == [0, 1]
    assert order[1].deps == [order[0].id] and order[3].deps == [order[2].id]
    assert order[1].parameters["pretrain_seed"] == 0 and order[3].parameters["pretrain_seed"] == 1


def test_a_linked_grid_axis_sets_its_keys_together_and_unpaired_seeds_are_noted(tmp_path):
    def study_with(seed_axis):
        y = tmp_path / "s.yaml"
        y.write_text(f"results: {tmp_path / 'res'}\nstages:\n"
                     "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb, parameters: {smoke: true, fraction: 0.5},\n"
                     "     grid: {seed: [0, 1]}}\n"
                     "  - {name: adversarial, notebook: notebooks/03_adversarial.ipynb,\n"
                     "     parameters: {smoke: true, fraction: 0.5}, points: [{method: supervised}, {method: adversarial}],\n"
                     f"     grid: {{seed: {seed_axis}}}}}\n")
        runs = study.expand(study.load_study(y))
        study.preflight(runs)
        return study.resolve_dependencies(runs)

    order = study_with("[{seed: 0, pretrain_seed: 0}, {seed: 1, pretrain_seed: 1}]")
    adv = [r for r in order if r.stage == "adversarial"]
    assert [(r.parameters["method"], r.parameters["seed"], r.parameters["pretrain_seed"]) for r in adv] == [
        ("supervised", 0, 0), ("adversarial", 0, 0), ("supervised", 1, 1), ("adversarial", 1, 1)]
    assert adv[2].id.startswith("adversarial__method-supervised__seed-1__pretrain_seed-1__")
    pre = {r.parameters["seed"]: r.id for r in order if r.stage == "pretrain"}
    assert [r.deps for r in adv] == [[pre[0]], [pre[0]], [pre[1]], [pre[1]]]
    assert study.unpaired_seeds(order) == {}
    # the plain axis varies only M's seed: every run starts from seed 0's pre-training, and the plan says so
    order = study_with("[0, 1]")
    notes = study.unpaired_seeds(order)
    adv = [r for r in order if r.stage == "adversarial"]
    assert all(r.deps == [pre[0]] for r in adv)
    assert sorted(notes) == sorted(r.id for r in adv if r.parameters["seed"] == 1)
    assert all(pre[1] in n and "pretrain_seed" in n for n in notes.values())
    assert any("NOTE: seed 1 starts from pre-training seed 0" in line for line in study.plan(order, tmp_path / "res"))


@pytest.mark.slow
def test_a_failing_run_is_isolated_summarised_and_fails_the_study(tmp_path, capsys):
    nb = _nb(tmp_path / "n.ipynb", WRITE)
    y = tmp_path / "s.yaml"
    y.write_text(f"results: {tmp_path / 'res'}\nstages:\n"
                 f"  - {{name: demo, notebook: {nb}, parameters: {{results: {tmp_path / 'res'}}}, grid: {{x: [2, 3]}}}}\n")
    assert study.main(["--params", str(y)]) == 1
    out = capsys.readouterr().out
    assert "1 done, 0 skipped, 1 failed" in out
    assert "FAILED demo__x-2" in out and "x must not be 2" in out and "run.ipynb" in out
    runs = study.expand(study.load_study(y))
    assert not (runs[0].out_dir / "metrics.json").exists()
    assert json.loads((runs[1].out_dir / "metrics.json").read_text()) == {"x2": 6}
    info = json.loads((runs[1].out_dir / "runner.json").read_text())
    assert info["parameters"]["x"] == 3 and len(info["code"]) == 12
    # the plan: done (this code), todo (the failure); a changed notebook makes the done run stale
    lines = study.plan(study.resolve_dependencies(runs), tmp_path / "res")
    assert " todo  demo__x-2" in lines[0] and " done  demo__x-3" in lines[1]
    _nb(nb, WRITE + "# changed\n")
    lines = study.plan(study.resolve_dependencies(study.expand(study.load_study(y))), tmp_path / "res")
    assert " stale demo__x-3" in lines[1] and "~" in lines[0]  # cost estimated from the recorded run


def test_progress_labels_count_runs_and_estimate_the_time_left(tmp_path):
    res = tmp_path / "res"
    runs = [study.Run("demo", tmp_path / "n.ipynb", {"x": x}, f"demo__x-{x}", res / "runs" / f"demo__x-{x}")
            for x in (1, 2, 3)]
    runs[0].out_dir.mkdir(parents=True)
    (runs[0].out_dir / "metrics.json").write_text("{}")
    (runs[0].out_dir / "runner.json").write_text(json.dumps({"wall_s": 120.0, "parameters": {"x": 1}}))
    study.label_progress(runs, res)
    assert [r.progress for r in runs] == ["1/3", "2/3, ~2 min, ~4 min left", "3/3, ~2 min, ~2 min left"]
    study.label_progress(runs, res, rerun={"demo__x-1"})  # a finished run to be rerun costs again
    assert runs[0].progress == "1/3, ~2 min, ~6 min left"


def test_blocked_dependents_are_not_run(tmp_path):
    a = study.Run("pretrain", tmp_path / "a.ipynb", {}, "pre", tmp_path / "pre")
    b = study.Run("adversarial", tmp_path / "b.ipynb", {}, "adv", tmp_path / "adv", deps=["pre"])
    seen = []

    def ex(runs, rerun):
        seen.extend(r.id for r in runs)
        return [{"id": r.id, "status": "failed", "msg": "boom", "wall_s": 0.0} for r in runs]

    res = study.run_waves([a, b], ex, set())
    assert seen == ["pre"] and [r["status"] for r in res] == ["failed", "blocked"]


def test_one_at_a_time_runs_follow_the_depth_first_order(tmp_path):
    """Run singly, a pre-training's continuations run before the next pre-training (a study
    stopped part-way leaves finished comparisons); a parallel executor gets whole waves."""
    def run(i, deps=()):
        return study.Run("s", tmp_path / "n.ipynb", {}, i, tmp_path / i, deps=list(deps))

    runs = [run("p0"), run("p1"), run("a1", ["p1"]), run("a0", ["p0"]), run("b0", ["p0"]), run("r", ["p0", "p1"])]
    runs[-1].always = True
    order = study.resolve_dependencies(runs)
    assert [r.id for r in order] == ["p0", "a0", "b0", "p1", "a1", "r"]
    calls = []

    def ex(batch, rerun):
        calls.append([r.id for r in batch])
        return [{"id": r.id, "status": "done", "msg": "", "wall_s": 0.0} for r in batch]

    study.run_waves(order, ex, set())
    assert calls == [["p0", "p1"], ["a0", "b0", "a1"], ["r"]]
    calls.clear()
    ex.one_at_a_time = True
    study.run_waves(order, ex, set())
    assert calls == [["p0"], ["a0"], ["b0"], ["p1"], ["a1"], ["r"]]
    assert study.local_executor(1).one_at_a_time and not study.local_executor(2).one_at_a_time


@pytest.mark.slow
def test_submitit_local_executor_runs_a_wave(tmp_path):
    nb = _nb(tmp_path / "n.ipynb", WRITE)
    res = tmp_path / "res"
    runs = [study.Run("demo", nb, {"x": x, "results": str(res)}, f"demo__{x}", res / "runs" / f"demo__{x}")
            for x in (1, 2)]
    out = study.run_waves(runs, study.submitit_executor(tmp_path / "sub", cluster="local", timeout_min=5), set())
    assert [r["status"] for r in out] == ["done", "failed"] and "x must not be 2" in out[1]["msg"]
    assert json.loads((runs[0].out_dir / "metrics.json").read_text()) == {"x2": 2}


def test_a_finished_run_with_the_same_effective_config_is_reused(tmp_path):
    from handlib.train.pretrain import PretrainConfig

    res = tmp_path / "res"
    d = res / "runs" / "pretrain__old__12345678"
    d.mkdir(parents=True)
    cfg = PretrainConfig(smoke=True, fraction=0.5, run_name="pretrain__old__12345678").to_dict()
    del cfg["split_seed"]  # a record written before a field existed: its default applies
    (d / "config.json").write_text(json.dumps({"stage": "pretrain", "config": cfg}))
    (d / "metrics.json").write_text("{}")
    y = tmp_path / "s.yaml"
    y.write_text(f"results: {res}\nstages:\n"
                 "  - {name: pretrain, notebook: notebooks/02_pretrain.ipynb,\n"
                 "     parameters: {smoke: true, lr: 0.001, preset: smoke}, grid: {fraction: [0.5, 1.0]}}\n")
    runs = study.expand(study.load_study(y))
    assert runs[0].id == "pretrain__old__12345678" and runs[1].id != runs[0].id


def test_papermill_unknown_parameter_warning_dropped_only_for_config_fields():
    import logging

    from handlib.study import _DropUnknownParameter

    f = _DropUnknownParameter({"results"})
    rec = lambda msg: logging.LogRecord("papermill", logging.WARNING, __file__, 1, msg, None, None)  # noqa: E731
    assert not f.filter(rec("Passed unknown parameter: results"))
    assert f.filter(rec("Passed unknown parameter: resutls")) and f.filter(rec("Executing notebook"))


def test_a_record_from_another_pretraining_run_is_outdated_and_rerun(tmp_path):
    """Changing the pre-training's steps gives it a new id; an adversarial record made from the
    old checkpoint has the same parameters but no longer belongs: todo, not skipped."""
    nb = tmp_path / "nb.ipynb"
    d = tmp_path / "adv"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"pretrain_run": "pretrain__old"}))
    run = study.Run("adversarial", nb, {}, "adv", d, deps=["pretrain__new"])
    assert study.outdated(run) and study.run_state(run, {}) == "todo"
    assert "another pre-training run" in study.plan([run], tmp_path)[0]
    run.deps = ["pretrain__old"]
    assert not study.outdated(run)
    assert not study.outdated(study.Run("report", nb, {}, "rep", d, deps=["x"], always=True))


@pytest.mark.parametrize("grid", sorted(p.name for p in (study.REPO_ROOT / "params").glob("*.yaml") if p.name != "base.yaml"))
def test_every_committed_grid_passes_the_preflight_check(grid, tmp_path, monkeypatch):
    for name in ("FPHAB", "HO3D"):  # the paper grids read their data root from the environment
        monkeypatch.setenv(f"HANDLIB_{name}_ROOT", str(tmp_path))
    runs = study.expand(study.load_study(study.REPO_ROOT / "params" / grid))
    assert runs
    study.preflight(runs)  # raises StudyError naming file, stage, run and key
    study.resolve_dependencies(runs)


@pytest.mark.parametrize("path", sorted(p.name for p in (study.REPO_ROOT / "params" / "search").glob("*.yaml")))
def test_every_committed_search_file_names_real_config_fields(path):
    """``params/search/*.yaml`` are settings for the search CLIs, not study grids: every key of
    their base, settings and chosen rows must be a field of the stage's config."""
    spec = yaml.safe_load((study.REPO_ROOT / "params" / "search" / path).read_text())
    fields = {f.name for f in dataclasses.fields(AdversarialConfig)}
    rows = [spec["base"], *spec["settings"], spec.get("chosen", {})]
    assert spec["settings"]
    for row in rows:
        assert set(row) <= fields, set(row) - fields
        AdversarialConfig.from_params({**spec["base"], **row})
