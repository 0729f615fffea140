"""Aggregation from run records: table rows, the validation search, paired differences and CIs."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from handlib import report as R
from handlib.analysis import aggregate as A


def _write(res, rid, stage, config, metrics):
    d = res / "runs" / rid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"stage": stage, "run_id": rid, "seed": config.get("seed", 0),
                                               "config": config, "commit": "abcdef0123"}))
    (d / "metrics.json").write_text(json.dumps({"run_id": rid, **metrics}))


def _overall(abs_):
    return {"overall": {"mpjpe_abs": abs_, "mpjpe_rr": abs_ / 2, "mpjpe_pa": abs_ / 4, "epe_2d": 20.0},
            "diagnostics": {"jitter_ratio": 2.0, "bone_cv_pred": abs_ / 1000},
            "per_action": {"fist": {"mpjpe_abs": abs_ + 1}, "wave": {"mpjpe_abs": abs_ - 1}}}


def _study(res, diffs=(-3.0, -1.0, -2.0), shift=None):
    for s, d in enumerate(diffs):
        pre = f"pretrain__s{s}"
        _write(res, pre, "pretrain", {"dataset": "handsim", "preset": "quick", "protocol": 2, "fraction": 0.1,
                                      "seed": s, "image_size": 128, "appearance_shift": shift}, {})
        for method, lam, err in (("supervised", 0.01, 100.0 + s), ("adversarial", 0.01, 100.0 + s + d),
                                 ("adversarial", 0.03, 150.0)):
            if lam == 0.03 and s:
                continue
            cfg = {"method": method, "seed": s, "pretrain_seed": s, "steps": 400, "lr": 1e-4, "lambda_mm": lam,
                   "lambda_smooth": 100.0, "S": 16, "d_lr": 1e-4, "smoke": False}
            res_ = {m: {"val": _overall(err - 5), "test": _overall(err)} for m in ("selected", "pretrained", "last")}
            _write(res, f"adv__{method}__{lam}__{s}", "adversarial", cfg,
                   {"pretrain_run": pre, "selected_step": 100, "results": res_, "wall_time_s": 300.0,
                    "d_probe": {"last": {"d_acc": 0.8, "d_spearman_abs": -0.1}}})


def test_rows_carry_settings_data_metrics_and_probe(tmp_path):
    _study(tmp_path)
    df = A.adversarial_runs(tmp_path)
    assert len(df) == 7 and set(df.method) == {"supervised", "adversarial"}
    r = df[(df.method == "adversarial") & (df.pretrain_seed == 1)].iloc[0]
    assert r["selected/test/mpjpe_abs"] == 100.0 and r["selected/val/mpjpe_rr"] == pytest.approx(47.5)
    assert r["appearance_shift"] == 1.0 and r["fraction"] == 0.1 and r["commit"] == "abcdef01"
    assert r["probe/d_acc"] == 0.8 and r["test/jitter_ratio"] == 2.0
    assert (df.selected_step == 100).all()  # read from the record, not overwritten by pre-training's fields


def test_rows_carry_d_sensitivity_full_strength_selection_and_renamed_settings(tmp_path):
    """Newer records: D's paired shares (warm start and final) and the model selected at full
    lambda_MM; a record written before ``augment`` became ``rotate`` reads under the new name."""
    _write(tmp_path, "pre", "pretrain", {"seed": 0, "fraction": 0.1}, {})
    sens = {k: {"paired": 0.9, "drop": 3.0, "n": 600} for k in A.SENSITIVITY}
    res_ = {m: {"val": _overall(95.0), "test": _overall(100.0)} for m in ("selected", "pretrained", "last")}
    _write(tmp_path, "new", "adversarial", {"method": "adversarial", "seed": 0, "steps": 400, "rotate": False,
                                            "d_nda": 0.5, "d_input": "pose_diff"},
           {"pretrain_run": "pre", "results": res_, "selected_full": {"test": _overall(90.0)},
            "selected_full_step": 300, "d_sensitivity": {"warm_start": sens, "final": {"shuffle": {"paired": 0.4}}}})
    _write(tmp_path, "old", "adversarial", {"method": "adversarial", "seed": 0, "steps": 400, "augment": True},
           {"pretrain_run": "pre", "results": res_})
    df = A.adversarial_runs(tmp_path).set_index("run_id")
    new, old = df.loc["new"], df.loc["old"]
    assert new["rotate"] == False and old["rotate"] == True  # noqa: E712 (numpy bools)
    assert new["d_input"] == "pose_diff" and new["d_nda"] == 0.5
    assert new["variant"] == "adversarial + D options" and old["variant"] == "adversarial"
    assert new["dsens/warm_start/jitter_5"] == 0.9 and new["dsens/final/shuffle"] == 0.4
    assert math.isnan(new["dsens/final/jitter_2"]) and math.isnan(old["dsens/warm_start/shuffle"])
    assert new["selected_full/test/mpjpe_abs"] == 90.0 and new["selected_full_step"] == 300
    assert math.isnan(old["selected_full/test/mpjpe_abs"])


def test_pretrain_rows_are_the_pretrained_method_with_their_own_metrics(tmp_path):
    _study(tmp_path)
    _write(tmp_path, "pretrain__full", "pretrain", {"dataset": "handsim", "preset": "quick", "protocol": 2,
                                                    "fraction": 1.0, "seed": 0, "steps": 800, "frozen_steps": 200},
           {"val": _overall(60.0), "test": _overall(64.0), "wall_time_s": 500.0})
    pre = A.pretrain_runs(tmp_path)
    assert len(pre) == 4 and set(pre.method) == {"pre-trained"}
    r = pre[pre.run_id == "pretrain__full"].iloc[0]
    assert r["selected/test/mpjpe_abs"] == 64.0 and r["selected/val/mpjpe_rr"] == 30.0
    assert (r["fraction"], r["pretrain_seed"], r["pretrain_run"], r["steps"]) == (1.0, 0, "pretrain__full", 1000)
    assert r["appearance_shift"] == 1.0 and r["commit"] == "abcdef01"
    assert math.isnan(pre[pre.run_id == "pretrain__s0"].iloc[0]["selected/test/mpjpe_abs"])  # no metrics recorded


def test_search_table_chooses_on_validation_and_labels_what_varies(tmp_path):
    _study(tmp_path, diffs=(-3.0,))
    t = A.search_table(A.adversarial_runs(tmp_path))
    adv = t[t.method == "adversarial"]
    assert list(adv.setting) == ["lambda_mm=0.01", "lambda_mm=0.03"]
    assert list(adv.chosen) == [True, False]
    assert not any("test" in c for c in t.columns)


def test_search_chooses_per_variant_of_d(tmp_path):
    """The paper's D and D with options are two searches: each gets its own chosen setting."""
    _study(tmp_path, diffs=(-3.0,))
    res_ = {m: {"val": _overall(80.0), "test": _overall(90.0)} for m in ("selected", "pretrained", "last")}
    _write(tmp_path, "opt", "adversarial", {"method": "adversarial", "seed": 0, "steps": 400, "lambda_mm": 0.01,
                                            "d_nda": 0.5}, {"pretrain_run": "pretrain__s0", "results": res_})
    t = A.search_table(A.adversarial_runs(tmp_path))
    chosen = t[t.chosen].set_index("variant")
    assert set(chosen.index) == {"supervised", "adversarial", "adversarial + D options"}
    assert chosen.loc["adversarial + D options", "run_id"] == "opt"


