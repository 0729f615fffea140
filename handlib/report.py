"""The study's tables and figures (notebooks 04-06), built from ``aggregate.adversarial_runs``.
It sits above ``analysis`` because it reads the study's grids (``study.expand``) to know which
runs a params file lists; ``analysis`` itself never imports ``train`` or ``study``.

- ``sweep_table``: Fig. 4 analogue, error vs label fraction per method (the pre-trained M,
  alone at 100 % labels, beside the two continuations): mean, 95 % CI, n;
- ``improvement_table``: per fraction, the paired difference adversarial - supervised over
  seeds (mm and % of the supervised error) with its 95 % CI;
- ``ablation_table``: Table 1 analogue, one row per variant: mean +- std over seeds and the
  paired difference to the full model, the paper's FPHAB numbers in separate columns;
- ``when_table``: per data setting (protocol, label fraction, appearance shift), the
  pre-trained, supervised and adversarial errors and their paired difference over seeds; its
  figure (``analysis.when_figure``) and, at the claim's shift, Fig. 4b (``when_sweep``);
- ``change_table`` / ``action_table``: how a method changes M: diagnostics before (the
  pre-trained M) and after, D's probe and AUCs; per-action test error;
- ``study_table``: supervised vs adversarial per grid, protocol and fraction, labelled with
  the study and its commits (the quick study beside the committed one);
- ``missing_runs``: the runs of a params file without a record (what to launch);
- ``plot_sweep``, ``plot_ablation``, ``save_table``;
- ``build_report`` / ``report_figures`` / ``write_report`` / ``show_tables``: notebook 06 (every
  table and figure, written under ``tables/`` and ``figures/``); ``compact`` narrows a table
  for the screen.
The paper's numbers (``PAPER_TABLE1``) are quoted beside ours, never mixed into our means.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from handlib import study
from handlib.analysis.aggregate import (
    DATA_KEYS,
    DIAGNOSTICS,
    NDA_ONLY,
    OPTIONS,
    SETTING_COLUMNS,
    SETTINGS,
    adversarial_runs,
    ci95,
    options_on,
    paired,
    pretrain_runs,
    search_table,
    to_markdown,
)
from handlib.analysis.claim_figure import plot_claim
from handlib.analysis.figures import save_figure
from handlib.analysis.when_figure import KEYS as WHEN_KEYS
from handlib.analysis.when_figure import plot_when
from handlib.config import ConfigError, StageConfig, param
from handlib.paths import results_dir
from handlib.repro import atomic_write_text

ABS, RR = "selected/test/mpjpe_abs", "selected/test/mpjpe_rr"

# Table 1 of the paper (FPHAB, Protocol 2, 20 % labels): absolute / root-relative MPJPE, mm
PAPER_TABLE1 = {
    "full model": (23.52, 11.02),
    "temporal smoothness prior": (27.44, 13.31),
    "pose prior (S 1)": (27.16, 12.80),
    "spectral norm: with": (24.42, 10.93),
    "D depth 1": (23.86, 11.20), "D depth 4": (25.57, 12.35), "D depth 8": (26.94, 12.89),
    "S 32": (25.03, 11.52), "S 64": (25.48, 11.58),
    "augmentation: without": (24.46, 11.30),
    "keypoints: 3D": (26.62, 13.59),
    "supervised (no unlabelled term)": (28.47, float("nan")),
}
FULL = {"method": "adversarial", "spectral_norm": False, "d_depth": 2, "S": 16, "rotate": True,
        "representation": "25d"}


PARTS = ("sweeps", "ablations", "studies", "search", "claim", "when")  # the report's tables, see build_report


@dataclass(frozen=True)
class ReportConfig(StageConfig):
    stage = "report"
    results: str | None = param(None, help="results directory the records are read from")
    protocol_files: tuple[str, ...] = param(("params/protocol2.yaml", "params/protocol1.yaml"))
    ablation_file: str = param("params/ablations.yaml")
    ablation_fraction: float = param(0.1, range=(0.0, 1.0), help="label fraction of the ablation rows")
    search_file: str = param("", help="grid of the validation search (empty: none)")
    claim_file: str = param("", help="grid of the per-method comparison over seeds (empty: none)")
    claim_extra_files: tuple[str, ...] = param((), help="more grids whose runs join the claim's comparison: "
                                                        "more methods, or more seeds of its methods at the same "
                                                        "settings (``join_runs``)")
    when_file: str = param("", help='grid of the "when does it help?" settings (empty: none)')
    when_base_file: str = param("", help='grid of the setting the "when" settings move from (empty: claim_file)')
    reference: str = param("", help="a second results directory shown beside this one (empty: none)")
    reference_files: tuple[str, ...] = param(("params/claim.yaml", "params/protocol2.yaml"),
                                             help="the grids of ``reference``")
    out: str | None = param(None, help="where tables/ and figures/ go (default: the results directory)")
    smoke: bool = param(False, help="read smoke records (small); otherwise smoke records are left out")
    dpi: int = param(100, range=(30, 300))
    interactive: bool = param(False, help="show the ipywidgets explorer (skipped by papermill / nbval)")
    parts: tuple[str, ...] = param(PARTS, help="which tables to build (a study without sweeps names fewer)")

    def validate(self) -> None:
        if bad := sorted(set(self.parts) - set(PARTS)):
            raise ConfigError(f"ReportConfig.parts: {bad} not in {list(PARTS)}")
        if self.ablation_fraction <= 0:
            raise ConfigError(f"ReportConfig.ablation_fraction: {self.ablation_fraction} must be > 0")
        files = [*self.protocol_files, self.ablation_file, self.search_file, self.claim_file,
                 *self.claim_extra_files, self.when_file, self.when_base_file]
        files += list(self.reference_files) if self.reference else []
        missing = [f for f in files if f and not _grid_path(f).is_file()]
        if missing:
            raise ConfigError(f"ReportConfig: no such grid file: {', '.join(missing)} (paths are taken from "
                              f"the repository root, {study.REPO_ROOT})")

    @property
    def out_dir(self) -> Path:
        return results_dir(self.out or self.results)


def _grid_path(params_file: str) -> Path:
    """A grid file's path (a relative one is taken from the repository root)."""
    return Path(params_file) if Path(params_file).is_absolute() else study.REPO_ROOT / params_file


