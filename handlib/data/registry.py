"""One entry point for every data source, and the dataset checks behind
``python -m handlib.data check fphab|ho3d|handsim ROOT``.

``load_dataset(name, ...)`` returns an object with ``.store`` (FrameStore) and ``.motion``
((list of (T,21,3) mm, list of K)): HandSim's ``hs``, or a ``RealDataset``.
``check_dataset(name, root)`` returns a ``CheckReport``: per-split sequence and frame
counts against the published ones, and every problem found with its path. Both raise
``DatasetError`` (one clear message) for a missing root or a wrong layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from handlib.data.realdata import DatasetError

DATASETS = ("handsim", "fphab", "ho3d")


def load_dataset(name: str, root=None, image_size: int | None = None, preset: str = "smoke",
                 cache_root=None, **kw):
    """Dispatch to ``load_handsim`` / ``load_fphab`` / ``load_ho3d``.

    ``root`` is required for the real datasets (they are never downloaded); where it is
    None, the environment variable ``HANDLIB_<NAME>_ROOT`` (e.g. HANDLIB_FPHAB_ROOT) gives it;
    ``preset``/overrides go to HandSim; ``image_size`` defaults to 128 for real data and
    to the preset's own size for HandSim."""
    if name == "handsim":
        from handlib.data.handsim import load_handsim

        if image_size is not None:
            kw["image_size"] = image_size
        return load_handsim(preset=preset, cache_root=cache_root, **kw)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    root = root or os.environ.get(f"HANDLIB_{name.upper()}_ROOT")
    if not root:
        raise DatasetError(f"{name}: a root directory is required (parameter `root` or the environment variable "
                           f"HANDLIB_{name.upper()}_ROOT); the data cannot be downloaded here")
    size = 128 if image_size is None else image_size
    if name == "fphab":
        from handlib.data.fphab import load_fphab

        return load_fphab(root, image_size=size, cache_root=cache_root, **kw)
    from handlib.data.ho3d import load_ho3d

    return load_ho3d(root, image_size=size, cache_root=cache_root, **kw)


SHOW = 5  # sequences listed per kind of problem in the grouped report


def _kind(reason: str) -> str:
    """A problem's kind: its reason without a parenthesised detail."""
    return reason.split(" (")[0]


