"""What every training stage shares (pre-training, adversarial): data, split, record,
checkpoint location, the facts a record states about its inputs, the final evaluation,
and finding a finished pre-training run to start from.

A stage = one run record ``results/runs/<run_id>/{config.json, metrics.json, history.csv,
split.csv}``; checkpoints live in the cache (never in git) under
``cache_dir()/checkpoints/<run_id>/data-<data identity>-code-<code hash>/<phase>/last.pt``:
keyed by the config (run id), the data's content and the training code, so a resume never
mixes data or code versions. The pre-training record names its final checkpoint
(``metrics.json["checkpoint"]``) and later stages find it from there (``find_pretrain``),
never by recomputing the code hash: adding a module does not orphan a finished run.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlib import metrics as M
from handlib.config import ConfigError
from handlib.data.protocols import Split, assert_no_leak, make_split
from handlib.paths import cache_dir, results_dir
from handlib.repro import RunRecord
from handlib.train.evaluate import evaluate_splits, predict, predict_unlabelled, root_summary

VARY = ("dataset", "protocol", "fraction")  # config keys shown in clear in a pre-training run id
SMOKE_TEST_FRAMES = 256
HO3D_SERVER = "official HO3D server (no public test labels)"


# ---------------------------------------------------------------- data and split
def load_data(cfg):
    """The dataset object named by the config (``.store``, ``.motion``, ``.crop_source``,
    ``.crop_note``), through ``registry.load_dataset`` with every dataset option the config
    has: dataset, root, image_size, preset, cache_root, ``appearance_shift`` (HandSim) and
    ``test_crop`` / ``missing_images`` (FPHAB only) where the config has these fields."""
    from handlib.data.registry import load_dataset

    kw: dict[str, Any] = {}
    if getattr(cfg, "test_crop", None) is not None:
        kw["test_crop"] = cfg.test_crop
    if cfg.dataset == "fphab" and getattr(cfg, "missing_images", None) is not None:
        kw["missing_images"] = cfg.missing_images
    if cfg.dataset == "handsim" and hasattr(cfg, "progress"):
        kw["progress"] = cfg.progress
    if cfg.dataset == "handsim" and getattr(cfg, "appearance_shift", None) is not None:
        kw["appearance_shift"] = cfg.appearance_shift
    data = load_dataset(cfg.dataset, root=cfg.root, image_size=cfg.image_size, preset=cfg.preset,
                        cache_root=cfg.cache_root, **kw)
    check_image_size(cfg, data.store)
    return data


def check_image_size(cfg, store) -> None:
    if store.image_size != cfg.image_size:
        raise ConfigError(f"{type(cfg).__name__}.image_size: {cfg.image_size} but the store holds "
                          f"{store.image_size} px images")


def default_motion_source(dataset: str) -> str:
    """What a dataset's ``.motion`` is: HandSim's unpaired corpus, or the real datasets'
    ground-truth motion of the training split."""
    return "corpus" if dataset == "handsim" else "train_gt"


def build_split(cfg, store) -> Split:
    """``protocols.make_split`` with the config's protocol, fraction, split seed (``split_seed``,
    else ``seed``) and val_fraction (and its ``motion_source`` where it has one)."""
    return make_split(store.meta, protocol=cfg.protocol, fraction=cfg.fraction, seed=split_seed_of(cfg),
                      val_fraction=cfg.val_fraction,
                      motion_source=getattr(cfg, "motion_source", None) or default_motion_source(cfg.dataset))


def split_seed_of(cfg) -> int:
    """The seed of a run's split: its ``split_seed`` where set, else its model ``seed`` (config
    object or config dict)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    s = get("split_seed", None)
    return int(get("seed", 0) if s is None else s)


