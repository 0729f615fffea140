"""A stage's record and checkpoints: the run record (``results/runs/<run_id>/``), where its
checkpoints live in the cache (keyed by run id, data identity and code hash), the facts a
record states about its inputs, and finding a finished pre-training run from its record.

Checkpoints live in the cache (never in git) under
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handlib.config import StageConfig, param
from handlib.data.protocols import Split
from handlib.paths import cache_dir, results_dir
from handlib.repro import RunRecord
from handlib.train.loop import load_checkpoint
from handlib.train.stage_data import default_motion_source

VARY = ("dataset", "protocol", "fraction")  # config keys shown in clear in a pre-training run id


@dataclass(frozen=True)
class RecordParams(StageConfig):
    """Where a stage's record goes and how it is named, as flat parameters (declared here only)."""

    smoke: bool = param(False, help="smoke run: fresh checkpoints, test on at most 256 frames")
    results: str | None = param(None, help="results directory (default <repo>/results)")
    run_name: str | None = param(None, help="run id given by the study runner; default: derived from the config")


def code_hash() -> str:
    """Short hash of the sources that define a checkpoint's meaning (model, losses, training)."""
    root = Path(__file__).resolve().parent.parent  # handlib/
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
    model.load_state_dict(load_checkpoint(found["checkpoint"])["modules"]["M"])
    return model
