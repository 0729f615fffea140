"""D's settings chosen on validation: warm-start D alone against a pre-trained M's predicted
windows for each setting and report its validation measures (one JSON line per setting).

    python -m handlib.train.d_search --pretrain-run <id> [--results DIR] --settings params/search/d_search.yaml

Each setting is a dict of ``AdversarialConfig`` fields (D's options and training); the base
is the adversarial stage's defaults plus ``--base`` (JSON). The predicted windows of the frozen M
(unlabelled videos) and of the validation videos are computed once and shared by all settings.
Validation only: held-out whole motion sequences (paired sensitivity, ``d_probe_stride``) and
M's validation windows (accuracy vs real, Spearman of D's score with the window's error).
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch
import yaml

from handlib.data.datasets import MotionWindows
from handlib.models.motion import MotionDiscriminator
from handlib.models.pose import PoseModel
from handlib.repro import seed_everything
from handlib.train.adversarial_config import AdversarialConfig
from handlib.train.adversarial_d import DValidation, warm_eval
from handlib.train.adversarial_data import hold_out, motion_source, rebuild_split
from handlib.train.discriminator import DTrainer, predicted_windows, warm_start
from handlib.train.loop import load_checkpoint, resolve_runtime
from handlib.train.pretrain import PretrainConfig
from handlib.train.stage import find_pretrain, load_data

# the per-step diagnostics a search row keeps from D's history
CURVE_KEYS = ("step", "loss_D", "d_acc", "objective", "d_spearman_abs", "d_spearman_vel",
              "dsens_jitter_2", "dsens_jitter_5", "dsens_shuffle")


def search(base: dict, settings: list[dict], log=print) -> list[dict]:
    """Warm-start one D per setting (``base`` | setting) from the same cached windows; returns
    one row per setting: its measures on validation after the warm start."""
    cfg0 = AdversarialConfig.from_params(base)
    pre = find_pretrain(run_id=cfg0.pretrain_run, results=cfg0.results)
    pre_cfg = PretrainConfig.from_record(pre["config"])  # older records: the values they were made with
    data = load_data(pre_cfg)
    store = data.store
    split = rebuild_split(pre["config"], store, Path(pre["split_csv"]))
    rt = resolve_runtime(cfg0.device, cfg0.precision, cfg0.channels_last)
    model = PoseModel(pre_cfg.pose_config())
    model.load_state_dict(load_checkpoint(Path(pre["checkpoint"]))["modules"]["M"])
    model.to(rt.device)
    cache: dict[tuple, tuple] = {}
    rows = []
    for s in settings:
        cfg = AdversarialConfig.from_params({**base, **s})
        key = (cfg.window, cfg.representation, cfg.center, cfg.d_holdout_every, cfg.d_probe_stride)
        if key not in cache:
            src, seqs, Ks = motion_source(cfg, data, split)
            train_m, held = hold_out(seqs, Ks, cfg.d_holdout_every)
            dval = DValidation.build(cfg, store, split.val_sequences, held)
            t = time.perf_counter()
            fakes = predicted_windows(model, store, split.unlabelled_sequences, cfg.window, rt, cfg.representation,
                                      cfg.center)
            cache[key] = (MotionWindows(*train_m, S=cfg.window), dval, fakes, dval.predict(model, rt),
                          time.perf_counter() - t)
        mw, dval, fakes, val_pred, t_pred = cache[key]
        seed_everything(cfg.seed)
        D = MotionDiscriminator(cfg.motion_config()).to(rt.device)
        trainer = DTrainer(D, cfg.d_train_config(), cfg.seed)

        t0 = time.perf_counter()
        rec = warm_start(trainer, mw, fakes, partial(warm_eval, dval, D, val_pred))
        wall = time.perf_counter() - t0
        probe = dval.score(D, val_pred)
        sens = dval.sensitivity(D)
        row = {"setting": s, "warm_steps": rec["steps"], "stopped": rec["stopped"], "wall_s": round(wall, 1),
               "predict_s": round(t_pred, 1), "predicted_windows": len(fakes), "n_real_windows": dval.n_real,
               "receptive_field": cfg.motion_config().receptive_field,
               "probe": {k: round(v, 4) for k, v in probe.items()},
               "sensitivity": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in sens.items()},
               "curve": [{k: round(v, 4) for k, v in r.items() if k in CURVE_KEYS} for r in rec["history"]]}
        log(json.dumps(row))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m handlib.train.d_search")
    p.add_argument("--pretrain-run", required=True)
    p.add_argument("--results", default=None)
    p.add_argument("--settings", required=True, help="YAML: {base: {...}, settings: [{...}, ...]}")
    p.add_argument("--base", default="{}", help="JSON: more base fields (override the file's)")
    args = p.parse_args(argv)
    spec = yaml.safe_load(Path(args.settings).read_text())
    base = {"preset": "quick", **spec.get("base", {}), **json.loads(args.base),
            "pretrain_run": args.pretrain_run, "results": args.results, "progress": False}
    torch.set_grad_enabled(True)
    search(base, spec["settings"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
