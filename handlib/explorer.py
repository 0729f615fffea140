"""An ipywidgets explorer (notebook 06, ``interactive=True``): pick a finished adversarial-stage
run and see its record (learning curves, test errors before and after); where the run's
checkpoints are on this machine, also scrub a test sequence frame by frame: the input crop with
true and predicted skeletons, and the error over time with the current frame marked.

Checkpoints stay in the cache, never in git, so a fresh clone has the records only: the record
view works for every run, and ``checkpoint_status`` / ``how_to_make_checkpoints`` say which
runs lack their checkpoints and the command that makes them. It loads models and data through
``train``, so it sits above ``analysis`` (which never imports ``train``)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from handlib import metrics as MX
from handlib.analysis.aggregate import adversarial_runs
from handlib.paths import REPO_ROOT, results_dir
from handlib.train.adversarial import load_selected, summary_table
from handlib.train.evaluate import predict
from handlib.train.figures import GT_COLOR, PRED_COLOR, plot_adversarial_history, skeleton_2d
from handlib.train.loop import resolve_runtime
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import find_pretrain, load_data, read_split


def frame_figure(image: np.ndarray, gt2d: np.ndarray, pred2d: np.ndarray, err: np.ndarray, t: int,
                 title: str = "", dpi: int = 80):
    """Left: frame ``t`` with GT and predicted 2D skeletons; right: per-frame error (mm)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=dpi, gridspec_kw={"width_ratios": [1, 1.6]})
    a.imshow(image)
    skeleton_2d(a, gt2d, GT_COLOR, "GT")
    skeleton_2d(a, pred2d, PRED_COLOR, "pred")
    a.set_axis_off()
    a.legend(fontsize=7, loc="lower left")
    b.plot(err, color="k", lw=1)
    b.axvline(t, color=PRED_COLOR, lw=1)
    b.set_xlabel("frame")
    b.set_ylabel("absolute MPJPE (mm)")
    b.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _show(fig) -> None:
    """Display a figure once, in the current output area, and release it."""
    display(fig)
    plt.close(fig)


def _record(run_id: str, results: str | None, name: str) -> dict:
    path = results_dir(results) / "runs" / run_id / name
    return json.loads(path.read_text()) if path.exists() else {}


def checkpoint_status(results: str | None = None) -> pd.DataFrame:
    """One row per finished adversarial-stage run: ``selected`` (its selected M's checkpoint is
    on this machine), ``pretrained`` (its pre-training run's final one is), ``grid`` (the params
    file that ran it, from ``runner.json``; empty when run by hand)."""
    rows = []
    for run_id in adversarial_runs(results).run_id:
        m = _record(run_id, results, "metrics.json")
        try:
            find_pretrain(run_id=m.get("pretrain_run"), results=results)
            pretrained = True
        except (FileNotFoundError, ValueError):  # no checkpoint here, or no pre-training run named
            pretrained = False
        source = _record(run_id, results, "runner.json").get("source", "")
        rows.append({"run_id": run_id, "selected": Path(m.get("selected_checkpoint") or "/nonexistent").exists(),
                     "pretrained": pretrained, "grid": source.split(":", 1)[0] if source else ""})
    return pd.DataFrame(rows, columns=["run_id", "selected", "pretrained", "grid"])


def how_to_make_checkpoints(status: pd.DataFrame, results: str | None = None) -> str:
    """Markdown: which runs lack their checkpoints, and the commands that make them (the runner
    skips runs with a finished record, so their records are moved aside first)."""
    lack = status[~(status.selected & status.pretrained)]
    if not len(lack):
        return ""
    runs = results_dir(results) / "runs"
    runs = runs.relative_to(REPO_ROOT) if runs.is_relative_to(REPO_ROOT) else runs
    grids = sorted(g for g in lack.grid.unique() if g)
    lines = [f"**{len(lack)} of {len(status)} runs have no checkpoint on this machine** (checkpoints stay in the "
             "cache, never in git, so a fresh clone has the records only). Their records and curves are shown; "
             "their frames need the checkpoints: " + ", ".join(f"`{r}`" for r in lack.run_id[:8])
             + (f" and {len(lack) - 8} more" if len(lack) > 8 else "") + ".",
             "",
             "Make them by running the runs again on this machine (the runner skips finished records, so move "
             "them aside first; the new records replace the committed ones in `git status`):",
             "",
             f"    mv {runs} {runs}.committed"]
    lines += [f"    python -m handlib.study --params {g}" for g in grids]
    if len(grids) < lack.grid.nunique() or not grids:
        lines += ["", "Runs without a grid (`runner.json`) were run by hand: rerun notebook 03 with their "
                  "`config.json` parameters."]
    return "\n".join(lines)


def explorer(results: str | None = None, length: int = 128):
    """The widget: a run dropdown, the run's record (curves, test errors), and where its
    checkpoints are here, a frame slider over a test sequence."""
    import ipywidgets as W  # deferred: a widget front-end is only needed when the explorer is opened

    status = checkpoint_status(results)
    if not len(status):
        display(Markdown(f"No finished adversarial-stage run in `{results_dir(results)}` to explore."))
        return
    note = how_to_make_checkpoints(status, results)
    if note:
        display(Markdown(note))
    ok = dict(zip(status.run_id, status.selected & status.pretrained))
    cache: dict[str, dict] = {}

    def load(run_id: str) -> dict:
        if run_id not in cache:
            pre = find_pretrain(run_id=_record(run_id, results, "metrics.json")["pretrain_run"], results=results)
            pc = PretrainConfig.from_record(pre["config"])
            data = load_data(pc)
            split = read_split(pre["split_csv"], data.store, pre["config"])
            seqs = list(dict.fromkeys(data.store.meta["sequence"].to_numpy()[split.test_rows]))
            fr = data.store.frame_runs(seqs)
            r = fr.iloc[int(fr["length"].to_numpy().argmax())]
            rows = np.arange(r["start"], r["start"] + min(length, r["length"]))
            p = predict(load_selected(run_id, results), data.store, rows, resolve_runtime("auto"), 64, pc.scale_source)
            cache[run_id] = {"store": data.store, "rows": rows, "p": p,
                             "err": MX.mpjpe(p["pred3d"], p["gt3d"]).numpy()}
        return cache[run_id]

    pick = W.Dropdown(options=list(status.run_id), description="run", layout=W.Layout(width="95%"))
    t = W.IntSlider(0, 0, length - 1, description="frame")
    record, frames = W.Output(), W.Output()

    def show_record(*_):
        run = pick.value
        hist = results_dir(results) / "runs" / run / "history.csv"
        with record:
            record.clear_output(wait=True)
            display(summary_table(_record(run, results, "metrics.json"), "test").round(2))
            if hist.exists():
                _show(plot_adversarial_history(pd.read_csv(hist)))
        t.disabled = not ok[run]
        draw()

    def draw(*_):
        run = pick.value
        with frames:
            frames.clear_output(wait=True)
            if not ok[run]:
                display(Markdown(f"`{run}`: no checkpoint on this machine, frames not shown (see above)."))
                return
            d = load(run)
            t.max = len(d["rows"]) - 1
            i = min(t.value, t.max)
            _show(frame_figure(d["store"].images[d["rows"][i]], d["p"]["gt2d"][i].numpy(),
                               d["p"]["pred2d"][i].numpy(), d["err"], i, run))

    pick.observe(show_record, "value")
    t.observe(draw, "value")
    display(W.VBox([pick, record, t, frames]))
    show_record()
