"""The gap probe between two sets of real motion, and the encoder's centred rays."""
import numpy as np
import torch

from handlib.analysis.motion_gap import separability, windows_by_sequence
from handlib.models.motion import MotionConfig, encode_real
from handlib.skeleton import ROOT
from tests.helpers import camera, random_hand


def _walks(n_seq, T, seed, speed=1.0):
    """One hand translating (a random walk of the whole hand) in front of a camera."""
    g = torch.Generator().manual_seed(seed)
    h = random_hand(1, torch.Generator().manual_seed(0))[0]
    seqs = []
    for _ in range(n_seq):
        step = torch.randn(T, 1, 3, generator=g, dtype=torch.float64) * speed
        seqs.append((h[None] + step.cumsum(0)).float().numpy())
    return seqs, [camera(1, c=64.0)[0].float().numpy()] * n_seq


def test_centred_rays_remove_the_position_in_the_view_only():
    j3d = torch.from_numpy(np.stack(_walks(2, 16, 0)[0]))
    K = camera(1, c=64.0).float().expand(2, 16, 3, 3)
    a, c = encode_real(j3d, K, "25d"), encode_real(j3d, K, "25d", center=True)
    assert torch.allclose(c[:, 0, ROOT, :2], torch.zeros(2, 2))
    assert torch.allclose(c[..., :2], a[..., :2] - a[:, :1, ROOT:ROOT + 1, :2], atol=1e-6)
    assert torch.equal(c[..., 2], a[..., 2])


def test_windows_by_sequence_owner():
    seqs, Ks = _walks(3, 40, 1)
    j, K, owner = windows_by_sequence(seqs, Ks, S=16)
    assert j.shape == (6, 16, 21, 3) and K.shape == (6, 16, 3, 3) and list(owner) == [0, 0, 1, 1, 2, 2]


def test_separability_finds_a_speed_gap_and_not_a_non_gap():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: OpenMP barriers cost more than they save
    cfg = MotionConfig(S=8, channels=32, depth=1)
    slow, fast, same = _walks(16, 32, 2, 1.0), _walks(16, 32, 3, 20.0), _walks(16, 32, 4, 1.0)
    gap = separability(slow, fast, cfg, steps=100, batch=32)
    none = separability(slow, same, cfg, steps=100, batch=32)
    torch.set_num_threads(n)
    assert gap["auc_heldout"] > 0.9
    assert abs(none["auc_heldout"] - 0.5) < 0.25