def read_split(path, store, config: dict | None = None) -> Split:
    """The Split a run wrote with ``Split.to_csv`` (one row per store frame: sequence, frame,
    role), mapped back onto ``store``'s rows. ``config`` (the run's config dict, e.g.
    ``find_pretrain(...)["config"]``) fills protocol, fraction, seed, val_fraction, motion_source.
    Raises ValueError if the file's frames are not exactly the store's (other data)."""
    c = dict(config or {})
    df = pd.read_csv(path, dtype={"sequence": str}, keep_default_na=False)
    if list(df.columns[:3]) != ["sequence", "frame", "role"]:
        raise ValueError(f"{path}: expected columns sequence, frame, role; got {list(df.columns)}")
    meta = store.meta
    if len(df) != len(meta) or not ((df["sequence"].to_numpy() == meta["sequence"].astype(str).to_numpy()).all()
                                    and (df["frame"].to_numpy() == meta["frame"].to_numpy()).all()):
        raise ValueError(f"{path}: its {len(df)} (sequence, frame) rows are not the store's {len(meta)} "
                         "frames in order: the split was written for other data")
    role, seq = df["role"].to_numpy(), df["sequence"].to_numpy()

    def seqs(*roles: str) -> list[str]:
        return list(dict.fromkeys(seq[np.isin(role, roles)]))

    protocol = int(c.get("protocol", 2))
    split = Split(protocol=protocol, fraction=float(c.get("fraction", np.nan)), seed=split_seed_of(c),
                  val_fraction=float(c.get("val_fraction", np.nan)),
                  motion_source=c.get("motion_source") or default_motion_source(c.get("dataset", "handsim")),
                  labelled_rows=np.flatnonzero(role == "labelled").astype(np.int64),
                  # P1: every labelled sequence is also video (its other frames say 'unlabelled')
                  unlabelled_sequences=seqs("unlabelled", "labelled") if protocol == 1 else seqs("unlabelled"),
                  val_rows=np.flatnonzero(role == "val").astype(np.int64),
                  test_rows=np.flatnonzero(role == "test").astype(np.int64),
                  labelled_sequences=seqs("labelled"), val_sequences=seqs("val"),
                  notes=[f"read from {path}"], meta=meta)
    assert_no_leak(split)
    return split


def same_split(a: Split, b: Split) -> bool:
    """Same labelled, validation and test rows and the same unlabelled videos."""
    return (np.array_equal(a.labelled_rows, b.labelled_rows) and np.array_equal(a.val_rows, b.val_rows)
            and np.array_equal(a.test_rows, b.test_rows)
            and list(a.unlabelled_sequences) == list(b.unlabelled_sequences))


# ---------------------------------------------------------------- identities and checkpoints
def code_hash() -> str:
    """Short hash of the sources that define a checkpoint's meaning (model, losses, training)."""
    root = Path(__file__).resolve().parent.parent
    files = sorted([root / "losses.py", root / "geometry.py", *(root / "models").glob("*.py"),
                    *(root / "train").glob("*.py")])
    h = hashlib.sha1()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:8]


