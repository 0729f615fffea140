"""Every notebook's parameters cell is read the same way by papermill (which injects the
values) and by the runner's pre-flight check (which parses it with ast): no name is lost to
papermill's one-'='-per-line parser, so no "Unable to parse line" warning reaches users."""
import logging
from pathlib import Path

import papermill as pm
import pytest

from handlib.study import declared_parameters

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_declared_parameter(nb, caplog):
    with caplog.at_level(logging.WARNING, logger="papermill"):
        inferred = pm.inspect_notebook(str(nb))
    assert not [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert list(inferred) == declared_parameters(nb)