@dataclass
class CheckReport:
    """What ``check`` found. ``problems`` and ``skipped`` hold one (path, reason) per finding;
    ``where`` maps a path to (group, split), the group being the sequence directory it belongs
    to (default: the path's parent), and ``group_frames`` a group to its number of listed
    frames, so that ``lines()`` can say "12 of 50 colour frames missing" per sequence."""

    dataset: str
    root: str
    # split -> {"sequences": n, "frames": n, "published_sequences": n|None, "published_frames": n|None,
    #           "loadable_frames": n (optional), "usable_sequences": n (optional)}
    counts: dict[str, dict] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): expected gaps
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (group, split)
    group_frames: dict[str, int] = field(default_factory=dict)  # group -> frames listed
    remedy: str = ""  # how to use what is there, e.g. load_fphab(..., missing_images="skip")

    @property
    def ok(self) -> bool:
        return not self.problems

    def _rel(self, path: str) -> str:
        root = self.root.rstrip("/") + "/"
        return path[len(root):] if path.startswith(root) else path

    def _grouped(self, items: list[tuple[str, str]], show: int) -> list[str]:
        """One block per kind: totals (per split), then the first ``show`` groups."""
        kinds: dict[str, dict[str, list[str]]] = {}
        for path, reason in items:
            group = self.where.get(path, (str(Path(path).parent), ""))[0]
            kinds.setdefault(_kind(reason), {}).setdefault(group, []).append(path)
        out = []
        for kind, groups in kinds.items():
            n = sum(len(v) for v in groups.values())
            by_split: dict[str, list[int]] = {}
            for _g, paths in groups.items():
                sp = self.where.get(paths[0], ("", ""))[1] or "-"
                c = by_split.setdefault(sp, [0, 0])
                c[0], c[1] = c[0] + 1, c[1] + len(paths)
            # a per-sequence file (skeleton.txt) counts sequences; per-frame files count files too
            names = {Path(p).name for v in groups.values() for p in v}
            per_seq = len(names) == 1 and not any(ch.isdigit() for ch in next(iter(names)))
            unit = "sequence" if per_seq and all(len(v) == 1 for v in groups.values()) else "file"
            if unit == "sequence":
                per = ", ".join(f"{sp} {c[0]}" for sp, c in sorted(by_split.items()) if sp != "-")
                head = f"  {kind}: {len(groups)} sequence(s)"
            else:
                per = "; ".join(f"{sp}: {c[1]} in {c[0]} seq" for sp, c in sorted(by_split.items()) if sp != "-")
                head = f"  {kind}: {n} file(s) in {len(groups)} sequence(s)"
            out.append(head + (f" ({per})" if per else ""))
            for g, paths in list(groups.items())[:show]:
                total = self.group_frames.get(g)
                if unit == "sequence":
                    out.append(f"    {self._rel(paths[0])}")
                else:
                    out.append(f"    {self._rel(g)}: {len(paths)} of {total} frames" if total
                               else f"    {self._rel(g)}: {len(paths)} file(s)")
            if len(groups) > show:
                out.append(f"    ... and {len(groups) - show} more sequence(s); --all lists every path")
        return out

    def lines(self, verbose: bool = False, show: int = SHOW) -> list[str]:
        """The report. Grouped by kind and sequence (short on a partial copy), or with
        ``verbose`` every path on its own line; both end with the verdict."""
        out = [f"{self.dataset} at {self.root}",
               f"{'split':<12}{'sequences':>12}{'published':>12}{'frames':>10}{'published':>12}"]
        for split, c in self.counts.items():
            ps, pf = c.get("published_sequences"), c.get("published_frames")
            flag = ""
            if (ps is not None and ps != c["sequences"]) or (pf is not None and pf != c["frames"]):
                flag = "  <- differs from published"
            out.append(f"{split:<12}{c['sequences']:>12}{'-' if ps is None else ps:>12}"
                       f"{c['frames']:>10}{'-' if pf is None else pf:>12}{flag}")
        out += [f"note: {n}" for n in self.notes]
        out.append(f"skipped ({len(self.skipped)}):")
        out += [f"  {p}: {r}" for p, r in self.skipped] if verbose else self._grouped(self.skipped, show)
        out.append(f"problems ({len(self.problems)}):")
        out += [f"  {p}: {r}" for p, r in self.problems] if verbose else self._grouped(self.problems, show)
        return out + self.verdict()

    def verdict(self) -> list[str]:
        """A few lines: per split complete or not, frames loadable today, how to use them."""
        out = ["verdict:"]
        bad_splits = {self.where.get(p, ("", ""))[1] for p, _ in self.problems}
        for split, c in self.counts.items():
            ps, pf = c.get("published_sequences"), c.get("published_frames")
            differs = (ps is not None and ps != c["sequences"]) or (pf is not None and pf != c["frames"])
            usable, load = c.get("usable_sequences"), c.get("loadable_frames", c["frames"])
            complete = split not in bad_splits and "" not in bad_splits and usable in (None, c["sequences"])
            state = "INCOMPLETE" if not complete else "complete as listed (not the published size)" if differs \
                else "complete"
            seq = f"{usable} of {c['sequences']} sequences usable, " if usable is not None else ""
            out.append(f"  {split}: {state}; {seq}{load} frames loadable now")
        differ = any((c.get("published_sequences") not in (None, c["sequences"]))
                     or (c.get("published_frames") not in (None, c["frames"])) for c in self.counts.values())
        if not self.ok and self.remedy:
            out.append(f"  to train on what is there: {self.remedy}")
        last = "OK: no problems" if self.ok else f"FOUND {len(self.problems)} PROBLEM(S)"
        out.append(last + ("; counts differ from the published ones (incomplete or other release?)"
                           if differ else ""))
        return out


def _decode_all(specs, report: CheckReport) -> None:
    for s in specs:
        if cv2.imread(s.image, cv2.IMREAD_COLOR) is None:
            report.problems.append((s.image, "unreadable image"))


def check_fphab(root, decode: bool = False) -> CheckReport:
    from handlib.data import fphab

    root_p = fphab.check_layout(root)
    listed = fphab.read_split_file(root_p / fphab.SPLIT_FILE)
    scan = fphab.scan_fphab(root, raise_on_problem=False)
    # a known-empty sequence (official README) is an expected skip; any other is a problem
    known = [(p, r) for p, r in scan.skipped if "(known" in r]
    unknown = [(p, r) for p, r in scan.skipped if "(known" not in r]
    rep = CheckReport("fphab", str(root), skipped=known, problems=unknown + scan.problems,
                      remedy='load_fphab(ROOT, missing_images="skip") (or load_dataset("fphab", ROOT, '
                             'missing_images="skip")) drops the frames without an image; sequences without '
                             'a skeleton are skipped either way')
    split_of = {seq: split for split, entries in listed.items() for seq, _ in entries}
    present = {}
    for s in scan.specs:
        present[s.ids["sequence"]] = present.get(s.ids["sequence"], 0) + 1
    for path, _ in rep.skipped + rep.problems:  # group by sequence: .../<seq>/skeleton.txt or .../<seq>/color/<img>
        rel = Path(path).relative_to(root_p) if Path(path).is_relative_to(root_p) else Path(path)
        parts = rel.parts
        if parts and parts[0] == fphab.VIDEO_DIR and len(parts) >= 5:
            seq, group = "/".join(parts[1:-2]), str(root_p / Path(*parts[:-1]))
        else:
            seq, group = "/".join(parts[1:-1]), str(root_p / Path(*parts[:-1]))
        rep.where[path] = (group, split_of.get(seq, ""))
        if parts and parts[0] == fphab.VIDEO_DIR:
            rep.group_frames[group] = rep.group_frames.get(group, 0) + 1
    for g in list(rep.group_frames):  # listed frames = missing + present images of the sequence
        seq = "/".join(Path(g).relative_to(root_p).parts[1:-1])
        rep.group_frames[g] += present.get(seq, 0)
    for split in ("train", "test"):
        frames = sum(s.ids["split"] == split for s in scan.specs)
        rep.counts[split] = {"sequences": len(listed[split]), "frames": frames, "loadable_frames": frames,
                             "usable_sequences": len(scan.sequences[split]),
                             "published_sequences": fphab.PUBLISHED_SEQUENCES[split], "published_frames": None}
        rep.notes.append(f"{split}: {len(scan.sequences[split])} of {len(listed[split])} listed sequences usable")
    if decode:
        _decode_all(scan.specs, rep)
    return rep