def data_identity(data) -> str:
    """10 hex digits over the data's content: the store's meta, 3D labels, intrinsics, image
    shape and 64 evenly spaced images (cheap on a memory-mapped store; any regeneration that
    changes frames, labels, crops or rendering changes it). Cached on the store while its
    arrays are the same objects (stores are read-only: arrays are replaced, not edited)."""
    store = data.store
    key = tuple(id(a) for a in (store.meta, store.j3d, store.K, store.images))
    cached = getattr(store, "_handlib_identity", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha1()
    h.update(store.meta.to_csv(index=False).encode())
    for a in (store.j3d, store.K):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    n = len(store.images)
    h.update(f"{store.images.dtype}{tuple(store.images.shape)}".encode())
    if n:
        idx = np.unique(np.linspace(0, n - 1, min(n, 64)).round().astype(np.int64))
        h.update(np.ascontiguousarray(store.images[idx]).tobytes())
    out = h.hexdigest()[:10]
    try:
        store._handlib_identity = (key, out)
    except AttributeError:  # a store that refuses attributes: recomputed next time
        pass
    return out


def make_record(cfg, rt, split: Split | None = None, vary=VARY) -> RunRecord:
    """The run's record: config.json written, and split.csv when a split is given."""
    rec = RunRecord(cfg.stage, cfg.to_dict(), cfg.seed, vary=vary, results=cfg.results,
                    device=rt.device if rt is not None else None, run_name=cfg.run_name)
    rec.write_config()
    if split is not None:
        split.to_csv(rec.path("split.csv"))  # asserts that no test/val sequence has a training role
    return rec


def checkpoint_root(cfg, rec: RunRecord, data) -> Path:
    """``cache_dir(cfg.cache_root)/checkpoints/<run_id>/data-<data_identity>-code-<code_hash>``;
    wiped first when ``cfg.smoke`` (a smoke run always starts fresh)."""
    root = cache_dir(cfg.cache_root) / "checkpoints" / rec.id / f"data-{data_identity(data)}-code-{code_hash()}"
    if getattr(cfg, "smoke", False) and root.exists():
        shutil.rmtree(root)
    return root


def checkpoint_block(cfg, data, final: Path, phases: list[dict]) -> dict:
    """What a record says about its final checkpoint (read back by ``find_pretrain``)."""
    final = Path(final)
    base = cache_dir(cfg.cache_root)
    rel = str(final.relative_to(base)) if final.is_relative_to(base) else None
    # the hashes the checkpoint was keyed by when training began (the code may change meanwhile)
    key = re.fullmatch(r"data-(\w+)-code-(\w+)", final.parent.parent.name)
    data_id, code = key.groups() if key else (data_identity(data), code_hash())
    return {"path": str(final), "cache_relative": rel, "code_hash": code,
            "data_identity": data_id, "phases": phases,
            "steps": int(sum(p["steps"] for p in phases))}


# ---------------------------------------------------------------- what the record states
def run_facts(cfg, data, model=None) -> dict:
    """What a record must say about its inputs: dataset and its content identity, where test
    crops come from (``crop_source`` / ``crop_note``), the hand scale at test time
    (``scale_source``), the label-free crop option (``test_crop``), the motion this stage uses
    (``motion_source``: None for pre-training, which uses no motion) and the motion the dataset
    offers; with a model, its closed-form root failures counted in eval mode since its last
    ``reset_root_counts()`` (the final evaluation resets it)."""
    scale = getattr(cfg, "scale_source", "gt")
    motion = getattr(data, "motion", None)
    facts = {
        "dataset": cfg.dataset,
        "data_identity": data_identity(data),
        "crop_source": getattr(data, "crop_source", "unknown"),
        "crop_note": getattr(data, "crop_note", ""),
        "test_crop": getattr(cfg, "test_crop", None),
        "scale_source": scale,
        "scale_note": ("hand scale at test time: each frame's true reference-bone length (reads the test labels)"
                       if scale == "gt" else "hand scale at test time: the training mean bone length (prior)"),
        "motion_source": getattr(cfg, "motion_source", None),
        "motion_available": None,
    }
    if motion is not None:
        seqs = motion[0]
        facts["motion_available"] = {"source": default_motion_source(cfg.dataset), "sequences": len(seqs),
                                     "frames": int(sum(len(s) for s in seqs))}
    if model is not None and hasattr(model, "root_counts"):
        c = model.root_counts()
        n = c["frames"]
        facts["closed_form_root"] = {**c, "invalid_fraction": c["invalid"] / n if n else 0.0,
                                     "clamped_fraction": c["clamped"] / n if n else 0.0}
    return facts


# ---------------------------------------------------------------- evaluation
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
    from handlib.data.ho3d import evaluation_keys, export_ho3d_submission

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


# ---------------------------------------------------------------- finding a pre-training run
def find_pretrain(run_id: str | None = None, cfg=None, results: str | None = None) -> dict:
    """A finished pre-training run, given by its id or by its config (``PretrainConfig``;
    its run id and results directory are derived from it). Returns ``run_id``, ``dir``,
    ``checkpoint`` (Path of the final checkpoint, from the record's ``checkpoint`` block),
    ``split_csv`` (Path), ``config`` (dict), ``metrics`` (dict). Raises FileNotFoundError
    naming what is missing: the record, its metrics (run not finished), or the checkpoint
    (cache wiped or another machine)."""
    if run_id is None:
        if cfg is None:
            raise ValueError("find_pretrain: give a run_id or the pre-training config")
        run_id = RunRecord("pretrain", cfg.to_dict(), cfg.seed, vary=VARY, run_name=cfg.run_name).id
        results = results if results is not None else cfg.results
    runs = results_dir(results) / "runs"
    d = runs / run_id
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"pre-training run {run_id!r}: no record {d / 'config.json'} in {runs} "
                                "(never run with these parameters, or another results directory)")
    if not (d / "metrics.json").exists():
        raise FileNotFoundError(f"pre-training run {run_id!r}: {d / 'metrics.json'} missing: the run has "
                                "not finished (resume it with the same parameters)")
    config = json.loads((d / "config.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    ck = metrics.get("checkpoint")
    if not isinstance(ck, dict) or not ck.get("path"):
        raise FileNotFoundError(f"pre-training run {run_id!r}: {d / 'metrics.json'} names no checkpoint "
                                "(a record older than checkpoint records): re-run pre-training")
    path = Path(ck["path"])
    if not path.exists() and ck.get("cache_relative"):  # the same cache layout elsewhere
        alt = cache_dir(config.get("config", {}).get("cache_root")) / ck["cache_relative"]
        path = alt if alt.exists() else path
    if not path.exists():
        raise FileNotFoundError(f"pre-training run {run_id!r}: checkpoint {ck['path']} missing (cache wiped, "
                                "or the run was made on another machine): re-run pre-training with the "
                                f"config in {d / 'config.json'}")
    split_csv = d / "split.csv"
    if not split_csv.exists():
        raise FileNotFoundError(f"pre-training run {run_id!r}: {split_csv} missing")
    return {"run_id": run_id, "dir": d, "checkpoint": path, "split_csv": split_csv,
            "config": config.get("config", config), "metrics": metrics}


def load_pretrained(found: dict, model: torch.nn.Module) -> torch.nn.Module:
    """Load a ``find_pretrain`` result's final checkpoint into ``model`` (M)."""
    from handlib.train.loop import load_checkpoint

    model.load_state_dict(load_checkpoint(found["checkpoint"])["modules"]["M"])
    return model
