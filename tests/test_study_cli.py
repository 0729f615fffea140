"""The runner's command line: a grid with a mistake is refused before anything runs, with the
problems listed, a suggestion for a misspelt key, exit status 2 and no traceback."""
import subprocess
import sys

import yaml

from handlib import study
from handlib.paths import REPO_ROOT


def _grid(tmp_path, *parameters: dict, top: dict | None = None):
    """One adversarial stage per parameter dict."""
    y = tmp_path / "g.yaml"
    y.write_text(yaml.safe_dump({
        **(top or {}),
        "results": str(tmp_path / "res"),
        "stages": [{"name": "adversarial", "notebook": str(REPO_ROOT / "notebooks" / "03_adversarial.ipynb"),
                    "parameters": {"smoke": True, **p}} for p in parameters],
    }))
    return y


def test_did_you_mean_finds_the_closest_allowed_name():
    assert study.did_you_mean("lamda_mm", {"lambda_mm", "lambda_smooth", "d_lr"}) == " (did you mean 'lambda_mm'?)"
    assert study.did_you_mean("zzz", {"lambda_mm", "d_lr"}) == ""


def test_unknown_parameter_exits_2_with_a_suggestion_and_no_traceback(tmp_path, capsys):
    y = _grid(tmp_path, {"lamda_mm": 0.1}, {"method": "adversarail"})
    assert study.main(["--params", str(y), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s); nothing was run" in err and "did you mean 'lambda_mm'?" in err
    assert "adversarail" in err  # the second run's bad value is listed too
    assert not list((tmp_path / "res").rglob("*.json"))  # no run started


def test_misspelt_top_level_key_is_suggested(tmp_path, capsys):
    y = _grid(tmp_path, {}, top={"not_bulit": ["x"]})
    assert study.main(["--params", str(y), "--dry-run"]) == 2
    assert "did you mean 'not_built'?" in capsys.readouterr().err


def test_command_line_prints_no_traceback(tmp_path):
    y = _grid(tmp_path, {"lamda_mm": 0.1})
    p = subprocess.run([sys.executable, "-m", "handlib.study", "--params", str(y), "--dry-run"],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "did you mean 'lambda_mm'?" in p.stderr
