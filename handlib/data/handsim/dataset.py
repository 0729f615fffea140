"""HandSim dataset: the generator config, the FPHAB-like sequence plan, generation into an
atomic, checksummed cache, and loading as a ``FrameStore`` plus an unpaired motion corpus.

Cache layout: ``cache_dir(cache_root)/handsim/<VERSION>-<config hash>/`` with
``images.npy`` (N, S, S, 3) uint8 (memory-mapped on read), ``j3d.npy`` (N, 21, 3) mm,
``K.npy`` (N, 3, 3), ``meta.parquet``, ``motion_j3d.npy``,
``motion_K.npy``, ``motion_lengths.npy`` and ``manifest.json`` (version, config, hash, and
size + checksums of every file), written last. Everything is generated into a temporary
sibling directory that is renamed into place only when complete, so an interrupted run never
leaves a cache that looks complete; a stale or corrupt cache fails verification and is
rebuilt.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from handlib.config import ConfigError, StageConfig, param
from handlib.data.datasets import FrameStore
from handlib.data.handsim.anatomy import make_subject
from handlib.data.handsim.motion import ACTION_NAMES, FPS, subject_style
from handlib.data.handsim.presets import PRESETS
from handlib.data.handsim.render import render_sequence
from handlib.data.handsim.scene import build_sequence, make_canon, make_look
from handlib.geometry import project
from handlib.paths import cache_dir
from handlib.repro import atomic_write_json

VERSION = "hs2"  # format version (hs2: egocentric head motion and arm transport); the generator's source code is fingerprinted into the hash too
_GENERATOR_MODULES = ("anatomy", "motion", "camera", "ego", "../crop", "background", "scene", "render", "dataset")
_STREAM = {"canon": 1, "subject": 2, "video": 3, "motion_subject": 4, "motion": 5, "split": 6, "render": 7, "plan": 8}
SAMPLE_BLOCKS, BLOCK = 64, 1 << 16
FULL_HASH_LIMIT = 256 << 20  # files up to this size are fully hashed on every load


@dataclass(frozen=True)
class HandSimConfig(StageConfig):
    """HandSim generator parameters. Build with ``from_params``: a ``preset`` supplies
    defaults, any other key overrides them."""

    stage = "handsim"
    preset: str = param("smoke", choices=tuple(PRESETS), help="named size; other keys override it")
    seed: int = param(0, range=(0, 2**31 - 1))
    n_subjects: int = param(2, range=(1, 100))
    actions: tuple[str, ...] = param(("fist", "precision_pinch", "wave"), help="subset of motion.ACTION_NAMES")
    n_reps: int = param(2, range=(2, 50), help="repetitions per subject and action (>= 2: both split sides)")
    seconds: tuple[float, float] = param((1.0, 1.5), range=(0.2, 60.0), help="sequence length range, s")
    image_size: int = param(64, range=(32, 512), help="side of the square model input crop, px")
    camera: str = param("ego", choices=("ego", "third", "mixed"), help="FPHAB-like, HO3D-like, or either")
    appearance_shift: float = param(1.0, range=(0.0, 1.0),
                                    help="0: all sequences look alike; 1: background, light, skin, object colour "
                                         "and viewpoint drawn independently per sequence")
    test_fraction: float = param(0.5, range=(0.05, 0.95), help="share of each subject-action's repetitions in test")
    motion_subjects: int = param(2, range=(0, 100), help="subjects of the unpaired motion corpus")
    motion_reps: int = param(1, range=(1, 50))
    tremor_deg: float = param(0.5, range=(0.0, 5.0), help="physiological tremor amplitude, deg")
    ego_motion: float = param(1.0, range=(0.0, 3.0),
                              help="egocentric camera only: scale of the wearer's head motion (slow turns and "
                                   "sway of a few deg and cm per s, glances of 5-15 deg) and of the arm's "
                                   "10-30 cm reaches in object actions (ego.py); 0 = a fixed camera with the "
                                   "wrist drifting in place, as in hs1. Default 1 brings the wrist's speed "
                                   "relative to the camera to ~2.5x hs1's at p50 and p90 (README, Data)")
    test_crop: str = param("gt", choices=("gt", "previous"),
                           help="test-split crops: 'gt' = each frame's true joints, smoothed over time and "
                                "jittered (reads the test frame's labels, like most hand-pose papers); "
                                "'previous' = label-free for frame t: the box of frames t-1, t-2 propagated "
                                "at constant velocity (frame 0 initialises). Training crops are always 'gt'")
    noise: float = param(8.0, range=(0.0, 40.0), help="maximum sensor noise std, grey levels")
    blur: float = param(1.0, range=(0.0, 5.0), help="maximum blur sigma, px at 128 px")

    def validate(self) -> None:
        bad = [a for a in self.actions if a not in ACTION_NAMES]
        if bad or not self.actions:
            raise ConfigError(f"HandSimConfig.actions: {bad or 'empty'} not allowed; choose from {list(ACTION_NAMES)}")
        if len(set(self.actions)) != len(self.actions):
            raise ConfigError(f"HandSimConfig.actions: {list(self.actions)} has duplicates")
        if self.seconds[0] > self.seconds[1]:
            raise ConfigError(f"HandSimConfig.seconds: {self.seconds} must be (low, high) with low <= high")

    @classmethod
    def from_params(cls, params: dict | None = None, **kwargs) -> HandSimConfig:
        params = {**(params or {}), **kwargs}
        preset = params.get("preset", "smoke")
        if preset not in PRESETS:
            raise ConfigError(f"HandSimConfig.preset: {preset!r} is not allowed; choose one of {list(PRESETS)}")
        return super().from_params({**PRESETS[preset], **params})

    def hash(self) -> str:
        """12 hex digits over the format version, the generator's code and every field."""
        blob = json.dumps({"version": VERSION, "code": code_fingerprint(), **self.to_dict()}, sort_keys=True,
                          default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of the generator modules' source: editing the generator invalidates old caches."""
    h = hashlib.sha256()
    for m in _GENERATOR_MODULES:
        h.update((Path(__file__).parent / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def _rng(cfg: HandSimConfig, stream: str, *ids: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _STREAM[stream], *ids])


def sequence_plan(cfg: HandSimConfig) -> pd.DataFrame:
    """One row per video sequence: id, subject, action, rep, split, frames, camera mode.
    Split in the spirit of FPHAB's action split: for every (subject, action) a random
    ``floor(test_fraction * n_reps)`` of its repetitions (at least one, never all) go to test."""
    rows = []
    n_test = min(max(1, int(cfg.test_fraction * cfg.n_reps)), cfg.n_reps - 1)
    for s in range(cfg.n_subjects):
        for a in cfg.actions:
            a_id = ACTION_NAMES.index(a)
            test = set(_rng(cfg, "split", s, a_id).permutation(cfg.n_reps)[:n_test].tolist())
            for r in range(cfg.n_reps):
                rng = _rng(cfg, "plan", s, a_id, r)
                n = int(round(rng.uniform(*cfg.seconds) * FPS))
                mode = cfg.camera if cfg.camera != "mixed" else ("ego", "third")[int(rng.integers(2))]
                rows.append({"sequence": f"S{s + 1}/{a}/{r + 1}", "subject": f"S{s + 1}", "action": a, "rep": r + 1,
                             "split": "test" if r in test else "train", "frames": n, "camera": mode,
                             "s_idx": s, "a_id": a_id})
    return pd.DataFrame(rows)


def _subject(cfg: HandSimConfig, stream: str, s: int):
    rng = _rng(cfg, stream, s)
    name = ("S" if stream == "subject" else "M") + str(s + 1)
    return make_subject(name, rng), subject_style(rng)


def generate_sequence(cfg: HandSimConfig, row, canon, subjects, render: bool = True):
    """Scene and (optionally) images of one planned sequence, from its own RNG stream."""
    subj, style = subjects[row.s_idx]
    rng = _rng(cfg, "video", row.s_idx, row.a_id, row.rep - 1)
    crop = cfg.test_crop if row.split == "test" else "gt"
    scene = build_sequence(row.action, subj, style, row.frames, row.camera, cfg.image_size, rng, canon,
                           cfg.appearance_shift, cfg.tremor_deg, cfg.ego_motion, crop_source=crop)
    look, bg_style = make_look(rng, canon, cfg.appearance_shift, subj, cfg.noise, cfg.blur)
    images = render_sequence(scene, look, cfg.image_size, _rng(cfg, "render", row.s_idx, row.a_id, row.rep)) \
        if render else None
    return scene, look, bg_style, images


def plan_motion(cfg: HandSimConfig) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The sequence plan and each sequence's j3d (T, 21, 3) mm camera frame, exactly as
    ``generate`` makes them but without rendering (fast: for motion statistics)."""
    plan = sequence_plan(cfg)
    canon = make_canon(_rng(cfg, "canon"))
    subjects = [_subject(cfg, "subject", s) for s in range(cfg.n_subjects)]
    return plan, [generate_sequence(cfg, row, canon, subjects, render=False)[0]["j3d"] for row in plan.itertuples()]


def motion_corpus(cfg: HandSimConfig, canon) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Unpaired joint sequences (no images) of other subjects and seeds: (j3d list, K list, ids)."""
    seqs, Ks, ids = [], [], []
    for s in range(cfg.motion_subjects):
        subj, style = _subject(cfg, "motion_subject", s)
        for a in cfg.actions:
            a_id = ACTION_NAMES.index(a)
            for r in range(cfg.motion_reps):
                rng = _rng(cfg, "motion", s, a_id, r)
                n = int(round(rng.uniform(*cfg.seconds) * FPS))
                mode = cfg.camera if cfg.camera != "mixed" else ("ego", "third")[int(rng.integers(2))]
                sc = build_sequence(a, subj, style, n, mode, cfg.image_size, rng, canon, cfg.appearance_shift,
                                    cfg.tremor_deg, cfg.ego_motion)
                seqs.append(sc["j3d"])
                Ks.append(sc["Kc"])
                ids.append(f"M{s + 1}/{a}/{r + 1}")
    return seqs, Ks, ids


# ----------------------------------------------------------------------------- cache files
def _file_digest(path: Path, full: bool) -> str:
    """blake2b of the whole file, or of SAMPLE_BLOCKS evenly spaced 64 KiB blocks plus the size."""
    h = hashlib.blake2b(digest_size=16)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if full:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        else:
            h.update(str(size).encode())
            for off in np.linspace(0, max(size - BLOCK, 0), SAMPLE_BLOCKS).astype(np.int64):
                f.seek(int(off))
                h.update(f.read(BLOCK))
    return h.hexdigest()


def _manifest_entry(path: Path) -> dict:
    return {"size": path.stat().st_size, "blake2b": _file_digest(path, True), "sampled": _file_digest(path, False)}


def verify_cache(path: Path, cfg: HandSimConfig, mode: str = "auto") -> str | None:
    """None if the cache at ``path`` is complete and matches ``cfg``; else the reason.
    mode: 'size' (sizes only), 'auto' (full checksum of files <= 256 MiB, sampled blocks of
    larger ones), 'full' (full checksum of everything)."""
    if mode not in ("size", "auto", "full"):
        raise ValueError(f"verify_cache: mode {mode!r} not in ('size', 'auto', 'full')")
    mf = path / "manifest.json"
    if not mf.exists():
        return "no manifest"
    try:
        man = json.loads(mf.read_text())
    except (OSError, json.JSONDecodeError):
        return "unreadable manifest"
    if man.get("version") != VERSION or man.get("config_hash") != cfg.hash():
        return "stale (version or config differs)"
    for name, e in man.get("files", {}).items():
        p = path / name
        if not p.exists() or p.stat().st_size != e["size"]:
            return f"{name}: missing or wrong size"
        if mode == "size":
            continue
        full = mode == "full" or e["size"] <= FULL_HASH_LIMIT
        if _file_digest(p, full) != (e["blake2b"] if full else e["sampled"]):
            return f"{name}: checksum mismatch"
    return None


def _write_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def generate(cfg: HandSimConfig, out: Path, progress: bool = True) -> None:
    """Generate the whole dataset into the (new, empty) directory ``out``; manifest last."""
    out.mkdir(parents=True, exist_ok=False)
    plan = sequence_plan(cfg)
    n, S = int(plan["frames"].sum()), cfg.image_size
    canon = make_canon(_rng(cfg, "canon"))
    subjects = [_subject(cfg, "subject", s) for s in range(cfg.n_subjects)]
    images = np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=(n, S, S, 3))
    j3d, K, meta = np.empty((n, 21, 3), np.float32), np.empty((n, 3, 3), np.float32), []
    r0 = 0
    with tqdm(total=n, desc=f"HandSim {cfg.preset} ({len(plan)} sequences)", unit="frame", disable=not progress) as bar:
        for row in plan.itertuples():
            scene, look, bg_style, imgs = generate_sequence(cfg, row, canon, subjects)
            r1 = r0 + row.frames
            images[r0:r1], j3d[r0:r1], K[r0:r1] = imgs, scene["j3d"], scene["Kc"]
            obj = scene["obj"]["kind"] if scene["obj"] is not None else "none"
            meta.append(pd.DataFrame({"sequence": row.sequence, "subject": row.subject, "action": row.action,
                                      "frame": np.arange(row.frames), "split": row.split, "camera": row.camera,
                                      "object": obj, "background": bg_style}))
            r0 = r1
            bar.update(row.frames)
    images.flush()
    del images
    meta = pd.concat(meta, ignore_index=True)
    seqs, Ks, _ = motion_corpus(cfg, canon)
    arrays = {"j3d.npy": j3d, "K.npy": K,
              "motion_j3d.npy": np.concatenate(seqs) if seqs else np.zeros((0, 21, 3), np.float32),
              "motion_K.npy": np.concatenate(Ks) if Ks else np.zeros((0, 3, 3), np.float32),
              "motion_lengths.npy": np.array([len(s) for s in seqs], np.int64)}
    for name, arr in arrays.items():
        _write_npy(out / name, arr)
    meta.to_parquet(out / "meta.parquet", index=False)
    files = ["images.npy", "meta.parquet", *arrays]
    for f in files:  # make the data durable before the manifest vouches for it
        with open(out / f, "rb") as fh:
            os.fsync(fh.fileno())
    atomic_write_json(out / "manifest.json", {"version": VERSION, "config_hash": cfg.hash(), "code": code_fingerprint(),
                                              "config": cfg.to_dict(),
                                              "frames": n, "sequences": len(plan),
                                              "files": {f: _manifest_entry(out / f) for f in sorted(files)}})


@dataclass
class HandSim:
    """A loaded HandSim dataset."""

    store: FrameStore
    motion: tuple[list[np.ndarray], list[np.ndarray]]  # j3d (T, 21, 3) mm and crop K (T, 3, 3) per sequence
    config: HandSimConfig
    path: Path
    j2d: np.ndarray  # (N, 21, 2) px, project(j3d, K), computed on load

    @property
    def crop_source(self) -> str:
        """Where the test split's crops come from (written into every run record)."""
        return "gt_smoothed_jittered" if self.config.test_crop == "gt" else "previous_frame"

    @property
    def crop_note(self) -> str:
        if self.config.test_crop == "gt":
            return ("test crops from each frame's true 2D joints, smoothed over +-1.5 frames and jittered "
                    "(reads the test labels)")
        return ("test crops label-free: frame t's box is frames t-1, t-2's true boxes propagated at constant "
                "velocity (frame 0 initialises from its own box); training crops from true joints")

    @property
    def sequences(self) -> pd.DataFrame:
        """One row per sequence (id, subject, action, split, camera, object, frames)."""
        m = self.store.meta
        g = m.groupby("sequence", sort=False)
        out = g[["subject", "action", "split", "camera", "object", "background"]].first()
        out["frames"] = g.size()
        return out.reset_index()


def cache_path(cfg: HandSimConfig, cache_root=None) -> Path:
    return cache_dir(cache_root) / "handsim" / f"{VERSION}-{cfg.hash()}"


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive advisory lock on ``path`` (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_cache(cfg: HandSimConfig, cache_root=None, progress: bool = True, verify: str = "auto") -> Path:
    """Path of a verified cache for ``cfg``, generating (atomically) if missing or invalid.
    Concurrent callers wait on a lock file; the second finds the first one's cache."""
    final = cache_path(cfg, cache_root)
    if final.exists() and verify_cache(final, cfg, verify) is None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _lock(final.parent / f".{final.name}.lock"):
        if final.exists() and verify_cache(final, cfg, verify) is None:  # built while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            tmp.rmdir()
            generate(cfg, tmp, progress)
            if final.exists():  # stale, corrupt or partial: move aside, then replace
                trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
                os.replace(final, trash / "x")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_handsim(preset: str = "smoke", cache_root=None, *, config: HandSimConfig | None = None,
                 progress: bool = True, verify: str = "auto", **overrides) -> HandSim:
    """Load HandSim (generating it into the cache first if needed).

    ``config`` wins over ``preset`` + ``overrides``. Images are memory-mapped read-only."""
    cfg = config if config is not None else HandSimConfig.from_params({"preset": preset, **overrides})
    path = ensure_cache(cfg, cache_root, progress, verify)
    ld = lambda name: np.load(path / name, allow_pickle=False)
    meta = pd.read_parquet(path / "meta.parquet")
    store = FrameStore(np.load(path / "images.npy", mmap_mode="r"), ld("j3d.npy"), ld("K.npy"), meta)
    lengths = ld("motion_lengths.npy")
    cut = np.cumsum(lengths)[:-1]
    seqs = np.split(ld("motion_j3d.npy"), cut) if len(lengths) else []
    Ks = np.split(ld("motion_K.npy"), cut) if len(lengths) else []
    j2d = project(torch.from_numpy(store.j3d), torch.from_numpy(store.K)).numpy()
    return HandSim(store, (seqs, Ks), cfg, path, j2d)
