"""Protocol 1/2 label splits: hand-worked examples, stratification, seeding, no leaks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlib.config import ConfigError
from handlib.data.datasets import FrameStore
from handlib.data.protocols import (
    PAPER_FRACTIONS,
    LeakError,
    Split,
    assert_no_leak,
    label_step,
    make_split,
    motion_for_split,
    p1_positions,
    stratified_choice,
)


def make_meta(n_train=40, n_test=8, length=10, subjects=4, actions=5, first_frame=0) -> pd.DataFrame:
    rows = []
    for s in range(n_train + n_test):
        for f in range(length):
            a = (s // subjects) % actions
            rows.append({"sequence": f"Subject_{s % subjects}/a{a}/{s}", "subject": f"Subject_{s % subjects}",
                         "action": f"a{a}", "frame": first_frame + f,
                         "split": "test" if s >= n_train else "train"})
    return pd.DataFrame(rows)


def test_paper_fractions_and_step():
    assert PAPER_FRACTIONS == (0.00625, 0.0125, 0.025, 0.05, 0.1, 0.2, 1.0)
    assert [label_step(f) for f in PAPER_FRACTIONS] == [160, 80, 40, 20, 10, 5, 1]


def test_hand_worked_p1_positions():
    assert p1_positions(10, 0.25).tolist() == [0, 4, 8, 9]
    assert p1_positions(9, 0.25).tolist() == [0, 4, 8]  # the last frame is already on the grid
    assert p1_positions(1, 0.1).tolist() == [0]
    assert p1_positions(5, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert p1_positions(321, 0.00625).tolist() == [0, 160, 320]


def test_p1_labels_frames_0_4_8_9_of_every_training_sequence():
    meta = make_meta(first_frame=100)
    meta = meta.sample(frac=1.0, random_state=0).sort_values(["sequence", "frame"]).reset_index(drop=True)
    sp = make_split(meta, protocol=1, fraction=0.25, seed=0, val_fraction=0.1)
    lab = meta.loc[sp.labelled_rows]
    for _seq, grp in lab.groupby("sequence"):
        assert (grp["frame"] - 100).tolist() == [0, 4, 8, 9]
    # P1: every non-val training sequence is both labelled (sparsely) and unlabelled video
    assert set(lab["sequence"]) == set(sp.unlabelled_sequences) == set(sp.labelled_sequences)
    assert len(sp.val_sequences) == 4 and not set(sp.val_sequences) & set(sp.unlabelled_sequences)
    assert len(sp.unlabelled_sequences) == 36 and len(sp.labelled_rows) == 36 * 4
    roles = sp.to_frame()
    assert roles["role"].value_counts().to_dict() == {"unlabelled": 36 * 6, "labelled": 36 * 4, "test": 80,
                                                      "val": 40}


def test_p2_whole_sequences_stratified_and_seeded():
    meta = make_meta(n_train=40, subjects=4, actions=2)  # 8 strata x 5 sequences
    sp = make_split(meta, protocol=2, fraction=0.2, seed=3, val_fraction=0.1)
    assert len(sp.labelled_sequences) == 8  # 20 % of 40 training sequences
    lab = meta.loc[sp.labelled_rows]
    assert lab.groupby("sequence").size().eq(10).all()  # whole sequences
    strata = lab.drop_duplicates("sequence").groupby(["subject", "action"]).size()
    assert len(strata) == 8 and strata.eq(1).all()  # one per (subject, action) stratum
    # validation comes from sequences that are not labelled; the rest is unlabelled video
    assert not set(sp.val_sequences) & set(sp.labelled_sequences) and len(sp.val_sequences) == 4
    assert len(sp.unlabelled_sequences) == 40 - 8 - 4
    again = make_split(meta, protocol=2, fraction=0.2, seed=3, val_fraction=0.1)
    other = make_split(meta, protocol=2, fraction=0.2, seed=4, val_fraction=0.1)
    assert again.labelled_sequences == sp.labelled_sequences and again.val_sequences == sp.val_sequences
    assert other.labelled_sequences != sp.labelled_sequences


def test_round_half_up_counts():
    meta = make_meta(n_train=20)
    assert len(make_split(meta, protocol=2, fraction=0.125, val_fraction=0.0).labelled_sequences) == 3  # 2.5
    assert len(make_split(meta, protocol=2, fraction=0.175, val_fraction=0.0).labelled_sequences) == 4  # 3.5


def test_p2_small_fraction_and_full_fraction():
    meta = make_meta(n_train=40)
    tiny = make_split(meta, protocol=2, fraction=0.00625, seed=0)
    assert len(tiny.labelled_sequences) == 1  # never zero
    full = make_split(meta, protocol=2, fraction=1.0, seed=0, val_fraction=0.1)
    assert full.unlabelled_sequences == [] and len(full.val_sequences) == 4
    assert len(full.labelled_sequences) == 36 and full.notes and "taken from the labelled" in full.notes[0]
    none = make_split(meta, protocol=2, fraction=0.5, seed=0, val_fraction=0.0)
    assert none.val_sequences == [] and len(none.val_rows) == 0


def test_stratified_choice_proportional():
    seqs = pd.DataFrame({"sequence": [f"s{i}" for i in range(30)],
                         "stratum": ["a"] * 20 + ["b"] * 10})
    pick = stratified_choice(seqs, 6, np.random.default_rng(0))
    assert sum(p in set(seqs["sequence"][:20]) for p in pick) == 4 and len(set(pick)) == 6


def test_no_test_sequence_in_training_roles_and_csv(tmp_path):
    meta = make_meta()
    for protocol in (1, 2):
        sp = make_split(meta, protocol=protocol, fraction=0.1, seed=1)
        test = set(meta["sequence"][meta["split"] == "test"])
        assert set(meta["sequence"][sp.test_rows]) == test
        assert not test & (set(sp.unlabelled_sequences) | set(meta["sequence"][sp.labelled_rows])
                           | set(meta["sequence"][sp.val_rows]))
        path = sp.to_csv(tmp_path / f"split_p{protocol}.csv")
        back = pd.read_csv(path)
        assert list(back.columns) == ["sequence", "frame", "role"] and len(back) == len(meta)
        assert set(back["role"]) <= {"labelled", "unlabelled", "val", "test", "unused"}
    # a doctored split that leaks is refused, also when writing the CSV
    bad = Split(protocol=2, fraction=0.1, seed=0, val_fraction=0.0, motion_source="train_gt",
                labelled_rows=np.array([len(meta) - 1]), unlabelled_sequences=[],
                val_rows=np.zeros(0, np.int64), test_rows=np.flatnonzero(meta["split"] == "test"), meta=meta)
    with pytest.raises(LeakError, match="test sequence"):
        assert_no_leak(bad)
    with pytest.raises(LeakError):
        bad.to_csv(tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_config_validation():
    with pytest.raises(ConfigError, match="protocol"):
        make_split(make_meta(), protocol=3)
    with pytest.raises(ConfigError, match="motion_source"):
        make_split(make_meta(), motion_source="bighand")


def test_motion_source():
    meta = make_meta(n_train=10, n_test=2, length=6)
    n = len(meta)
    j3d = np.random.default_rng(0).normal(size=(n, 21, 3)).astype(np.float32)
    store = FrameStore(images=np.zeros((n, 4, 4, 3), np.uint8), j3d=j3d,
                       K=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), meta=meta)
    sp = make_split(meta, protocol=2, fraction=0.3, seed=0, val_fraction=0.2)
    seqs, Ks = motion_for_split(store, sp)
    assert len(seqs) == 10 - len(sp.val_sequences) and all(s.shape == (6, 21, 3) for s in seqs)
    allowed = store.j3d[np.flatnonzero(~meta["sequence"].isin(sp.val_sequences) & (meta["split"] == "train"))]
    np.testing.assert_array_equal(np.concatenate(seqs), allowed)
    corpus = ([np.zeros((5, 21, 3), np.float32)], [np.eye(3)])
    sp_c = make_split(meta, protocol=2, fraction=0.3, seed=0, motion_source="corpus")
    assert motion_for_split(store, sp_c, corpus) is corpus and sp_c.summary()["motion_source"] == "corpus"
    with pytest.raises(ValueError, match="corpus"):
        motion_for_split(store, sp_c)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(1, 6), st.integers(1, 12), st.sampled_from(PAPER_FRACTIONS),
       st.sampled_from([1, 2]), st.floats(0.0, 0.3), st.integers(0, 99))
def test_property_never_leaks(n_train, n_test, length, fraction, protocol, val_fraction, seed):
    meta = make_meta(n_train=n_train, n_test=n_test, length=length, subjects=3, actions=2)
    sp = make_split(meta, protocol=protocol, fraction=fraction, seed=seed, val_fraction=val_fraction)
    assert_no_leak(sp)
    lab_seqs = set(meta["sequence"][sp.labelled_rows])
    assert (meta["split"][sp.labelled_rows] == "train").all() and len(sp.labelled_rows) > 0
    assert not set(sp.val_sequences) & (lab_seqs | set(sp.unlabelled_sequences))
    if protocol == 2:
        n_lab = max(1, int(np.floor(fraction * n_train + 0.5)))
        assert len(lab_seqs) == n_lab if not sp.notes else len(lab_seqs) < n_lab
        assert not lab_seqs & set(sp.unlabelled_sequences)
    roles = sp.to_frame()["role"]
    assert (roles == "test").sum() == n_test * length


def test_protocols_on_handsim(tmp_path):
    from handlib.data.registry import load_dataset

    hs = load_dataset("handsim", preset="smoke")
    meta = hs.store.meta
    n_train = meta.loc[meta["split"] == "train", "sequence"].nunique()
    for protocol in (1, 2):
        sp = make_split(meta, protocol=protocol, fraction=0.5, seed=0, val_fraction=0.2,
                        motion_source="corpus")
        assert_no_leak(sp)
        assert set(meta["split"][sp.test_rows]) == {"test"} and len(sp.test_rows) > 0
        assert len(sp.val_sequences) == max(1, int(np.floor(0.2 * n_train + 0.5)))
        assert motion_for_split(hs.store, sp, hs.motion) is hs.motion
        df = pd.read_csv(sp.to_csv(tmp_path / f"p{protocol}.csv"))
        assert (df.groupby("sequence")["role"].agg(lambda r: "test" in set(r) and len(set(r)) > 1)).sum() == 0
    sp1 = make_split(meta, protocol=1, fraction=0.1, seed=0, val_fraction=0.2)
    for seq in sp1.labelled_sequences:
        frames = meta.loc[sp1.labelled_rows][meta.loc[sp1.labelled_rows, "sequence"] == seq]["frame"]
        n = int((meta["sequence"] == seq).sum())
        assert len(frames) == len(p1_positions(n, 0.1))


def test_check_command_handsim(tmp_path, capsys):
    from handlib.data.__main__ import main as cli

    assert cli(["check", "handsim"]) == 0
    out = capsys.readouterr().out
    assert "handsim" in out and "train" in out and "test" in out and "motion corpus" in out
    assert "problems (0)" in out
    assert cli(["check", "handsim", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
