"""The adversarial stage (paper Sec. 3.3, Eq. 4-6): M, pre-trained on the labelled frames,
keeps training on them while its per-frame predictions on unlabelled video, stacked into
windows of S frames, are scored by a motion discriminator D that learns from unpaired motion.

    L_D = E[(1 - D(real))^2] + E[D(M(video))^2]                      (Eq. 4, D's optimiser)
    L_M = L_2D + lambda_z L_z + lambda_root L_root + lambda_MM(t) E[(1 - D(M(video)))^2]   (Eq. 6)

Methods share the task, the loop, the labelled batches (the labelled stream is seeded by its
name, and gets the pre-training run's image augmentation unless ``image_augment`` says
otherwise), the schedule and the evaluation steps; they differ only in the unlabelled term:
``adversarial`` (above), ``supervised`` (none), ``smoothness`` (squared velocity of the
predicted windows, the paper's temporal-prior baseline), ``pose_prior`` (adversarial with
S = 1: D judges single poses; as many unlabelled frames per step as with S = 16).

Rooms: the config (``adversarial_config``), the inputs (``adversarial_data``), one step
(``adversarial_task``), D's training (``discriminator``: warm start, replay, NDA, R1), D's
validation in the stage (``adversarial_d``), notebook helpers (``adversarial_helpers``); this
module runs the stage and writes the record.

Balance (all recorded parameters): D may first warm up alone against the frozen M's windows
(``d_warm_steps``), then trains beside M (``d_updates`` per step every ``d_every`` steps, a
replay buffer, NDA, R1); during ``d_warmup`` steps lambda_MM = 0, then it ramps linearly to
``lambda_mm`` over ``lambda_warmup`` steps; M's learning rate is pre-training's phase-2 rate
(1e-4, constant). M's BatchNorm stays on the aggregate statistics of pre-training. L_MM never
reaches ``z_root`` or its refiner.

Model selection: validation absolute MPJPE every ``eval_every`` steps; the best step's M is
kept, and so is the best among steps with lambda_MM at full strength (``selected_full``); test
is reported at the selected, the full-strength selected and the last step, never used to choose.
Whether D judged motion is measured, not assumed: ``metrics["d_sensitivity"]`` (paired, on
held-out real windows) for the warm-started and the final D, and at every evaluation.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from handlib import metrics as MX
from handlib.analysis.diagnostics import discriminator_auc, motion_diagnostics, root_depth_error
from handlib.config import ConfigError
from handlib.data.datasets import LabelledFrames, MotionWindows, VideoWindows
from handlib.data.handsim import HandAugment
from handlib.models.motion import MotionDiscriminator, save_discriminator
from handlib.models.pose import PoseModel
from handlib.repro import RunRecord, atomic_write_text, seed_everything
from handlib.train.adversarial_config import METHODS, AdversarialConfig, get_lambda  # noqa: F401 (re-exported)
from handlib.train.adversarial_d import DValidation, run_warm_start
from handlib.train.adversarial_data import find_pretrain_run, hold_out, motion_source, rebuild_split  # noqa: F401
from handlib.train.adversarial_helpers import (  # noqa: F401 (the notebooks' helpers, re-exported)
    ensure_pretrain,
    find_comparison,
    load_selected,
    predict_sequence,
    summary_table,
)
from handlib.train.adversarial_task import AdversarialTask  # noqa: F401 (re-exported)
from handlib.train.evaluate import evaluate_predictions, predict
from handlib.train.loop import load_checkpoint, resolve_runtime, train
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import checkpoint_root, find_pretrain, load_data, run_facts

AUC_CHECKS = (("jitter", 2.0), ("jitter", 5.0), ("bone", 0.02), ("bone", 0.05), ("shuffle", 0.0))


# ---------------------------------------------------------------- evaluation
def _eval_rows(model, store, rows, rt, scale_source: str) -> dict:
    """Overall metrics + motion diagnostics of M on ``rows`` (the diagnostics need whole runs)."""
    p = predict(model, store, rows, rt, 64, scale_source)
    res = evaluate_predictions(p, store.meta)
    return {"n_frames": res["n_frames"], "overall": res["overall"], "per_action": res["per_action"],
            "diagnostics": {**motion_diagnostics(p, store.meta), **root_depth_error(p)}}


def _auc(D: MotionDiscriminator, held: tuple[list, list], S: int, representation: str, seed: int,
         center: bool = False) -> dict:
    """discriminator_auc (unpaired; kept for comparison with older records) on the held-out
    motion windows (non-overlapping), per perturbation."""
    if not held[0]:
        return {}
    mw = MotionWindows(*held, S=S, stride=S)
    if not len(mw):
        return {}
    w = mw.__getitems__(list(range(len(mw))))
    g = torch.Generator().manual_seed(seed)
    dev = next(D.parameters()).device
    return {"n_windows": len(mw), **{f"{k}_{a:g}": discriminator_auc(D, w["j3d"].to(dev), w["K"].to(dev),
                                                                        representation, k, a, g, center=center)
                                     for k, a in AUC_CHECKS}}


def labelled_transform(cfg: AdversarialConfig, pre_cfg: PretrainConfig):
    """The labelled batches' image augmentation: the pre-training run's (``image_augment`` =
    "pretrain") or forced on / off; HandSim only (the real datasets' readers crop already)."""
    on = {"pretrain": bool(getattr(pre_cfg, "augment", False)), "on": True, "off": False}[cfg.image_augment]
    return HandAugment() if on else None


# ---------------------------------------------------------------- the stage
def run_adversarial(cfg: AdversarialConfig, data=None) -> dict[str, Any]:
    """Start from the pre-training run's final M, train one method, select on validation,
    evaluate pre-trained / selected / selected at full lambda / last on val and test, write the record.

    Returns run_id, dir, metrics, history (DataFrame), model (selected), models (dict of the
    evaluated models), store, split, runtime, D.
    """
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    pre = find_pretrain(run_id=find_pretrain_run(cfg), results=cfg.results)
    pre_cfg = PretrainConfig.from_record(pre["config"])  # older records: the values they were made with
    if data is None:
        data = load_data(pre_cfg)
    store = data.store
    split = rebuild_split(pre["config"], store, Path(pre["split_csv"]))
    if cfg.uses_video and not split.unlabelled_sequences:
        raise ConfigError(f"AdversarialConfig.method: {cfg.method!r} needs unlabelled videos, but the split of "
                          f"{pre['run_id']} has none (protocol {pre_cfg.protocol}, fraction {pre_cfg.fraction})")
    rt = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    rec = RunRecord("adversarial", cfg.to_dict(), cfg.seed, vary=("method", "protocol", "fraction"),
                    results=cfg.results, device=rt.device, run_name=cfg.run_name)
    rec.write_config()
    split.to_csv(rec.path("split.csv"))
    ckroot = checkpoint_root(cfg, rec, data)

    def pretrained() -> PoseModel:
        m = PoseModel(pre_cfg.pose_config())
        m.load_state_dict(load_checkpoint(Path(pre["checkpoint"]))["modules"]["M"])
        return m

    model = pretrained()
    D = MotionDiscriminator(cfg.motion_config()) if cfg.uses_d else None
    S, scale = cfg.window, pre_cfg.scale_source
    transform = labelled_transform(cfg, pre_cfg) if cfg.dataset == "handsim" else None
    streams: dict[str, tuple[Any, int]] = {"labelled": (LabelledFrames(store, split.labelled_rows, transform),
                                                        cfg.batch_size)}
    n_win = cfg.windows_per_step
    facts: dict[str, Any] = {"pretrain_run": pre["run_id"], "pretrain_checkpoint": str(pre["checkpoint"]),
                             "S_effective": S, "labelled_per_step": cfg.batch_size,
                             "unlabelled_per_step": n_win * S if cfg.uses_video else 0,
                             "image_augment": transform is not None}
    held: tuple[list, list] = ([], [])
    if cfg.uses_video:
        vw = VideoWindows(store, split.unlabelled_sequences, S=S)
        streams["unlabelled"] = (vw, n_win)
        facts.update(unlabelled_sequences=len(split.unlabelled_sequences), unlabelled_windows=len(vw))
    dval, mw = None, None
    if cfg.uses_d:
        src, seqs, Ks = motion_source(cfg, data, split)
        train_m, held = hold_out(seqs, Ks, cfg.d_holdout_every)
        mw = MotionWindows(*train_m, S=S)
        dcfg = cfg.d_train_config()
        streams["motion"] = (mw, dcfg.real_batch * dcfg.updates)
        dval = DValidation.build(cfg, store, split.val_sequences, held)
        facts.update(motion_source=src, motion_sequences=len(train_m[0]), motion_windows=len(mw),
                     motion_held_out_sequences=len(held[0]), d_validation_windows=dval.n_real,
                     d_receptive_field=cfg.motion_config().receptive_field)
    val_all = np.asarray(split.val_rows)
    val_rows = val_all if not cfg.eval_max_frames or len(val_all) <= cfg.eval_max_frames else np.sort(
        np.random.default_rng(cfg.seed).choice(val_all, cfg.eval_max_frames, replace=False))

    def eval_fn() -> dict[str, float]:
        if not len(val_rows):
            return {}
        p = predict(model, store, val_rows, rt, 64, scale)
        return {"val_mpjpe_abs": float(MX.mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_mpjpe_rr": float(MX.rr_mpjpe(p["pred3d"], p["gt3d"]).mean()),
                "val_epe_2d": float(MX.epe_2d(p["pred2d"], p["gt2d"]).mean()),
                **({f"val_{k}": v for k, v in dval.at_eval(model, D, rt).items()} if dval is not None else {})}

    lz, lr_ = pre_cfg.lambda_z, pre_cfg.lambda_root
    task = AdversarialTask(model, D, cfg, lz, lr_, eval_fn, best_dir=ckroot)
    d_sens: dict[str, Any] = {}
    warm_rec: dict[str, Any] | None = None
    if D is not None:  # D's warm start against the frozen pre-trained M (resumed from its file)
        D.to(rt.device)
        warm_rec = run_warm_start(cfg, task.trainer, model, store, split.unlabelled_sequences, mw, dval, rt,
                                  ckroot / "d_warm.pt", resume=not cfg.smoke)
        d_sens["warm_start"] = dval.report(model, D, rt)
        facts["d_warm_start_checkpoint"] = save_discriminator(D, ckroot / "D_warm.pt", **_d_extra(cfg, "warm_start"))
    history = train(task, streams, cfg.loop_config(), ckroot, runtime=rt)
    keep = {task.best_path(), task.best_path(task.best_full["step"])}
    best, best_full = load_checkpoint(task.best_path()), load_checkpoint(task.best_path(task.best_full["step"]))
    for f in ckroot.glob("best-*.pt"):  # keep only the selected steps' weights
        if f not in keep:
            f.unlink()
    train_time = time.perf_counter() - t0
    hist = pd.DataFrame(history)
    atomic_write_text(rec.path("history.csv"), hist.to_csv(index=False))

    # pre-trained, selected (best validation abs MPJPE), selected at full lambda_MM, last: evaluated alike
    test_rows = np.asarray(split.test_rows)
    if cfg.smoke and len(test_rows) > 256:
        test_rows = np.sort(np.random.default_rng(cfg.seed).choice(test_rows, 256, replace=False))
    selected = PoseModel(pre_cfg.pose_config())
    selected.load_state_dict(best["M"])
    test_note = None
    if len(test_rows) and np.isnan(store.j3d[test_rows]).any():  # HO3D: labels held by the official server
        test_rows, test_note = test_rows[:0], "no public test labels: evaluate with the official server"
    models = {"pretrained": pretrained(), "selected": selected, "last": model}
    if int(best_full["step"]) != int(best["step"]):
        models["selected_full"] = PoseModel(pre_cfg.pose_config())
        models["selected_full"].load_state_dict(best_full["M"])
    results = {}
    for name, m in models.items():
        m.to(rt.device)
        results[name] = {s: _eval_rows(m, store, rows, rt, scale) for s, rows in
                         (("val", val_all), ("test", test_rows)) if len(rows)}
    # the model selected among steps with lambda_MM at full strength: its own key (the notebooks
    # print every entry of "results"), the same as "selected" when both picked one step
    full = results.pop("selected_full", results["selected"])
    auc = _auc(D, held, S, cfg.representation, cfg.seed, cfg.center) if D is not None else {}
    probe_final = {n: dval.score(D, dval.predict(models[n], rt)) for n in ("selected", "last")} if D else {}
    if D is not None:
        d_sens["final"] = dval.report(model, D, rt)
        facts["d_checkpoint"] = save_discriminator(D, ckroot / "D_final.pt", **_d_extra(cfg, "final"))
    flat = {f"{n}/{s}/{k}": v for n, r in {**results, "selected_full": full}.items() for s, e in r.items()
            for k, v in {**e["overall"], **e["diagnostics"]}.items()}
    out = {"method": cfg.method, "selected_step": int(best["step"]), "selected_full_step": int(best_full["step"]),
           "steps": cfg.steps, **facts,
           "selected_checkpoint": str(task.best_path()),
           "selected_full_checkpoint": str(task.best_path(task.best_full["step"])),
           "pose_config": pre_cfg.pose_config().__dict__,
           "results": results, "selected_full": full, "test_note": test_note, "flat": flat,
           "discriminator_auc": auc, "d_probe": probe_final,
           "d_sensitivity": {k: v["sensitivity"] for k, v in d_sens.items()},
           "d_validation": {k: {kk: vv for kk, vv in v.items() if kk != "sensitivity"} for k, v in d_sens.items()},
           "d_warm_start": warm_rec, "scale_source": scale,
           "facts": run_facts(pre_cfg, data, selected),
           "wall_time_s": time.perf_counter() - t0, "train_time_s": train_time,
           "train_step_s": float(hist["time_s"].iloc[-1] / max(1, len(hist))) if len(hist) else None,
           "runtime": rt.record()}
    rec.write_metrics(out)
    return {"run_id": rec.id, "dir": rec.dir, "metrics": out, "history": hist, "model": selected,
            "models": models, "store": store, "split": split, "runtime": rt, "D": D}


def _d_extra(cfg: AdversarialConfig, which: str) -> dict[str, Any]:
    return {"representation": cfg.representation, "center": cfg.center, "which": which,
            "run_name": cfg.run_name or ""}
