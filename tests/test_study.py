import json

import nbformat
import pytest

from handlib import study


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
