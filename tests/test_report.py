"""Report tables and figures from records: Fig. 4 sweep, paired improvement, Table 1 rows."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from handlib import report as R

matplotlib.use("Agg")


def _df():
    rows = []
    for frac in (0.1, 0.5):
        for s in (0, 1, 2):
            for method, extra, delta in (("supervised", {}, 0.0), ("adversarial", {}, -2.0 - s),
                                         ("adversarial", {"d_depth": 4}, 1.0), ("smoothness", {}, 3.0)):
                r = {**R.FULL, "run_id": f"{method}{extra}{frac}{s}", "method": method, "protocol": 2,
                     "fraction": frac, "pretrain_seed": s, "pretrain_run": f"pre{frac}{s}", "smoke": False,
                     "commit": "abc"}
                r.update(extra)
                base = 100.0 - 40 * frac + s
                r[R.ABS], r[R.RR] = base + delta, base / 2 + delta / 2
                rows.append(r)
    return pd.DataFrame(rows)


def test_sweep_table_means_cis_and_seed_values():
    df = _df()
    full = df[[R.ablation_label(r) in ("full model", "supervised (no unlabelled term)") for _, r in df.iterrows()]]
    t = R.sweep_table(full, 2)
    sup = t[(t.method == "supervised") & (t.fraction == 0.1)].iloc[0]
    assert sup["n"] == 3 and sup["mpjpe_abs"] == pytest.approx(97.0)
    assert sup["mpjpe_abs_lo"] < 97.0 < sup["mpjpe_abs_hi"]
    assert sup["mpjpe_abs_seeds"] == "96.0, 97.0, 98.0"
    fig = R.plot_sweep(t, full, 2, dpi=30)
    assert len(fig.axes) == 2


def test_the_sweep_shows_the_pretrained_m_and_its_100_percent_point():
    df = _df()
    pre = pd.DataFrame([{"run_id": f"pre{frac}{s}", "method": "pre-trained", "protocol": 2, "fraction": frac,
                         "pretrain_seed": s, "pretrain_run": f"pre{frac}{s}", "smoke": False, "commit": "abc",
                         R.ABS: 110.0 - 40 * frac + s, R.RR: 50.0} for frac in (0.1, 0.5, 1.0) for s in (0, 1, 2)])
    full = df[[R.ablation_label(r) in ("full model", "supervised (no unlabelled term)") for _, r in df.iterrows()]]
    t = R.sweep_table(pd.concat([pre, full], ignore_index=True), 2)
    assert list(t[t.fraction == 1.0].method) == ["pre-trained"]
    assert t[(t.method == "pre-trained") & (t.fraction == 0.1)].iloc[0]["mpjpe_abs"] == pytest.approx(107.0)
    assert len(t) == 7 and len(R.plot_sweep(t, full, 2, dpi=30).axes) == 2
    # the improvement table pairs only the continuations: no row at 100 %
    assert set(R.improvement_table(pd.concat([pre, full]), 2).fraction) == {0.1, 0.5}


def test_improvement_is_paired_and_relative():
    df = _df()
    full = df[[R.ablation_label(r) in ("full model", "supervised (no unlabelled term)") for _, r in df.iterrows()]]
    imp = R.improvement_table(full, 2)
    row = imp[(imp.fraction == 0.1) & (imp.metric == "mpjpe_abs")].iloc[0]
    assert row["diff"] == pytest.approx(-3.0) and row["n"] == 3
    assert row["rel_%"] == pytest.approx(-300 / 97.0)
    assert row["ci_low"] < -3.0 < row["ci_high"]


def test_ablation_rows_differences_to_full_and_paper_columns():
    t = R.ablation_table(_df()[lambda d: d.fraction == 0.1])
    assert t.row.iloc[0] == "full model" and set(t.row) == {"full model", "D depth 4", "temporal smoothness prior",
                                                            "supervised (no unlabelled term)"}
    d4 = t[t.row == "D depth 4"].iloc[0]
    assert d4["mpjpe_abs_vs_full"] == pytest.approx(np.mean([3.0, 4.0, 5.0]))
    assert d4["paper_fphab_abs"] == 25.57 and np.isnan(t[t.row == "full model"]["mpjpe_abs_vs_full"].iloc[0])
    assert R.plot_ablation(t, dpi=30) is not None
    assert R.ablation_label({**R.FULL, "S": 32, "d_depth": 4}).startswith("other:")


def test_ablation_table_without_records_has_its_own_columns():
    empty = R.ablation_table(_df().iloc[:0])
    full = R.ablation_table(_df()[lambda d: d.fraction == 0.1])
    assert len(empty) == 0 and list(empty.columns) == list(full.columns)


def test_runs_in_and_missing_runs_follow_the_params_file(tmp_path):
    res = tmp_path / "res"
    y = tmp_path / "g.yaml"
    y.write_text(f"results: {res}\nstages:\n  - {{name: demo, notebook: n.ipynb, grid: {{x: [1, 2]}}}}\n")
    from handlib import study

    ids = [r.id for r in study.expand(study.load_study(y))]
    (res / "runs" / ids[0]).mkdir(parents=True)
    (res / "runs" / ids[0] / "DONE").write_text("1 s")
    assert R.missing_runs(str(y), str(res)) == [ids[1]]
    df = pd.DataFrame({"run_id": [ids[0], "other"], "x": [1, 2]})
    assert list(R.runs_in(df, [str(y)], str(res)).run_id) == [ids[0]]


def test_save_table_and_figure_write_both_formats(tmp_path):
    t = pd.DataFrame({"a": [1.234], "b": ["x"]})
    csv, md = R.save_table(t, "t", tmp_path)
    assert csv.read_text().startswith("a,b") and "1.2" in md.read_text()
    import matplotlib.pyplot as plt

    paths = R.save_figure(plt.figure(figsize=(1, 1)), "f", tmp_path, dpi=20)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths) and {p.suffix for p in paths} == {".png", ".pdf"}
    assert json.loads(json.dumps(R.PAPER_TABLE1["full model"])) == [23.52, 11.02]


def test_explorer_frame_figure_draws_image_skeletons_and_error_curve():
    from handlib.explorer import frame_figure

    rng = np.random.default_rng(0)
    fig = frame_figure(np.zeros((64, 64, 3), np.uint8), rng.uniform(0, 64, (21, 2)), rng.uniform(0, 64, (21, 2)),
                       rng.uniform(0, 50, 30), 7, "run", dpi=30)
    assert len(fig.axes) == 2 and fig.axes[1].lines[-1].get_xdata()[0] == 7


def test_when_table_pairs_per_setting_and_ignores_other_methods():
    df = _df()
    df = df[[R.ablation_label(r) != "D depth 4" for _, r in df.iterrows()]].copy()
    df["appearance_shift"] = 1.0
    df[R.ABS.replace("selected/", "pretrained/")] = 100.0 + df.pretrain_seed
    df["selected/test/mpjpe_pa"] = 20.0
    t = R.when_table(df)
    assert list(t.fraction.unique()) == [0.1, 0.5] and set(t.metric) == {"mpjpe_abs", "mpjpe_pa"}
    row = t[(t.fraction == 0.1) & (t.metric == "mpjpe_abs")].iloc[0]
    assert row["n"] == 3 and row["diff"] == pytest.approx(-3.0) and row["pretrained"] == pytest.approx(101.0)
    assert row["supervised"] == pytest.approx(97.0) and row["adversarial"] == pytest.approx(94.0)
    assert row["ci_low"] < -3.0 < row["ci_high"] and row["excludes_zero"]
    one = R.when_table(df[df.pretrain_seed == 0])
    assert one["n"].eq(1).all() and one["ci_low"].isna().all()


def test_study_table_labels_grid_protocol_fraction(monkeypatch):
    df = _df()
    df["selected/test/mpjpe_pa"], df["selected/test/epe_2d"] = 20.0, 10.0
    monkeypatch.setattr(R, "runs_in", lambda d, files, results=None: d)
    t = R.study_table(df, ["params/x.yaml"], label="quick")
    assert set(t.method) == {"supervised", "adversarial"}  # ablation variants and baselines left out
    assert (t.study == "quick").all() and (t.grid == "params/x.yaml").all()
    assert sorted(t.fraction.unique()) == [0.1, 0.5]
    adv = t[(t.method == "adversarial") & (t.fraction == 0.1)].iloc[0]
    assert adv["n"] == 3 and adv["mpjpe_abs_diff"] == pytest.approx(-3.0)
    assert R.study_table(df.iloc[:0], ["params/x.yaml"]).empty


def test_saved_figures_are_byte_stable(tmp_path):
    t = R.sweep_table(_df(), 2)
    fig = R.plot_sweep(t, dpi=30)
    first = [p.read_bytes() for p in R.save_figure(fig, "f", tmp_path, dpi=30)]
    again = [p.read_bytes() for p in R.save_figure(fig, "f", tmp_path, dpi=30)]
    assert first == again and first[1].startswith(b"%PDF")
    assert b"CreationDate" not in first[1]  # the date would change the bytes on every report run


def test_compact_joins_spread_and_intervals_and_drops_commits():
    t = pd.DataFrame({"method": ["a", "b"], "n": [2, 2], "commits": ["x", "x"], "mpjpe_abs": [10.0, 12.0],
                      "mpjpe_abs_std": [1.0, np.nan], "mpjpe_abs_diff": [np.nan, 2.0],
                      "mpjpe_abs_ci": [np.nan, "[1.0, 3.0]"], "rr": [5.0, 6.0], "rr_lo": [4.0, 5.0],
                      "rr_hi": [6.0, 7.0], "rr_seeds": ["5.0", "6.0"], "fraction": [0.25, 0.5]})
    c = R.compact(t)
    assert list(c.columns) == ["method", "n", "mpjpe_abs", "mpjpe_abs_diff", "rr", "fraction"]
    assert list(c.mpjpe_abs) == ["10.0 ± 1.0", "12.0"] and list(c.mpjpe_abs_diff) == ["", "2.0 [1.0, 3.0]"]
    assert list(c.rr) == ["5.0 [4.0, 6.0]", "6.0 [5.0, 7.0]"] and list(c.fraction) == [0.25, 0.5]
    df = _df()
    imp = R.compact(R.improvement_table(df[[R.ablation_label(r) != "D depth 4" for _, r in df.iterrows()]], 2))
    assert "ci_low" not in imp and imp["diff"].str.contains(r"\[").all()


def test_report_config_validates_grid_files_and_fraction():
    from handlib.config import ConfigError

    with pytest.raises(ConfigError, match="no such grid file: params/nope.yaml"):
        R.ReportConfig.from_params({"claim_file": "params/nope.yaml"})
    with pytest.raises(ConfigError, match="no such grid file: params/nope.yaml"):
        R.ReportConfig.from_params({"when_base_file": "params/nope.yaml"})
    with pytest.raises(ConfigError, match="ablation_fraction"):
        R.ReportConfig.from_params({"ablation_fraction": 0.0})
    assert R.ReportConfig.from_params({"reference_files": ["params/nope.yaml"]}).reference == ""  # unused


def test_build_and_write_the_smoke_report(tmp_path):
    cfg = R.ReportConfig.from_params({"results": "results/smoke", "smoke": True, "dpi": 30, "out": str(tmp_path),
                                      "protocol_files": ["params/smoke.yaml"], "ablation_file": "params/smoke.yaml",
                                      "ablation_fraction": 0.25})
    rep = R.build_report(cfg)
    assert {"sweep_protocol2", "improvement_protocol2", "ablations", "studies"} <= set(rep.tables)
    assert R.summary_lines(rep)[0] == "params/smoke.yaml: 0 run(s) without a record"
    figs = R.report_figures(rep, cfg.dpi)
    assert set(figs) == {"sweep_protocol2", "ablations"}
    names = {p.name for p in R.write_report(rep, figs, cfg.out_dir, cfg.dpi)}
    assert {"studies.md", "sweep_protocol2.png", "ablations.pdf"} <= names
    assert all((tmp_path / ("figures" if n.endswith(("png", "pdf")) else "tables") / n).exists() for n in names)


def test_build_report_parts_name_only_their_grids():
    cfg = R.ReportConfig.from_params({"results": "results/smoke", "smoke": True, "ablation_file": "params/smoke.yaml",
                                      "ablation_fraction": 0.25})
    abl = R.build_report(cfg, parts=("ablations",))
    assert list(abl.tables) == ["ablations", "ablations_diagnostics", "ablations_full_strength"] and not abl.sweeps
    assert list(abl.missing) == ["params/smoke.yaml"]
    # D's sensitivity beside each Table 1 row, in the table's row order; rows without a D have none
    diag, rows = abl.tables["ablations_diagnostics"][0], abl.tables["ablations"][0]
    assert list(diag.row) == list(rows.row) and list(diag.n) == list(rows.n)
    d = diag.set_index("row")
    assert 0 <= d.loc["full model", "probe/d_acc"] <= 1 and np.isnan(d.loc["temporal smoothness prior",
                                                                            "probe/d_acc"])
    assert R.tables_text(abl).startswith("ablations\n")
    # Table 1 again at full lambda_MM strength and at the last step: same rows, the same pairing
    fs = abl.tables["ablations_full_strength"][0]
    assert list(fs.row) == list(rows.row) and {"last_mpjpe_abs", "last_mpjpe_abs_vs_full_lo"} <= set(fs.columns)
    with pytest.raises(ValueError, match="unknown parts"):
        R.build_report(cfg, parts=("nope",))
    only = R.ReportConfig.from_params({"results": "results/smoke", "smoke": True, "ablation_file": "params/smoke.yaml",
                                       "ablation_fraction": 0.25, "parts": ["ablations"]})
    # the config's parts, when none are passed
    assert list(R.build_report(only).tables) == ["ablations", "ablations_diagnostics", "ablations_full_strength"]
    from handlib.config import ConfigError
    with pytest.raises(ConfigError, match="parts"):
        R.ReportConfig.from_params({"parts": ["sweeps", "nope"]})


def test_method_table_keeps_each_models_columns_apart():
    """The selected, the full-strength selected and the last step's errors are separate columns,
    each paired with the baseline (a last-step column must not overwrite the selected one)."""
    d = _df()
    d = d[(d.fraction == 0.1) & ~d.run_id.str.contains("d_depth")].copy()
    d["last/test/mpjpe_abs"] = d[R.ABS] + 10.0 * (d.method == "adversarial")  # worse at the last step
    d["selected/test/mpjpe_pa"] = d["selected/test/epe_2d"] = 1.0
    t = R.method_table(d, cols=(R.ABS, "last/test/mpjpe_abs")).set_index("method")
    assert {"mpjpe_abs", "mpjpe_abs_diff", "last_mpjpe_abs", "last_mpjpe_abs_diff"} <= set(t.columns)
    assert t.loc["adversarial", "mpjpe_abs_diff"] == pytest.approx(-3.0)  # -2 - s over seeds 0, 1, 2
    assert t.loc["adversarial", "last_mpjpe_abs_diff"] == pytest.approx(7.0)
    assert R._col_name("selected_full/test/mpjpe_abs") == "selected_full_mpjpe_abs"


def test_claim_figure_pairs_each_seed_with_supervised_and_shows_d_sensitivity():
    from handlib.analysis.claim_figure import SENSITIVITY, claim_gains, plot_claim

    d = _df()
    d = d[(d.fraction == 0.1) & ~d.run_id.str.contains("d_depth")].copy()
    d["last/test/mpjpe_abs"] = d[R.ABS] + 1.0
    for c in SENSITIVITY:
        d[c] = np.where(d.method == "adversarial", 0.95, np.nan)
    g = claim_gains(d, R.ABS)
    assert len(g) == 6 and set(g.method) == {"adversarial", "smoothness"}  # 3 seeds each, supervised is the base
    assert sorted(g[g.method == "adversarial"]["diff"]) == [-4.0, -3.0, -2.0]  # -2 - seed
    fig = plot_claim(d)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["adversarial", "smoothness"]
    assert sum(len(c.get_offsets()) for c in right.collections) == 3  # D's share: the adversarial seeds only
    assert "n = 3-3" in fig._suptitle.get_text()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_pretrained_table_puts_each_seed_beside_the_mean_pose_floor():
    pre = pd.DataFrame({"seed": [1, 0], "selected_step": [1000, 800],
                        "selected/test/mpjpe_abs": [60.0, 70.0], "selected/test/mpjpe_rr": [30.0, 20.0],
                        "selected/test/epe_2d": [6.0, 5.0], "mean_pose/test/mpjpe_abs": [150.0, 150.0],
                        "mean_pose/test/mpjpe_rr": [40.0, 40.0], "mean_pose/test/epe_2d": [10.0, 10.0]})
    t = R.pretrained_table(pre)
    assert list(t.seed) == [0, 1, "mean"]
    assert t.below_floor.tolist() == pytest.approx([0.5, 0.25, 0.375])
    assert t.loc[2, "rr"] == pytest.approx(25.0) and t.loc[2, "mean_pose_rr"] == pytest.approx(40.0)


def test_with_pretrained_adds_the_starting_m_once_per_pretraining_run():
    d = _df()
    d = d[(d.fraction == 0.1) & ~d.run_id.str.contains("d_depth")].copy()
    d["pretrained/test/mpjpe_abs"] = 50.0 + d.pretrain_seed
    out = R.with_pretrained(d, (R.ABS, R.RR))
    pre = out[out.method == "pre-trained"]
    assert len(pre) == 3 and pre[R.ABS].tolist() == [50.0, 51.0, 52.0]
    assert pre[R.RR].isna().all()  # the records hold no pre-trained rr here: not borrowed from a continuation
    t = R.method_table(out, cols=(R.ABS,)).set_index("method")
    assert "pre-trained" in t.index and np.isfinite(t.loc["pre-trained", "mpjpe_abs_diff"])


def test_when_figure_moves_one_setting_at_a_time_from_the_claims():
    from handlib.analysis.when_figure import plot_when, when_gains

    rows = []
    base = {"protocol": 2, "fraction": 0.1, "appearance_shift": 0.5}
    settings = [base, {**base, "fraction": 0.25}, {**base, "appearance_shift": 1.0}, {**base, "protocol": 1},
                {**base, "fraction": 0.25, "appearance_shift": 1.0}]  # the last moves two keys: in no panel
    for i, st in enumerate(settings):
        for s in (0, 1, 2):
            for method, delta in (("supervised", 0.0), ("adversarial", -1.0 - i)):
                rows.append({**st, "method": method, "pretrain_run": f"pre{i}{s}", R.ABS: 60.0 + s + delta})
    g = when_gains(pd.DataFrame(rows), base)
    assert set(g.key) == {"fraction", "appearance_shift", "protocol"}
    frac = g[g.key == "fraction"]
    assert sorted(frac.value.unique()) == [0.1, 0.25] and len(frac) == 6  # 2 settings x 3 seeds
    assert frac[frac.value == 0.25]["diff"].tolist() == [-2.0] * 3  # setting 1
    assert (g[(g.key == "protocol") & (g.value == 1)]["diff"] == -4.0).all()
    assert not (g["diff"] == -5.0).any()  # the setting that moves two keys is left out
    fig = plot_when(pd.DataFrame(rows), base, dpi=30)
    assert len(fig.axes) == 3 and "claim: 10" in fig.axes[0].get_xlabel()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_ablation_rows_name_ds_options_apart_from_the_full_model():
    row = {**R.FULL, "d_nda": 0.0, "d_input": "pose", "d_pool": "score"}
    assert R.ablation_label(row) == "full model"
    assert R.ablation_label({**R.FULL, "d_nda": float("nan")}) == "full model"  # records older than the options
    assert R.ablation_label({**row, "d_nda": 0.5}) == "D options: NDA"
    assert R.ablation_label({**row, "d_input": "pose_diff", "d_pool": "window"}) == \
        "D options: frame differences + window pool"
    assert R.ablation_label({**row, "d_nda": 0.5, "d_depth": 4}) == "D options: NDA, other: d_depth"


def test_join_runs_adds_seeds_of_the_same_settings_and_new_methods_only():
    base = {"dataset": "handsim", "preset": "full", "protocol": 2, "fraction": 0.1, "appearance_shift": 0.5,
            "image_size": 64, "steps": 400, "lr": 1e-4, "lambda_mm": 0.03, "d_depth": 2}

    def run(rid, method, variant, **kw):
        return {**base, "run_id": rid, "method": method, "variant": variant, **kw}

    main = pd.DataFrame([run("sup0", "supervised", "supervised"), run("adv0", "adversarial", "adversarial")])
    extra = pd.DataFrame([run("sup5", "supervised", "supervised"),                  # a seed more: joins
                          run("adv5", "adversarial", "adversarial"),                # joins
                          run("depth5", "adversarial", "adversarial", d_depth=1),   # another D: left out
                          run("lam5", "adversarial", "adversarial", lambda_mm=0.1),  # another lambda: left out
                          run("sup5b", "supervised", "supervised", lr=3e-4),        # another lr: left out
                          run("pp5", "pose_prior", "pose_prior")])                  # a new method: joins
    joined = R.join_runs(main, extra)
    assert sorted(joined.run_id) == ["adv0", "adv5", "pp5", "sup0", "sup5"]
    assert R.join_runs(main, extra.iloc[:0]).equals(main)
