"""Motion statistics of hand-pose sequences, to compare datasets (the paper's supplementary
compares joint velocity/acceleration distributions and found BigHand2.2M's unnatural).

All inputs are lists of (T, 21, 3) mm sequences in the canonical order. Speeds and
accelerations are reported in mm/frame (mm/frame^2) **at 30 fps**: a sequence recorded at
``fps`` is rescaled by fps/30 (speed) and (fps/30)^2 (acceleration), so datasets with
different frame rates compare. Distances between datasets are 1-D Wasserstein distances
(``scipy.stats.wasserstein_distance``) of the pooled per-joint values.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import wasserstein_distance

from handlib.analysis.figures import save_figure
from handlib.config import StageConfig, param
from handlib.data.fphab import read_motion as fphab_motion
from handlib.data.handsim import load_handsim
from handlib.data.handsim.dataset import HandSimConfig, plan_motion
from handlib.data.handsim.motion import FPS
from handlib.data.handsim.viz import BEND_JOINTS, bend_angles
from handlib.data.ho3d import read_motion as ho3d_motion
from handlib.data.realdata import train_motion
from handlib.paths import results_dir
from handlib.repro import atomic_write_text
from handlib.skeleton import BONES, JOINT_NAMES, bone_lengths

REF_FPS = 30.0
ANGLE_JOINTS = BEND_JOINTS  # joints with a parent and a child bone, without the thumb's CMC
QUANTITIES = ("speed", "accel", "bone_cv", "angle")


@dataclass(frozen=True)
class MotionStatsConfig(StageConfig):
    stage = "motion_stats"
    handsim_preset: str = param("smoke", choices=("smoke", "quick", "full"))
    fphab_root: str = param("", help="FPHAB root; empty = skip")
    ho3d_root: str = param("", help="HO3D v3 root; empty = skip")
    fphab_fps: float = param(30.0, range=(1.0, 240.0), help="FPHAB frame rate (30 fps RGB-D)")
    ho3d_fps: float = param(30.0, range=(1.0, 240.0), help="assumed HO3D frame rate")
    cache_root: str = param("", help="HandSim cache root; empty = default")
    max_plot_values: int = param(20000, range=(100, None), help="values per dataset drawn in plots")
    seed: int = param(0)
    interactive: bool = param(False)


def speeds(seq: np.ndarray, fps: float = REF_FPS) -> np.ndarray:
    """(T, 21, 3) mm -> (T-1, 21) mm/frame at 30 fps."""
    return np.linalg.norm(np.diff(seq, axis=0), axis=-1) * (fps / REF_FPS)


def accelerations(seq: np.ndarray, fps: float = REF_FPS) -> np.ndarray:
    """(T, 21, 3) mm -> (T-2, 21) mm/frame^2 at 30 fps (norm of the second difference)."""
    return np.linalg.norm(np.diff(seq, n=2, axis=0), axis=-1) * (fps / REF_FPS) ** 2


def bone_length_cv(seq: np.ndarray) -> np.ndarray:
    """(T, 21, 3) -> (20,) coefficient of variation (std/mean over frames) of each bone."""
    b = bone_lengths(seq)  # (T, 20)
    return b.std(0) / np.maximum(b.mean(0), 1e-9)


@dataclass
class MotionStats:
    """Pooled statistics of one dataset."""

    name: str
    n_sequences: int
    n_frames: int
    speed: np.ndarray  # (N1, 21) mm/frame @30fps
    accel: np.ndarray  # (N2, 21) mm/frame^2 @30fps
    bone_cv: np.ndarray  # (n_sequences, 20)
    angle: np.ndarray  # (N, 14) degrees (``viz.bend_angles``)

    def pooled(self, quantity: str) -> np.ndarray:
        return np.asarray(getattr(self, quantity), dtype=np.float64).ravel()


def motion_statistics(name: str, sequences: list[np.ndarray], fps: float = REF_FPS, min_len: int = 3) -> MotionStats:
    """Statistics of a list of (T, 21, 3) mm sequences; sequences shorter than min_len are skipped."""
    seqs = [np.asarray(s, dtype=np.float64) for s in sequences if len(s) >= min_len]
    if not seqs:
        raise ValueError(f"{name}: no sequence with at least {min_len} frames")
    return MotionStats(
        name=name, n_sequences=len(seqs), n_frames=int(sum(len(s) for s in seqs)),
        speed=np.concatenate([speeds(s, fps) for s in seqs]),
        accel=np.concatenate([accelerations(s, fps) for s in seqs]),
        bone_cv=np.stack([bone_length_cv(s) for s in seqs]),
        angle=np.concatenate([bend_angles(s) for s in seqs]))


def summary_table(stats: list[MotionStats]) -> pd.DataFrame:
    """One row per dataset: counts, speed/acceleration quantiles, bone-length CV, angle ranges."""
    rows = []
    for s in stats:
        sp, ac = s.pooled("speed"), s.pooled("accel")
        lo, hi = np.percentile(s.angle, [5, 95], axis=0)
        rows.append({"dataset": s.name, "sequences": s.n_sequences, "frames": s.n_frames,
                     "speed_mean": sp.mean(), "speed_median": np.median(sp), "speed_p95": np.percentile(sp, 95),
                     "accel_mean": ac.mean(), "accel_median": np.median(ac), "accel_p95": np.percentile(ac, 95),
                     "bone_cv_median": float(np.median(s.bone_cv)), "bone_cv_max": float(s.bone_cv.max()),
                     "angle_range_p5_p95_mean": float((hi - lo).mean()), "angle_max": float(s.angle.max())})
    return pd.DataFrame(rows)


def wasserstein_table(stats: list[MotionStats], quantities=QUANTITIES) -> pd.DataFrame:
    """Pairwise 1-D Wasserstein distances of the pooled values, one row per (a, b, quantity)."""
    rows = []
    for i, a in enumerate(stats):
        for b in stats[i + 1:]:
            for q in quantities:
                rows.append({"a": a.name, "b": b.name, "quantity": q,
                             "wasserstein": wasserstein_distance(a.pooled(q), b.pooled(q))})
    return pd.DataFrame(rows, columns=["a", "b", "quantity", "wasserstein"])


def long_frame(stats: list[MotionStats], quantity: str, max_values: int, seed: int = 0) -> pd.DataFrame:
    """Long-form (dataset, joint, value) for plots, seeded subsample of max_values per dataset."""
    names = {"speed": JOINT_NAMES, "accel": JOINT_NAMES, "angle": [JOINT_NAMES[j] for j in ANGLE_JOINTS],
             "bone_cv": [f"{JOINT_NAMES[p]}-{JOINT_NAMES[c]}" for p, c in BONES]}[quantity]
    rng = np.random.default_rng(seed)
    parts = []
    for s in stats:
        v = np.asarray(getattr(s, quantity))
        joint = np.broadcast_to(np.arange(v.shape[1]), v.shape).ravel()
        keep = rng.permutation(v.size)[:max_values]
        parts.append(pd.DataFrame({"dataset": s.name, "joint": np.asarray(names)[joint[keep]],
                                   "value": v.ravel()[keep]}))
    return pd.concat(parts, ignore_index=True)


def plot_distributions(stats: list[MotionStats], max_values: int = 20000, seed: int = 0):
    """2x2 figure: speed and acceleration densities (log x), bone-length CV, angle ranges."""
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    for a, q, label in ((ax[0, 0], "speed", "joint speed (mm/frame @30 fps)"),
                        (ax[0, 1], "accel", "joint acceleration (mm/frame$^2$ @30 fps)")):
        df = long_frame(stats, q, max_values, seed)
        df = df[df["value"] > 0]
        sns.histplot(df, x="value", hue="dataset", log_scale=True, stat="density", common_norm=False,
                     element="step", fill=False, bins=60, ax=a)
        a.set_xlabel(label)
    ax[1, 0].boxplot([s.bone_cv.ravel() for s in stats], tick_labels=[s.name for s in stats], showfliers=False)
    ax[1, 0].set_ylabel("bone-length CV over a sequence")
    rng_rows = []
    for s in stats:
        lo, hi = np.percentile(s.angle, [5, 95], axis=0)
        rng_rows += [{"dataset": s.name, "joint": JOINT_NAMES[j], "range": r} for j, r in zip(ANGLE_JOINTS, hi - lo)]
    sns.barplot(pd.DataFrame(rng_rows), x="joint", y="range", hue="dataset", ax=ax[1, 1])
    ax[1, 1].set_ylabel("joint angle range p5-p95 (deg)")
    ax[1, 1].tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig


def plot_per_joint(stats: list[MotionStats]):
    """Median speed and acceleration per joint and dataset."""
    rows = [{"dataset": s.name, "joint": JOINT_NAMES[j], "speed": np.median(s.speed[:, j]),
             "accel": np.median(s.accel[:, j])} for s in stats for j in range(21)]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    for a, q in zip(ax, ("speed", "accel")):
        sns.pointplot(df, x="joint", y=q, hue="dataset", ax=a, markersize=3)
        a.set_ylabel(f"median {q} (@30 fps)")
        a.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig


def wrist_speed_quantiles(sequences: list[np.ndarray], fps: float = REF_FPS, q=(50, 90, 99)) -> dict[str, float]:
    """Speed of the wrist (joint 0) relative to the camera, pooled over (T, 21, 3) mm camera-frame
    sequences: {"p50": ..., "p90": ..., "p99": ...} in mm/frame at 30 fps, plus "frames"."""
    v = np.concatenate([speeds(np.asarray(s, dtype=np.float64)[:, :1], fps)[:, 0] for s in sequences if len(s) > 1])
    return {"frames": int(v.size), **{f"p{p}": float(np.percentile(v, p)) for p in q}}


def handsim_wrist_speeds(preset: str = "smoke", ego_motion=(0.0, 1.0), modes=("ego", "third"),
                         **overrides) -> pd.DataFrame:
    """Wrist speed relative to the camera (p50 / p90 / p99, mm/frame @30 fps) of HandSim's video
    sequences per camera mode and ``ego_motion`` setting (0 = the fixed egocentric camera of
    hs1, 1 = the default head motion and arm transport). Motion only, nothing rendered."""
    rows = []
    for mode in modes:
        for e in ego_motion:
            cfg = HandSimConfig.from_params({"preset": preset, **overrides, "camera": mode, "ego_motion": float(e)})
            _, seqs = plan_motion(cfg)
            rows.append({"camera": mode, "ego_motion": float(e), "sequences": len(seqs),
                         **wrist_speed_quantiles(seqs, REF_FPS)})
    return pd.DataFrame(rows)


def dataset_motions(cfg: MotionStatsConfig) -> list[tuple[str, list[np.ndarray], float]]:
    """(name, sequences, fps) per available source: HandSim's video ground truth (both
    splits) and its unpaired motion corpus always; FPHAB / HO3D training ground truth when
    their roots are set (read from the annotation files only, no images decoded)."""
    hs = load_handsim(preset=cfg.handsim_preset, cache_root=cfg.cache_root or None)
    video = train_motion(hs.store, split="train")[0] + train_motion(hs.store, split="test")[0]
    out = [("handsim_video", video, float(FPS)), ("handsim_corpus", list(hs.motion[0]), float(FPS))]
    if cfg.fphab_root:
        out.append(("fphab", fphab_motion(cfg.fphab_root), cfg.fphab_fps))
    if cfg.ho3d_root:
        out.append(("ho3d", ho3d_motion(cfg.ho3d_root), cfg.ho3d_fps))
    return out


def plot_all(stats: list[MotionStats], max_values: int = 20000, seed: int = 0) -> dict:
    """The notebook's figures by name: ``distributions`` and ``per_joint``."""
    return {"distributions": plot_distributions(stats, max_values, seed), "per_joint": plot_per_joint(stats)}


