"""A stage's evaluation: the periodic validation callback of its training loop and the final
evaluation on the validation and test rows (for HO3D, whose test labels are not public, the
official submission file instead)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from handlib import metrics as M
from handlib.data.ho3d import evaluation_keys, export_ho3d_submission
from handlib.data.protocols import Split
from handlib.repro import RunRecord
from handlib.train.evaluate import evaluate_splits, predict, predict_unlabelled, root_summary
from handlib.train.stage_record import VARY

SMOKE_TEST_FRAMES = 256
HO3D_SERVER = "official HO3D server (no public test labels)"


def subset_rows(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most n of ``rows`` (seeded, sorted); all of them if n <= 0."""
    if n <= 0 or len(rows) <= n:
        return np.asarray(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def val_eval_fn(model, store, split: Split, rt, cfg, max_frames: int | None = None):
    """The periodic validation callback of a training loop: abs / root-rel MPJPE, 2D EPE on
    at most ``max_frames`` (default ``cfg.eval_max_frames``) seeded validation frames."""
    n = getattr(cfg, "eval_max_frames", 0) if max_frames is None else max_frames
    val_rows = subset_rows(np.asarray(split.val_rows), n, cfg.seed)

    def eval_fn() -> dict[str, float]:
        if not len(val_rows):
            return {}
        p = predict(model, store, val_rows, rt, 64, cfg.scale_source)
        return {"val_mpjpe_abs": float(M.mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_mpjpe_rr": float(M.rr_mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_epe_2d": float(M.epe_2d(p["pred2d"], p["gt2d"]).mean())}
    return eval_fn


def final_evaluation(model, data, split: Split, rt, cfg, out_dir: str | Path | None = None) -> dict:
    """Metrics on the validation rows (labelled) and on the test rows that have 3D labels.
    Test rows without labels (HO3D's evaluation split) are predicted instead: for HO3D the
    official submission (``pred.json`` / ``pred.zip``, ``export_ho3d_submission``) is written to
    ``out_dir/ho3d_submission/`` (``out_dir`` default: the run's record directory) and the
    result says ``{"test": {"source": "official HO3D server ...", "submission": path,
    "n_frames": N}}``. A smoke run evaluates at most 256 (seeded) test frames."""
    store = data.store
    test_rows = np.asarray(split.test_rows)
    if getattr(cfg, "smoke", False):
        test_rows = subset_rows(test_rows, SMOKE_TEST_FRAMES, cfg.seed)
    unlabelled = np.isnan(store.j3d[test_rows]).any(axis=(1, 2)) if len(test_rows) else np.zeros(0, bool)
    if hasattr(model, "reset_root_counts"):
        model.reset_root_counts()
    res = evaluate_splits(model, store, {"val": np.asarray(split.val_rows), "test": test_rows[~unlabelled]},
                          rt, 64, cfg.scale_source)
    if unlabelled.any():
        rows = test_rows[unlabelled]
        pred = predict_unlabelled(model, store, rows, rt, 64)
        block: dict[str, Any] = {"n_frames": int(len(rows)), "scale_source": "prior",
                                 "closed_form_root": root_summary(pred)}
        if cfg.dataset == "ho3d":
            if out_dir is None:
                out_dir = RunRecord(cfg.stage, cfg.to_dict(), cfg.seed, vary=VARY, results=cfg.results,
                                    run_name=cfg.run_name).dir
            block = {"source": HO3D_SERVER, **block, **_ho3d_submission(pred, store, cfg, Path(out_dir))}
        else:
            block = {"source": "no 3D labels: predictions not scored", **block}
        key = "test" if "test" not in res else "test_unlabelled"
        res[key] = block
    return res


def _ho3d_submission(pred: dict, store, cfg, out_dir: Path) -> dict:
    meta = store.meta.iloc[pred["row"].numpy()]
    keys = [f"{s}/{str(f).zfill(4)}" for s, f in zip(meta["sequence"], meta["file_id"])]
    expected = evaluation_keys(cfg.root)
    have = set(keys)
    order = [k for k in expected if k in have]
    complete = len(order) == len(expected)
    path = export_ho3d_submission(out_dir / "ho3d_submission" / "pred.json", pred["pred3d"].numpy(), keys,
                                  expected_keys=order)
    out = {"submission": str(path), "submission_zip": str(path.with_suffix(".zip")),
           "complete": complete, "expected_frames": len(expected)}
    if not complete:
        out["note"] = (f"partial submission: {len(order)} of {len(expected)} evaluation frames "
                       f"({'smoke subset' if getattr(cfg, 'smoke', False) else 'frames not loadable'}); "
                       "the server scores complete submissions only")
    return out
