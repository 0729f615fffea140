"""An ipywidgets explorer (notebook 06, ``interactive=True``): pick a finished adversarial-stage
run, scrub a test sequence frame by frame: the input crop with true and predicted skeletons,
and the error over time with the current frame marked. It loads models and data through
``train``, so it sits above ``analysis`` (which never imports ``train``)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from handlib import metrics as MX
from handlib.analysis.aggregate import adversarial_runs
from handlib.train.adversarial import load_selected
from handlib.train.evaluate import predict
from handlib.train.figures import GT_COLOR, PRED_COLOR, _skeleton_2d
from handlib.train.loop import resolve_runtime
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import find_pretrain, load_data, read_split


def frame_figure(image: np.ndarray, gt2d: np.ndarray, pred2d: np.ndarray, err: np.ndarray, t: int,
                 title: str = "", dpi: int = 80):
    """Left: frame ``t`` with GT and predicted 2D skeletons; right: per-frame error (mm)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=dpi, gridspec_kw={"width_ratios": [1, 1.6]})
    a.imshow(image)
    _skeleton_2d(a, gt2d, GT_COLOR, "GT")
    _skeleton_2d(a, pred2d, PRED_COLOR, "pred")
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


def explorer(results: str | None = None, length: int = 128):
    """The widget: a run dropdown and a frame slider (needs the runs' selected checkpoints)."""
    import ipywidgets as W  # deferred: a widget front-end is only needed when the explorer is opened
    from IPython.display import display

    runs = adversarial_runs(results)
    if not len(runs):
        raise FileNotFoundError("no finished adversarial-stage runs to explore")
    cache: dict[str, dict] = {}

    def load(run_id: str) -> dict:
        if run_id not in cache:
            row = runs[runs.run_id == run_id].iloc[0]
            pre = find_pretrain(run_id=row["pretrain_run"], results=results)
            pc = PretrainConfig.from_params({k: v for k, v in pre["config"].items()
                                             if k in PretrainConfig.field_names()})
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

    pick = W.Dropdown(options=list(runs.run_id), description="run")
    t = W.IntSlider(0, 0, length - 1, description="frame")
    out = W.Output()

    def draw(*_):
        d = load(pick.value)
        t.max = len(d["rows"]) - 1
        i = min(t.value, t.max)
        with out:
            out.clear_output(wait=True)
            fig = frame_figure(d["store"].images[d["rows"][i]], d["p"]["gt2d"][i].numpy(), d["p"]["pred2d"][i].numpy(),
                               d["err"], i, pick.value)
            plt.show(fig)

    pick.observe(draw, "value")
    t.observe(draw, "value")
    display(W.VBox([pick, t, out]))
    draw()