def check_ho3d(root, decode: bool = False) -> CheckReport:
    from handlib.data import ho3d

    scan = ho3d.scan_ho3d(root, raise_on_problem=False)
    rep = CheckReport("ho3d", str(root), problems=scan.problems,
                      remedy="load_ho3d(ROOT) needs every listed frame; train on a complete copy or fix the files "
                             "listed (load_dataset('handsim') needs no files)")
    root_p = Path(root)
    for path, _ in scan.problems:  # <root>/<split>/<seq>/{meta,rgb}/<fid>: group by sequence
        parts = Path(path).relative_to(root_p).parts if Path(path).is_relative_to(root_p) else ()
        if len(parts) >= 4:
            rep.where[path] = (str(root_p / Path(*parts[:2])), parts[0])
    for split, store_split in ho3d.SPLITS.items():
        specs = [s for s in scan.specs if s.ids["split"] == store_split]
        rep.counts[split] = {"sequences": len({s.ids["sequence"] for s in specs}), "frames": scan.listed[split],
                             "loadable_frames": len(specs),
                             "published_sequences": None, "published_frames": ho3d.PUBLISHED_FRAMES[split]}
        rep.notes.append(f"{split}: {len(specs)} of {scan.listed[split]} listed frames usable, "
                         f"{scan.excluded[split]} with None annotations excluded")
    rep.notes.append(f"frames = lines of train.txt / evaluation.txt; published = the official scripts' "
                     f"db_size (the README's total implies {ho3d.PUBLISHED_TRAIN_IMAGES} training images)")
    if decode:
        _decode_all(scan.specs, rep)
    return rep


def check_store(store, report: CheckReport) -> None:
    """Contract checks of a FrameStore (used for HandSim): shapes, finiteness, ordering."""
    meta = store.meta
    if store.images.dtype != np.uint8 or store.images.ndim != 4 or store.images.shape[-1] != 3:
        report.problems.append(("store.images", f"dtype {store.images.dtype} shape {store.images.shape}"))
    if not np.isfinite(store.K).all():
        report.problems.append(("store.K", "non-finite intrinsics"))
    for seq, grp in meta.groupby("sequence", sort=False):
        idx = grp.index.to_numpy()
        if (np.diff(idx) != 1).any():
            report.problems.append((f"sequence {seq}", "rows are not contiguous"))
        if (np.diff(grp["frame"].to_numpy()) <= 0).any():
            report.problems.append((f"sequence {seq}", "frames are not increasing"))
        if grp["split"].nunique() != 1:
            report.problems.append((f"sequence {seq}", "sequence spans several splits"))
    nan = np.isnan(store.j3d).any(axis=(1, 2))
    if nan.any():
        report.notes.append(f"{int(nan.sum())} frames without 3D labels")


def check_handsim(root=None, preset: str = "smoke") -> CheckReport:
    """ROOT is the cache root (optional); the preset is generated there if missing."""
    from handlib.data.handsim import load_handsim

    if root is not None and not Path(root).is_dir():
        raise DatasetError(f"HandSim cache root {root} does not exist or is not a directory")
    hs = load_handsim(preset=preset, cache_root=root)
    store = hs.store
    rep = CheckReport("handsim", f"{root or '(default cache)'} preset={preset}")
    for split in sorted(store.meta["split"].unique()):
        m = store.meta[store.meta["split"] == split]
        rep.counts[split] = {"sequences": int(m["sequence"].nunique()), "frames": int(len(m)),
                             "published_sequences": None, "published_frames": None}
    seqs, Ks = hs.motion
    rep.notes.append(f"motion corpus: {len(seqs)} sequences, {sum(len(s) for s in seqs)} frames")
    if len(seqs) != len(Ks):
        rep.problems.append(("hs.motion", f"{len(seqs)} sequences but {len(Ks)} K arrays"))
    for i, s in enumerate(seqs):
        if s.ndim != 3 or s.shape[1:] != (21, 3) or not np.isfinite(s).all():
            rep.problems.append((f"hs.motion[{i}]", f"bad array shape {s.shape} or non-finite values"))
    check_store(store, rep)
    return rep


def check_dataset(name: str, root=None, decode: bool = False) -> CheckReport:
    if name == "fphab":
        return check_fphab(_need_root(name, root), decode)
    if name == "ho3d":
        return check_ho3d(_need_root(name, root), decode)
    if name == "handsim":
        return check_handsim(root)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")


def _need_root(name: str, root):
    if not root:
        raise DatasetError(f"{name}: ROOT is required")
    return root
