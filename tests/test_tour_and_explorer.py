"""Notebook 00's facts and the explorer's account of missing checkpoints (records alone)."""
import pandas as pd
import pytest

from handlib.analysis import motion_stats as M
from handlib.analysis import tour
from handlib.config import ConfigError
from handlib.data.handsim import load_handsim
from handlib.explorer import checkpoint_status, how_to_make_checkpoints


def test_tour_config_and_facts():
    assert tour.TourConfig.from_namespace({"n_show": 4, "preset": "smoke"}).n_show == 4  # other names ignored
    with pytest.raises(ConfigError):
        tour.TourConfig.from_params({"n_show": 0})
    lines = tour.facts(load_handsim("smoke", progress=False))
    assert lines[0].startswith("sequences per split: {") and lines[-1].startswith("motion corpus sequences: ")


def test_motion_lines():
    wrist = pd.DataFrame({"camera": ["ego", "ego"], "ego_motion": [0.0, 1.0], "p50": [1.0, 3.0], "p90": [2.0, 5.0],
                          "p99": [4.0, 9.0]})
    assert M.wrist_lines(wrist)[-1] == "ego speed-up p50 / p90: 3.0 / 2.5"
    assert len(M.wrist_lines(wrist[:1])) == 1  # no speed-up without both settings


def test_explorer_names_runs_without_checkpoints_and_the_command():
    status = checkpoint_status("results/smoke")
    assert len(status) and set(status.grid) == {"params/smoke.yaml"}
    gone = status.assign(selected=False)
    note = how_to_make_checkpoints(gone, "results/smoke")
    assert f"{len(gone)} of {len(gone)} runs have no checkpoint" in note
    assert "mv results/smoke/runs results/smoke/runs.committed" in note
    assert "python -m handlib.study --params params/smoke.yaml" in note
    assert how_to_make_checkpoints(status.assign(selected=True, pretrained=True), "results/smoke") == ""