def _commits(g: pd.DataFrame) -> str:
    """The commits of the code that made a table row's runs."""
    return " ".join(sorted(set(g["commit"]))) if "commit" in g else ""


def select(df: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    return df[df["smoke"] == smoke] if len(df) else df


# ---------------------------------------------------------------- Fig. 4: sweeps
def sweep_table(df: pd.DataFrame, protocol: int, cols=(ABS, RR),
                methods=("pre-trained", "supervised", "adversarial"), **fixed) -> pd.DataFrame:
    """Per (fraction, method) of ``protocol``: mean and 95 % CI over seeds of ``cols``, n and
    the per-seed values. ``fixed``: further column filters (e.g. appearance_shift=1.0)."""
    d = df[(df.protocol == protocol) & df.method.isin(methods)]
    for k, v in fixed.items():
        d = d[d[k] == v]
    rows = []
    for (frac, method), g in d.groupby(["fraction", "method"], sort=True):
        row = {"fraction": frac, "method": method, "n": len(g), "commits": _commits(g)}
        for c in cols:
            m, lo, hi = ci95(g[c])
            name = c.rsplit("/", 1)[-1]
            row |= {f"{name}": m, f"{name}_lo": lo, f"{name}_hi": hi,
                    f"{name}_seeds": ", ".join(f"{v:.1f}" for v in g.sort_values("pretrain_seed")[c])}
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_table(df: pd.DataFrame, protocol: int, cols=(ABS, RR), **fixed) -> pd.DataFrame:
    """Per fraction: paired difference adversarial - supervised (mm) over seeds with its 95 %
    CI and the relative change (% of the supervised mean)."""
    d = df[df.protocol == protocol]
    for k, v in fixed.items():
        d = d[d[k] == v]
    rows = []
    for frac, g in d.groupby("fraction", sort=True):
        for c in cols:
            per, s = paired(g, "adversarial", "supervised", c)
            if not s["n"]:
                continue
            base = float(per["supervised"].mean())
            rows.append({"fraction": frac, "metric": c.rsplit("/", 1)[-1], "n": s["n"], "supervised": base,
                         "adversarial": float(per["adversarial"].mean()), "diff": s["mean_diff"],
                         "ci_low": s["ci_low"], "ci_high": s["ci_high"], "rel_%": 100 * s["mean_diff"] / base,
                         "rel_ci_low_%": 100 * s["ci_low"] / base, "rel_ci_high_%": 100 * s["ci_high"] / base,
                         "excludes_zero": s["excludes_zero"]})
    return pd.DataFrame(rows)


def plot_sweep(table: pd.DataFrame, df: pd.DataFrame | None = None, protocol: int | None = None, title: str = "",
               dpi: int = 100):
    """Absolute and root-relative MPJPE vs label fraction, mean with 95 % CI band per method,
    per-seed points from ``df`` (the runs) where given."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=dpi)
    colors = {"pre-trained": "tab:gray", "supervised": "tab:blue", "adversarial": "tab:red", OPTIONS: "tab:purple",
              NDA_ONLY: "tab:green"}
    for ax, name, col in ((axes[0], "mpjpe_abs", ABS), (axes[1], "mpjpe_rr", RR)):
        for method, g in table.groupby("method"):
            x = 100 * g["fraction"].to_numpy()
            c = colors.get(method)
            ax.plot(x, g[name], "--o" if method == "pre-trained" else "-o", color=c, label=method, ms=4)
            ax.fill_between(x, g[f"{name}_lo"], g[f"{name}_hi"], color=c, alpha=0.15, lw=0)
            if df is not None:
                pts = df[(df.method == method) & ((df.protocol == protocol) if protocol else True)]
                ax.scatter(100 * pts["fraction"], pts[col], s=10, color=c, alpha=0.5)
        ax.set_xlabel("labelled frames (%)")
        ax.set_ylabel(f"{'absolute' if name == 'mpjpe_abs' else 'root-relative'} MPJPE (mm)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _mean_std(x: pd.Series, name: str) -> dict:
    """``{name: mean, name_std: sample std over seeds}`` (std NaN for a single seed)."""
    return {name: float(x.mean()), f"{name}_std": float(x.std(ddof=1)) if len(x) > 1 else np.nan}


# ---------------------------------------------------------------- Table 1: ablations
def ablation_label(row) -> str:
    """The Table 1 row a run belongs to (what it changes from the full model)."""
    if row["method"] == "supervised":
        return "supervised (no unlabelled term)"
    if row["method"] == "smoothness":
        return "temporal smoothness prior"
    if row["method"] == "pose_prior":
        return "pose prior (S 1)"
    diff = [k for k, v in FULL.items() if row[k] != v]
    opts = options_on(row)
    if opts:  # D's motion-aware options (the second study): rows of their own, beside the paper's
        return "D options: " + " + ".join(opts) + ("" if not diff else ", other: " + ", ".join(diff))
    if not diff:
        return "full model"
    if len(diff) > 1:
        return "other: " + ", ".join(f"{k}={row[k]}" for k in diff)
    k = diff[0]
    return {"spectral_norm": "spectral norm: with", "d_depth": f"D depth {row[k]}", "S": f"S {row[k]}",
            "rotate": "augmentation: without", "representation": "keypoints: 3D"}[k]


def _col_name(c: str) -> str:
    """A table's name for a record column: "selected/test/mpjpe_abs" -> "mpjpe_abs" (the
    selected model's test error, the tables' default), any other model's keeps its name:
    "last/test/mpjpe_abs" -> "last_mpjpe_abs", "selected_full/test/mpjpe_abs" -> "selected_full_mpjpe_abs"."""
    parts = c.split("/")
    if len(parts) == 3 and parts[1] == "test":
        return parts[2] if parts[0] == "selected" else f"{parts[0]}_{parts[2]}"
    return parts[-1]


def _per_group(df: pd.DataFrame, by: str, cols, compare) -> list[dict]:
    """One row per group of ``by`` (in order of appearance): n, commits, mean +- std over seeds
    of each of ``cols`` and what ``compare(label, group, col, name)`` adds for that column."""
    out = []
    for label, g in df.groupby(by, sort=False):
        r = {by: label, "n": len(g), "commits": _commits(g)}
        for c in cols:
            name = _col_name(c)
            r |= _mean_std(g[c], name) | compare(label, g, c, name)
        out.append(r)
    return out


# Table 1 again for the models the unlabelled term has acted on: selected on validation among the
# steps with lambda_MM at full strength, and the last step (no selection)
FULL_STRENGTH = ("selected_full/test/mpjpe_abs", "last/test/mpjpe_abs")


def ablation_table(df: pd.DataFrame, cols=(ABS, RR)) -> pd.DataFrame:
    """One row per variant: mean +- std over seeds, the paired difference to the full model
    (same pre-training runs) and the paper's FPHAB numbers in separate columns."""
    d = df.assign(row=[ablation_label(r) for _, r in df.iterrows()])
    full = d[d.row == "full model"]

    def vs_full(label, g, c, name):
        both = g.set_index("pretrain_run")[c].align(full.set_index("pretrain_run")[c], join="inner")
        m, lo, hi = ci95(both[0] - both[1]) if label != "full model" else (np.nan,) * 3
        return {f"{name}_vs_full": m, f"{name}_vs_full_lo": lo, f"{name}_vs_full_hi": hi}

    out = _per_group(d, "row", cols, vs_full)
    if not out:  # no Table 1 record yet: the table's columns, no rows (not the records' raw columns)
        names = [_col_name(c) for c in cols]
        return pd.DataFrame(columns=["row", "n", "commits", *[f"{n}{s}" for n in names for s in
                                                               ("", "_std", "_vs_full", "_vs_full_lo", "_vs_full_hi")],
                                     "paper_fphab_abs", "paper_fphab_rr"])
    for r in out:
        paper = PAPER_TABLE1.get(r["row"], (np.nan, np.nan))
        r |= {"paper_fphab_abs": paper[0], "paper_fphab_rr": paper[1]}
    order = list(PAPER_TABLE1)
    t = pd.DataFrame(out)
    return t.assign(_o=[order.index(x) if x in order else len(order) for x in t.row]).sort_values("_o").drop(
        columns="_o").reset_index(drop=True) if len(t) else t