def test_paired_difference_and_its_t_interval(tmp_path):
    diffs = (-3.0, -2.5, -2.0)
    _study(tmp_path, diffs)
    df = A.adversarial_runs(tmp_path)
    df = df[df.lambda_mm == 0.01]
    per, s = A.paired(df, "adversarial", "supervised", "selected/test/mpjpe_abs")
    assert list(per["diff"]) == pytest.approx(list(diffs))
    h = stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / math.sqrt(3)
    assert s["mean_diff"] == pytest.approx(-2.5) and s["ci_low"] == pytest.approx(-2.5 - h)
    assert s["excludes_zero"] and s["n"] == 3
    _, wide = A.paired(df.assign(**{"selected/test/mpjpe_abs": df["selected/test/mpjpe_abs"]
                                    + np.where(df.pretrain_seed == 1, 4.0, 0.0) * (df.method == "adversarial")}),
                       "adversarial", "supervised", "selected/test/mpjpe_abs")
    assert not wide["excludes_zero"]  # diffs -3, +1.5, -2: the interval covers 0
    with pytest.raises(ValueError, match="more than one"):
        A.paired(A.adversarial_runs(tmp_path), "adversarial", "supervised", "selected/test/mpjpe_abs")


def test_ci_of_one_value_is_open_and_markdown_renders():
    m, lo, hi = A.ci95([2.0])
    assert m == 2.0 and math.isnan(lo) and math.isnan(hi)
    d = A.describe(__import__("pandas").DataFrame({"method": ["a", "a", "b"], "x": [1.0, 3.0, 5.0]}), ["x"])
    assert d.loc["a", ("mean", "x")] == 2.0 and d.loc["b", "n"] == 1
    assert "|" in A.to_markdown(d)


