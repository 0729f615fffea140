"""``python -m handlib.data check`` on a partial FPHAB copy: short grouped report, verdict,
``--all`` for every path, exit codes. The fixture is written here (no dataset files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handlib.data.__main__ import main as cli

SUBJECTS = [f"Subject_{i}" for i in range(1, 5)]
ACTIONS = ["pour_milk", "high_five", "open_letter"]
N = 12  # frames per sequence


def write_partial_fphab(root: Path) -> dict:
    """Split file of 4 subjects x 3 actions x 2 reps (rep 1 train, rep 2 test), skeletons for
    subjects 1-2 only, colour frames of one sequence only (the usual half-downloaded copy)."""
    seqs = [f"{s}/{a}/{r}" for s in SUBJECTS for a in ACTIONS for r in (1, 2)]
    train = [q for q in seqs if q.endswith("/1")]
    test = [q for q in seqs if q.endswith("/2")]
    lines = [f"Training {len(train)}"] + [f"{q} {i}" for i, q in enumerate(train)]
    lines += [f"Test {len(test)}"] + [f"{q} {i}" for i, q in enumerate(test)]
    root.mkdir(parents=True)
    (root / "data_split_action_recognition.txt").write_text("\n".join(lines) + "\n")
    (root / "Video_files").mkdir()
    rng = np.random.default_rng(0)
    with_video = f"{SUBJECTS[0]}/{ACTIONS[0]}/1"
    for q in seqs:
        if q.split("/")[0] in SUBJECTS[:2]:
            d = root / "Hand_pose_annotation_v1" / q
            d.mkdir(parents=True)
            w = np.array([0.0, 0.0, 450.0]) + rng.uniform(-60, 60, (N, 21, 3))
            d.joinpath("skeleton.txt").write_text(
                "\n".join(" ".join([str(t)] + [f"{v:.3f}" for v in w[t].ravel()]) for t in range(N)) + "\n")
    color = root / "Video_files" / with_video / "color"
    color.mkdir(parents=True)
    for t in range(N):  # existence is what the check looks at (decoding needs --decode)
        (color / f"color_{t:04d}.jpeg").write_bytes(b"")
    return {"train": train, "test": test, "with_video": with_video}


@pytest.fixture
def partial(tmp_path):
    root = tmp_path / "fphab"
    return root, write_partial_fphab(root)


def test_grouped_report_is_short_and_names_each_kind(partial, capsys):
    root, info = partial
    assert cli(["check", "fphab", str(root)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    missing_frames = (2 * len(ACTIONS) * 2 - 1) * N  # subjects 1-2 have skeletons, one sequence has video
    assert f"problems ({missing_frames + 2 * len(ACTIONS) * 2})" in out
    assert (f"missing image: {missing_frames} file(s) in 11 sequence(s) "
            f"(test: {6 * N} in 6 seq; train: {5 * N} in 5 seq)") in out
    assert f"    Video_files/{SUBJECTS[0]}/{ACTIONS[1]}/1/color: {N} of {N} frames" in out
    assert "missing skeleton.txt: 12 sequence(s) (test 6, train 6)" in out
    assert f"    Hand_pose_annotation_v1/{SUBJECTS[2]}/{ACTIONS[0]}/1/skeleton.txt" in out
    assert out.count("more sequence(s); --all lists every path") == 2
    assert "color_0003.jpeg" not in out  # no per-frame lines
    assert "train: INCOMPLETE; 6 of 12 sequences usable, 12 frames loadable now" in out
    assert "test: INCOMPLETE; 6 of 12 sequences usable, 0 frames loadable now" in out
    assert 'missing_images="skip"' in out and lines[-1].startswith("FOUND")
    assert len(lines) < 40


def test_all_lists_every_path(partial, capsys):
    root, info = partial
    assert cli(["check", "fphab", str(root), "--all"]) == 1
    out = capsys.readouterr().out
    assert out.count(": missing image") == (2 * len(ACTIONS) * 2 - 1) * N
    assert out.count(": missing skeleton.txt") == 12
    assert "verdict:" in out


def test_complete_copy_exits_0_and_unusable_root_2(tmp_path, capsys):
    root = tmp_path / "fphab"
    write_partial_fphab(root)
    assert cli(["check", "fphab", str(tmp_path / "nope")]) == 2
    (root / "data_split_action_recognition.txt").write_text(f"Training 1\n{SUBJECTS[0]}/{ACTIONS[0]}/1 0\nTest 0\n")
    capsys.readouterr()
    assert cli(["check", "fphab", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: complete as listed (not the published size); 1 of 1 sequences usable, 12 frames" in out
    assert "OK: no problems" in out