# ---------------------------------------------------------------- what is missing, writing
def missing_runs(params_file: str, results: str | None = None) -> list[str]:
    """Ids of the runs of ``params_file`` without a finished record (the runs to launch)."""
    return [r.id for r in _expand(params_file, results) if not study._finished(r.out_dir)]


def _expand(params_file: str, results: str | None):
    """The runs of a params file (a relative path is taken from the repository root)."""
    s = study.load_study(_grid_path(params_file))
    if results is not None:
        s.results = results
    return study.expand(s)


def save_table(t: pd.DataFrame, name: str, out: Path, floatfmt: str = ".1f") -> tuple[Path, Path]:
    """``<out>/tables/<name>.csv`` and ``.md`` (atomic writes)."""
    d = Path(out) / "tables"
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / f"{name}.csv", t.to_csv(index=False))
    atomic_write_text(d / f"{name}.md", to_markdown(t, floatfmt, index=False) + "\n")
    return d / f"{name}.csv", d / f"{name}.md"


def plot_ablation(t: pd.DataFrame, dpi: int = 100):
    """Each variant's paired difference to the full model (mean, 95 % CI), absolute and
    root-relative; the paper's FPHAB difference as a cross where it reports one."""
    rows = t[t.row != "full model"].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.35 * len(rows) + 1.2), dpi=dpi, sharey=True)
    y = np.arange(len(rows))
    full = t[t.row == "full model"]
    for ax, name, paper in ((axes[0], "mpjpe_abs", "paper_fphab_abs"), (axes[1], "mpjpe_rr", "paper_fphab_rr")):
        m, lo, hi = rows[f"{name}_vs_full"], rows[f"{name}_vs_full_lo"], rows[f"{name}_vs_full_hi"]
        ax.errorbar(m, y, xerr=[m - lo, hi - m], fmt="o", ms=4, color="tab:red", label="HandSim (ours)")
        if len(full):
            ax.scatter(rows[paper] - float(full[paper].iloc[0]), y, marker="x", color="k", label="paper (FPHAB)")
        ax.axvline(0, color="gray", lw=0.8)
        ax.set_xlabel(f"{'absolute' if name == 'mpjpe_abs' else 'root-relative'} MPJPE - full model (mm)")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(y, rows.row, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def method_table(df: pd.DataFrame, cols=(ABS, RR, "selected/test/mpjpe_pa", "selected/test/epe_2d"),
                 baseline: str = "supervised") -> pd.DataFrame:
    """Per method: mean +- std over seeds of ``cols`` and the paired difference to ``baseline``
    (same pre-training runs) with its 95 % CI."""

    def vs_baseline(method, g, c, name):
        if method == baseline:
            return {}
        _, s = paired(df[df.method.isin([method, baseline])], method, baseline, c)
        return {f"{name}_diff": s["mean_diff"], f"{name}_ci": f"[{s['ci_low']:.1f}, {s['ci_high']:.1f}]"}

    return pd.DataFrame(_per_group(df, "method", cols, vs_baseline))


FIGURE_COLS = ("selected/test/mpjpe_abs", "last/test/mpjpe_abs")  # the claim figure's columns


def with_pretrained(df: pd.DataFrame, cols) -> pd.DataFrame:
    """``df`` (continuation runs) plus a "pre-trained" row per pre-training run: M before any
    continuation, its errors in every column of ``cols`` (from the records' ``pretrained/...``),
    so that its paired difference to the supervised continuation is in the same table."""
    if not len(df):
        return df
    first = df.drop_duplicates("pretrain_run")
    keep = [c for c in ("pretrain_run", "pretrain_seed", "seed", "smoke") if c in first]
    pre = first[keep].assign(method="pre-trained", commit="(pre-training)")
    for c in cols:
        s = "/".join(["pretrained", *c.split("/")[1:]])
        pre[c] = first[s] if s in first else np.nan
    return pd.concat([pre, df], ignore_index=True)


def pretrained_table(pre: pd.DataFrame) -> pd.DataFrame:
    """The pre-trained M of each seed beside the mean-pose floor (test errors; ``below_floor``:
    1 - M / mean pose on root-relative error), and their mean over seeds."""
    cols = {"selected/test/mpjpe_abs": "abs", "selected/test/mpjpe_rr": "rr", "selected/test/epe_2d": "2d_px",
            "mean_pose/test/mpjpe_abs": "mean_pose_abs", "mean_pose/test/mpjpe_rr": "mean_pose_rr",
            "mean_pose/test/epe_2d": "mean_pose_2d_px"}
    t = pre.sort_values("seed")[["seed", "selected_step", *cols]].rename(columns=cols).reset_index(drop=True)
    t["below_floor"] = 1 - t["rr"] / t["mean_pose_rr"]
    if len(t) > 1:
        t = pd.concat([t, t.drop(columns="seed").mean().to_frame().T.assign(seed="mean")], ignore_index=True)
    return t


def runs_in(df: pd.DataFrame, params_files, results: str | None = None) -> pd.DataFrame:
    """The rows of ``df`` that the grids of ``params_files`` list (finished ones)."""
    ids = {r.id for f in params_files for r in _expand(f, results)}
    return df[df.run_id.isin(ids)]


def _signature(row) -> tuple:
    """What makes two runs the same method: data, steps and every setting of the method (its
    seed and pre-trained M aside), as strings (NaN for a setting an older record lacks)."""
    keys = (*DATA_KEYS, "steps", *SETTINGS.get(row["method"], ()))
    return tuple(str(row.get(k, np.nan)) for k in keys)


def join_runs(main: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``main``'s runs plus those of ``extra`` that add seeds or methods to its comparison. A run
    of a variant that ``main`` has joins only at one of that variant's settings (``_signature``:
    Table 1's supervised run adds a seed to the claim's supervised row, its D depth 1 run is left
    out); a run of a variant that ``main`` lacks joins as a method of its own."""
    have = {}
    for _, r in main.iterrows():
        have.setdefault(r["variant"], set()).add(_signature(r))
    keep = [r["variant"] not in have or _signature(r) in have[r["variant"]] for _, r in extra.iterrows()]
    return pd.concat([main, extra[keep]]).sort_index() if len(extra) else main  # in the records' order


def sweep_runs(df: pd.DataFrame, params_files, results: str | None = None,
               pretrained: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs of ``params_files`` that belong in Fig. 4: the supervised continuation and the
    full adversarial model (ablation variants left out), and with ``pretrained``
    (``aggregate.pretrain_runs``) the grids' pre-training runs as method ``pre-trained``."""
    d = runs_in(df, params_files, results)
    keep = [ablation_label(r) in ("full model", "supervised (no unlabelled term)") for _, r in d.iterrows()]
    d = d[keep] if len(d) else d
    if pretrained is not None and len(pretrained):
        d = pd.concat([runs_in(pretrained, params_files, results), d], ignore_index=True)
    return d


def _pretrained(g: pd.DataFrame, cols) -> pd.Series:
    """Means of the pre-trained M's ``cols`` over the pre-training runs of ``g`` (each run
    counted once, however many methods continued from it)."""
    return g.drop_duplicates("pretrain_run")[list(cols)].mean()


def when_table(df: pd.DataFrame, cols=(ABS, "selected/test/mpjpe_pa"), a: str = "adversarial",
               b: str = "supervised", keys=("protocol", "fraction", "appearance_shift")) -> pd.DataFrame:
    """"When does it help?": one row per data setting (``keys``) and metric: the pre-trained
    M's error, the means of methods ``b`` and ``a`` over seeds, and the paired difference
    a - b with its 95 % CI (NaN bounds where one seed ran). Runs of other methods are ignored."""
    out = []
    d = df[df.method.isin([a, b])]
    for key, g in d.groupby(list(keys), sort=True):
        for c in cols:
            _, s = paired(g, a, b, c)
            pre = c.replace("selected/", "pretrained/", 1)
            out.append({**dict(zip(keys, key)), "metric": c.rsplit("/", 1)[-1], "n": s["n"],
                        "pretrained": float(_pretrained(g, [pre]).iloc[0]) if pre in g else np.nan,
                        b: float(g[g.method == b][c].mean()), a: float(g[g.method == a][c].mean()),
                        "diff": s["mean_diff"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                        "excludes_zero": s["excludes_zero"], "commits": _commits(g)})
    return pd.DataFrame(out)


def study_table(df: pd.DataFrame, params_files, results: str | None = None, label: str = "") -> pd.DataFrame:
    """Per grid of ``params_files``, protocol and label fraction: ``method_table`` of its
    supervised and full-model runs, labelled with ``label`` (which study) and the grid, so
    that two studies (e.g. ``make study``'s and the committed one) can stand side by side."""
    out = []
    for f in params_files:
        sw = sweep_runs(df, [f], results)
        for (p, frac), g in sw.groupby(["protocol", "fraction"], sort=True):
            t = method_table(g)
            t.insert(0, "fraction", frac)
            t.insert(0, "protocol", p)
            t.insert(0, "grid", f)
            t.insert(0, "study", label)
            out.append(t)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def change_table(df: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per method (or other column ``by``), means over seeds: each test diagnostic of the
    pre-trained M ("before") and of the selected M ("after"), D's probe on validation windows,
    D's paired sensitivity (``dsens/``) and the final D's AUC against jitter / bone noise /
    shuffling on held-out corpus windows (where the method has a D)."""

    out = []
    for method, g in df.groupby(by, sort=False):
        r = {by: method, "n": len(g)}
        for k in DIAGNOSTICS:
            r[f"{k}_before"] = float(_pretrained(g, [f"pretrained/test/{k}"]).iloc[0])
            r[f"{k}_after"] = float(g[f"test/{k}"].mean())
        extra = [c for c in g.columns if c.startswith(("probe/", "auc/", "dsens/"))]
        r |= {c: float(g[c].mean()) for c in extra}
        out.append(r)
    return pd.DataFrame(out)


def action_table(df: pd.DataFrame) -> pd.DataFrame:
    """Test absolute MPJPE per action (rows): the pre-trained M and each method (means over seeds)."""
    cols = sorted(c for c in df.columns if c.startswith("action/selected/"))
    t = {"pretrained": _pretrained(df, [c.replace("/selected/", "/pretrained/") for c in cols]).set_axis(cols)}
    t |= {m: g[cols].mean() for m, g in df.groupby("method", sort=False)}
    out = pd.DataFrame(t)
    out.index = [c.rsplit("/", 1)[-1] for c in cols]
    out.index.name = "action"
    return out.reset_index()


def _when_figures(df: pd.DataFrame, when: pd.DataFrame, claim: pd.DataFrame | None, base_file: str,
                  cfg: ReportConfig):
    """What the "when" figures draw: the runs of the methods the "when" grid runs (method =
    variant), the setting each panel moves from (that of ``claim``, the runs of ``base_file``;
    else the most common one) and Fig. 4b at its protocol and shift: (sweep table, its runs), the
    pre-trained M beside each continuation (alone at 100 %: no unlabelled video to continue on)."""
    grid = runs_in(df, [cfg.when_file], cfg.results)
    when = when[when.method.isin(set(grid.variant))] if len(grid) else when.iloc[:0]
    if not len(when):
        return when, None, None
    src = claim if claim is not None and len(claim) else when
    base = {k: src[k].mode().iloc[0] for k in WHEN_KEYS}
    files = [cfg.when_file] + ([base_file] if base_file else [])
    runs = pd.concat([runs_in(select(pretrain_runs(cfg.results), cfg.smoke), files, cfg.results), when],
                     ignore_index=True)
    runs = runs[(runs.protocol == base["protocol"]) & np.isclose(runs.appearance_shift, base["appearance_shift"])]
    methods = ["pre-trained", *dict.fromkeys(when.method)]
    return when, base, (sweep_table(runs, int(base["protocol"]), methods=methods), runs)


# ---------------------------------------------------------------- the whole report (notebook 06)
@dataclass
class Report:
    """The study's tables (name -> (table, float format of its Markdown)) and what the grids
    still lack: ``missing`` maps a grid to its runs without a record."""

    tables: dict[str, tuple[pd.DataFrame, str]]
    sweeps: dict[int, tuple[pd.DataFrame, pd.DataFrame]]  # protocol -> (sweep table, its runs)
    ablations: pd.DataFrame
    missing: dict[str, list[str]]
    commits: list[str]
    claim: pd.DataFrame | None = None  # the claim grid's runs (method = variant), for its figure
    when: pd.DataFrame | None = None  # the "when" and claim grids' runs (method = variant)
    when_base: dict | None = None  # the claim's setting, which each "when" panel moves from
    when_sweep: tuple[pd.DataFrame, pd.DataFrame] | None = None  # Fig. 4b at the claim's shift: (table, runs)



def build_report(cfg: ReportConfig, parts=None) -> Report:
    """The report's tables from the records of ``cfg.results``, for each of ``parts``: ``sweeps``
    (Fig. 4 and the paired improvement per protocol), ``ablations`` (Table 1), ``studies`` (per
    method at each Protocol 2 fraction; this study beside ``cfg.reference``), and where their
    grids are given ``search`` (validation), ``claim`` (per method over seeds, diagnostics, per
    action) and ``when`` ("when does it help?"). ``missing``: the runs its grids still lack."""
    parts = cfg.parts if parts is None else parts
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"build_report: unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    df = select(adversarial_runs(cfg.results), cfg.smoke)
    when, when_base, when_sweep = None, None, None
    sw = sweep_runs(df, cfg.protocol_files, cfg.results, pretrained=select(pretrain_runs(cfg.results), cfg.smoke))
    ab = runs_in(df, [cfg.ablation_file], cfg.results) if "ablations" in parts else df.iloc[:0]
    ab = ab[(ab.fraction == cfg.ablation_fraction) & (ab.protocol == 2)] if len(ab) else ab
    abl = ablation_table(ab)
    tables, sweeps = {}, {}
    if "sweeps" in parts:
        for p in sorted(sw.protocol.unique()):
            d = sw[sw.protocol == p]
            sweeps[p] = (sweep_table(d, p), d)
            tables[f"sweep_protocol{p}"] = (sweeps[p][0], ".1f")
            tables[f"improvement_protocol{p}"] = (improvement_table(d, p), ".1f")
    if "ablations" in parts:
        tables["ablations"] = (abl, ".1f")
        if len(ab):  # D's sensitivity and M's motion diagnostics beside each Table 1 row
            rank = {row: i for i, row in enumerate(abl.row)}  # the ablation table's row order
            rows = ab.assign(row=[ablation_label(r) for _, r in ab.iterrows()])
            rows = rows.sort_values("row", key=lambda x: x.map(rank), kind="stable")
            tables["ablations_diagnostics"] = (change_table(rows, by="row"), ".3f")
        full_cols = [c for c in FULL_STRENGTH if c in ab and ab[c].notna().any()]
        if full_cols:  # a row selected before lambda_MM is on shows an M the term never touched
            tables["ablations_full_strength"] = (ablation_table(ab, cols=full_cols), ".1f")
    if "studies" in parts:
        for frac, g in sw[sw.protocol == 2].groupby("fraction"):
            tables[f"methods_protocol2_fraction{frac:g}"] = (method_table(g), ".1f")
        studies = study_table(df, cfg.protocol_files, cfg.results, "this study")
        if cfg.reference:
            ref = study_table(select(adversarial_runs(cfg.reference), False), cfg.reference_files, cfg.reference,
                              "committed")
            studies = pd.concat([studies, ref], ignore_index=True)
        tables["studies"] = (studies, ".1f")
    if "search" in parts and cfg.search_file:
        tables["search_validation"] = (search_table(runs_in(df, [cfg.search_file], cfg.results)), ".1f")
    if "claim" in parts and cfg.claim_file:
        cl = join_runs(runs_in(df, [cfg.claim_file], cfg.results), runs_in(df, cfg.claim_extra_files, cfg.results))
        cl = cl.assign(method=cl.variant)  # the paper's D and D with options are two rows
        # selected on validation; selected among steps at full lambda_MM; the last step (no selection)
        extra = [c for c in (*FULL_STRENGTH, "last/test/mpjpe_rr") if c in cl and cl[c].notna().any()]
        cols = (ABS, RR, "selected/test/mpjpe_pa", "selected/test/epe_2d", *extra)
        tables["claim_methods"] = (method_table(with_pretrained(cl, cols), cols=cols), ".1f")
        tables["claim_diagnostics"] = (change_table(cl), ".3f")  # how each method changes M
        tables["claim_actions"] = (action_table(cl), ".1f")
        pre = runs_in(pretrain_runs(cfg.results), [cfg.claim_file, *cfg.claim_extra_files], cfg.results)
        if len(pre):
            tables["claim_pretrained"] = (pretrained_table(pre), ".2f")
    if "when" in parts and cfg.when_file:
        base_file = cfg.when_base_file or cfg.claim_file  # the setting the "when" points move from
        when = runs_in(df, [cfg.when_file] + ([base_file] if base_file else []), cfg.results)
        when = when.assign(method=when.variant)  # the paper's D and D with options: a table each
        tables["when"] = (when_table(when), ".1f")
        if (when.method == OPTIONS).any():
            tables["when_options"] = (when_table(when, a=OPTIONS), ".1f")
        base = runs_in(df, [base_file], cfg.results) if base_file else None
        when, when_base, when_sweep = _when_figures(df, when, base, base_file, cfg)
        if when_sweep is not None:
            tables["when_sweep"] = (when_sweep[0], ".1f")
    used = [d for part, d in (("sweeps", sw), ("studies", sw), ("ablations", ab)) if part in parts and len(d)]
    files = dict.fromkeys([*(cfg.protocol_files if {"sweeps", "studies"} & set(parts) else []),
                           *([cfg.ablation_file] if "ablations" in parts else [])])
    commits = sorted(pd.concat(used).commit.dropna().unique()) if used else []
    return Report(tables, sweeps, abl, {f: missing_runs(f, cfg.results) for f in files}, commits,
                  claim=with_pretrained(cl, FIGURE_COLS) if "claim" in parts and cfg.claim_file else None,
                  when=when, when_base=when_base, when_sweep=when_sweep)


def report_figures(rep: Report, dpi: int = 100) -> dict:
    """The report's figures by name: Fig. 4 per protocol and Table 1 (left open, so that a
    notebook shows them inline; ``write_report`` saves them)."""
    figs = {f"sweep_protocol{p}": plot_sweep(t, d, p, f"Protocol {p}: test error vs labels (mean, 95 % CI over "
                                              "seeds; dots: seeds)", dpi=dpi) for p, (t, d) in rep.sweeps.items()}
    if len(rep.ablations):
        figs["ablations"] = plot_ablation(rep.ablations, dpi=dpi)
    if rep.claim is not None and (rep.claim.method == "supervised").any() and rep.claim.method.nunique() > 1:
        figs["claim"] = plot_claim(rep.claim, dpi=dpi)
    if rep.when is not None and rep.when_base is not None and len(rep.when):
        figs["when"] = plot_when(rep.when, rep.when_base, dpi=dpi)
    if rep.when_sweep is not None and len(rep.when_sweep[0]):
        t, d = rep.when_sweep
        figs["when_sweep"] = plot_sweep(t, d, int(rep.when_base["protocol"]), "Protocol "
                                        f"{int(rep.when_base['protocol'])}, appearance shift "
                                        f"{rep.when_base['appearance_shift']:g}: test error vs labels (mean, 95 % CI; "
                                        "dots: seeds)", dpi=dpi)
    return figs


def write_report(rep: Report, figures: dict, out: Path, dpi: int = 100) -> list[Path]:
    """Each table as ``<out>/tables/<name>.{csv,md}``, each figure as ``<out>/figures/<name>.{png,pdf}``."""
    written = [p for name, (t, fmt) in rep.tables.items() for p in save_table(t, name, out, floatfmt=fmt)]
    return written + [p for name, fig in figures.items() for p in save_figure(fig, name, out, dpi=dpi)]


def summary_lines(rep: Report) -> list[str]:
    """What the report rests on: each grid's runs without a record (with the command that runs
    them; rows are never dropped silently) and the commits of the code that made its runs."""
    lines = [f"{f}: {len(m)} run(s) without a record" + (f": python -m handlib.study --params {f}" if m else "")
             for f, m in rep.missing.items()]
    return lines + ["commits of these runs: " + (", ".join(rep.commits) or "none")]


def compact(t: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A table narrowed to be read on screen: ``x`` with ``x_std`` -> "x ± std"; ``x`` with
    ``x_lo`` / ``x_hi`` (or ``x_ci``, or ``ci_low`` / ``ci_high`` after ``diff``) -> "x [lo, hi]";
    the commits and per-seed value lists left out (both stay in the saved tables)."""
    cols, used, out = list(t.columns), set(), {}

    def f(v) -> str:
        return "" if pd.isna(v) else f"{v:.{digits}f}"

    def bounds(c: str) -> tuple[str, str] | None:
        for lo, hi in ((f"{c}_lo", f"{c}_hi"), ("ci_low", "ci_high") if c == "diff" else ("", ""),
                       ("rel_ci_low_%", "rel_ci_high_%") if c == "rel_%" else ("", "")):
            if lo in cols and hi in cols:
                return lo, hi
        return None

    for c in cols:
        if c in used or c == "commits" or c.endswith("_seeds"):
            continue
        v = t[c]
        if f"{c}_std" in cols:
            used.add(f"{c}_std")
            v = [f(a) + ("" if pd.isna(b) else f" ± {f(b)}") for a, b in zip(t[c], t[f"{c}_std"])]
        elif (b := bounds(c)) is not None:
            used.update(b)
            v = [f(a) + ("" if pd.isna(lo) else f" [{f(lo)}, {f(hi)}]") for a, lo, hi in zip(t[c], t[b[0]], t[b[1]])]
        elif c.endswith("_diff") and f"{c[:-5]}_ci" in cols:
            used.add(f"{c[:-5]}_ci")
            v = [f(a) + ("" if pd.isna(a) else f" {ci}") for a, ci in zip(t[c], t[f"{c[:-5]}_ci"])]
        elif pd.api.types.is_float_dtype(v) and c not in SETTING_COLUMNS:
            v = [f(a) for a in v]
        out[c] = list(v)
    return pd.DataFrame(out, index=t.index)


def tables_text(rep: Report) -> str:
    """Each table, narrowed (``compact``), as text under its name (what nbval checks)."""
    return "\n\n".join(f"{name}\n" + (compact(t).to_string(index=False) if len(t) else "no runs yet")
                        for name, (t, _) in rep.tables.items())


def show_tables(rep: Report) -> None:
    """Display each table, narrowed (``compact``), under its name (in a notebook)."""
    for name, (t, _) in rep.tables.items():
        display(Markdown(f"**{name}** ({len(t)} rows)"))
        display(compact(t) if len(t) else Markdown("*no runs yet*"))