def test_change_and_action_tables_before_after_per_method(tmp_path):

    _study(tmp_path)
    df = A.adversarial_runs(tmp_path)
    df = df[df.lambda_mm == 0.01]
    s0 = df[df.pretrain_seed == 0].set_index("method")
    assert s0.loc["supervised", "action/selected/fist"] == 101.0
    assert s0.loc["adversarial", "action/selected/fist"] == 98.0
    ch = R.change_table(df).set_index("method")
    assert ch.loc["adversarial", "bone_cv_pred_after"] == pytest.approx((97 + 100 + 100) / 3000)
    assert ch.loc["adversarial", "bone_cv_pred_before"] == pytest.approx((97 + 100 + 100) / 3000)  # stub records
    assert ch.loc["supervised", "jitter_ratio_after"] == 2.0
    assert ch.loc["adversarial", "probe/d_acc"] == pytest.approx(0.8)
    at = R.action_table(df).set_index("action")
    assert list(at.index) == ["fist", "wave"] and sorted(at.columns) == ["adversarial", "pretrained", "supervised"]
    assert at.loc["wave", "supervised"] == pytest.approx(100.0)
    assert at.loc["fist", "adversarial"] == pytest.approx(100.0)


def test_markdown_prints_setting_columns_as_given():
    import pandas as pd

    t = pd.DataFrame({"fraction": [0.1, 0.25, 0.05], "method": ["a", "b", "c"], "mpjpe_abs": [70.04, 71.66, 1.0]})
    md = A.to_markdown(t, index=False)
    assert "0.25" in md and "0.05" in md and "70.0" in md and "71.7" in md and "71.66" not in md
    assert "0.25" in A.to_markdown(t.set_index("method"))


def test_variant_names_the_nda_only_d_apart():
    """d_nda 1 (D never trains on M's windows) is its own row; any other option set is "D options";
    the pose prior keeps its method name whatever its D's options."""
    base = {"method": "adversarial", "d_input": "pose", "d_pool": "score"}
    assert A.variant(base | {"d_nda": 0.0}) == "adversarial"
    assert A.variant(base | {"d_nda": 0.5}) == A.OPTIONS
    assert A.variant(base | {"d_nda": 1.0, "d_input": "pose_diff"}) == A.NDA_ONLY
    assert A.variant(base | {"d_nda": float("nan"), "d_input": "pose_diff"}) == A.OPTIONS
    assert A.variant({"method": "pose_prior", "d_nda": 1.0}) == "pose_prior"