def write_results(stats: list[MotionStats], figures: dict | None = None, results=None) -> dict[str, Path]:
    """Summary and Wasserstein tables to results/tables/, ``figures`` (``plot_all``) to
    results/figures/motion_<name>.png (atomic writes)."""
    root = results_dir(results)
    paths = {"summary": root / "tables" / "motion_statistics.csv",
             "wasserstein": root / "tables" / "motion_wasserstein.csv"}
    atomic_write_text(paths["summary"], summary_table(stats).to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths["wasserstein"], wasserstein_table(stats).to_csv(index=False, float_format="%.6g"))
    for key, fig in (figures or {}).items():
        paths[key] = save_figure(fig, f"motion_{key}", root, dpi=110, formats=("png",))[0]
    return paths


def summary_lines(summary: pd.DataFrame, distances: pd.DataFrame) -> list[str]:
    """Rounded counts, medians and Wasserstein distances, one line per dataset and per pair."""
    out = [f"{r['dataset']} {int(r['sequences'])} {int(r['frames'])} speed median {round(r['speed_median'], 1)} "
           f"accel median {round(r['accel_median'], 1)} bone CV max {round(r['bone_cv_max'], 3)}"
           for _, r in summary.iterrows()]
    return out + [f"W {r['a']} {r['b']} {r['quantity']} {round(r['wasserstein'], 1)}" for _, r in distances.iterrows()]


