import numpy as np
import torch

from handlib import skeleton as sk


def test_canonical_order_and_parents():
    assert sk.JOINT_NAMES[0] == "wrist"
    assert sk.JOINT_NAMES[1:5] == ("thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip")
    assert sk.JOINT_NAMES[5:9] == ("index_mcp", "index_pip", "index_dip", "index_tip")
    assert sk.JOINT_NAMES[17] == "pinky_mcp" and sk.JOINT_NAMES[20] == "pinky_tip"
    assert len(sk.BONES) == 20
    # every finger chain hangs off the wrist and is a path
    for f in range(5):
        base = 1 + 4 * f
        assert sk.PARENTS[base] == 0
        assert [sk.PARENTS[base + k] for k in (1, 2, 3)] == [base, base + 1, base + 2]
    assert sorted(c for _, c in sk.BONES) == list(range(1, 21))


def test_fphab_map():
    # FPHAB: wrist, TMCP IMCP MMCP RMCP PMCP, then PIP DIP TIP per finger thumb..pinky
    names = ["wrist"] + [f"{f}_mcp" for f in sk.FINGERS] + [
        f"{f}_{j}" for f in sk.FINGERS for j in ("pip", "dip", "tip")]
    fphab_names = np.array(names)[sk.FPHAB_TO_CANON]
    # FPHAB's thumb MCP/PIP/DIP are the canonical CMC/MCP/IP
    expected = [n.replace("thumb_mcp", "thumb_cmc").replace("thumb_pip", "thumb_mcp")
                .replace("thumb_dip", "thumb_ip") for n in fphab_names]
    assert tuple(expected) == sk.JOINT_NAMES


def test_mano_map():
    mano = ["wrist", "index_mcp", "index_pip", "index_dip", "middle_mcp", "middle_pip", "middle_dip",
            "pinky_mcp", "pinky_pip", "pinky_dip", "ring_mcp", "ring_pip", "ring_dip",
            "thumb_cmc", "thumb_mcp", "thumb_ip",
            "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"]
    assert tuple(np.array(mano)[sk.MANO_TO_CANON]) == sk.JOINT_NAMES
    x = torch.randn(4, 21, 3)
    assert torch.equal(x[:, sk.MANO_TO_CANON][:, sk.CANON_TO_MANO], x)
    assert torch.equal(x[:, sk.FPHAB_TO_CANON][:, sk.CANON_TO_FPHAB], x)


def test_bone_lengths_numpy_and_torch():
    j = np.zeros((21, 3))
    for p, c in sk.BONES:
        j[c] = j[p] + np.array([0.0, 0.0, 10.0 + c])
    bl = sk.bone_lengths(j)
    np.testing.assert_allclose(bl, [10.0 + c for _, c in sk.BONES])
    np.testing.assert_allclose(sk.bone_lengths(torch.from_numpy(j)).numpy(), bl)


def test_ref_bone_length_is_the_wrist_to_middle_mcp_bone():
    j = torch.randn(5, 21, 3, dtype=torch.float64)
    expect = (j[:, 9] - j[:, 0]).norm(dim=-1)
    assert torch.allclose(sk.ref_bone_length(j), expect)
    assert torch.allclose(sk.ref_bone_length(j), sk.bone_lengths(j)[:, 8])  # bone (0, 9) is the 9th bone
    np.testing.assert_allclose(sk.ref_bone_length(j.numpy()), expect.numpy())