def wrist_lines(wrist: pd.DataFrame) -> list[str]:
    """``handsim_wrist_speeds``' quantiles per camera and ``ego_motion``, and the egocentric
    camera's speed-up from ``ego_motion`` 0 to 1 at p50 / p90."""
    out = [f"{r['camera']} ego_motion {r['ego_motion']} p50/p90/p99 {round(r['p50'], 1)} {round(r['p90'], 1)} "
           f"{round(r['p99'], 1)}" for _, r in wrist.iterrows()]
    ego = wrist[wrist["camera"] == "ego"].set_index("ego_motion")
    if {0.0, 1.0} <= set(ego.index):
        out.append(f"ego speed-up p50 / p90: {round(ego.loc[1.0, 'p50'] / ego.loc[0.0, 'p50'], 1)} / "
                   f"{round(ego.loc[1.0, 'p90'] / ego.loc[0.0, 'p90'], 1)}")
    return out


def joint_explorer(stats: list[MotionStats]):
    """ipywidgets: one joint's speed or acceleration histogram per dataset."""
    import ipywidgets as W  # deferred: a widget front-end is only needed when the explorer is opened

    def show(joint: str = "index_tip", quantity: str = "speed"):
        j = JOINT_NAMES.index(joint)
        fig, ax = plt.subplots(figsize=(6, 3))
        for s in stats:
            ax.hist(getattr(s, quantity)[:, j], bins=60, histtype="step", density=True, label=s.name)
        ax.set_xlabel(f"{quantity} of {joint} (@30 fps)")
        ax.legend()
        plt.show()

    return W.interact(show, joint=list(JOINT_NAMES), quantity=["speed", "accel"])
