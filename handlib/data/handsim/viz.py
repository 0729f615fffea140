"""Looking at HandSim (or any FrameStore): frames with skeletons, filmstrips, joint-angle
tables, and a small interactive player for notebooks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from handlib.skeleton import BONES, PARENTS

FINGER_COLOURS = ("#e6194b", "#f58231", "#3cb44b", "#4363d8", "#911eb4")


def draw_skeleton(ax, j2d: np.ndarray, lw: float = 1.2, ms: float = 6.0) -> None:
    """Draw a (21, 2) px skeleton on a matplotlib axis, one colour per finger."""
    for p, c in BONES:
        f = (c - 1) // 4
        ax.plot(j2d[[p, c], 0], j2d[[p, c], 1], color=FINGER_COLOURS[f], lw=lw)
    ax.scatter(j2d[:, 0], j2d[:, 1], s=ms, c="white", edgecolors="black", linewidths=0.3, zorder=3)


def show_frames(store, j2d: np.ndarray, rows, ncols: int = 4, size: float = 2.0, skeleton: bool = True):
    """Grid of frames ``rows`` with their 2D skeletons; returns the figure."""
    import matplotlib.pyplot as plt

    rows = list(rows)
    nrows = (len(rows) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), rows):
        ax.imshow(store.images[r])
        if skeleton:
            draw_skeleton(ax, j2d[r])
        m = store.meta.iloc[r]
        ax.set_title(f"{m['sequence']} #{m['frame']}", fontsize=7)
    fig.tight_layout()
    return fig


def filmstrip(store, j2d: np.ndarray, sequence: str, n: int = 8, size: float = 1.6, skeleton: bool = False):
    """``n`` evenly spaced frames of one sequence in a row."""
    rows = store.rows_of([sequence])
    pick = rows[np.linspace(0, len(rows) - 1, n).round().astype(int)]
    return show_frames(store, j2d, pick, ncols=n, size=size, skeleton=skeleton)


BEND_JOINTS = (2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)


def bend_angles(j3d: np.ndarray) -> np.ndarray:
    """Bend at the joints with a parent and a child bone: (..., 21, 3) -> (..., 14) deg.
    Order: thumb MCP, IP, then MCP, PIP, DIP of index..pinky (see BEND_NAMES)."""
    joints = list(BEND_JOINTS)
    a = j3d[..., joints, :] - j3d[..., [PARENTS[j] for j in joints], :]
    b = j3d[..., [j + 1 for j in joints], :] - j3d[..., joints, :]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


BEND_NAMES = ("thumb_mcp", "thumb_ip") + tuple(f"{f}_{j}" for f in ("index", "middle", "ring", "pinky")
                                              for j in ("mcp", "pip", "dip"))


def angle_table(store, groups=("mcp", "pip", "dip")) -> pd.DataFrame:
    """Per action: 5th-95th percentile of the bend angles (deg) at the fingers' MCP, PIP, DIP
    joints and of the thumb, measured from the stored 3D joints."""
    ang = bend_angles(store.j3d.astype(np.float64))  # (N, 15)
    names = np.array(BEND_NAMES)
    out = {}
    for action, rows in store.meta.groupby("action", sort=False).indices.items():
        row = {}
        for g in groups:
            cols = [i for i, n in enumerate(names) if n.endswith(g) and not n.startswith("thumb")]
            v = ang[rows][:, cols]
            row[g] = f"{np.percentile(v, 5):.0f}-{np.percentile(v, 95):.0f}"
        v = ang[rows][:, :2]
        row["thumb"] = f"{np.percentile(v, 5):.0f}-{np.percentile(v, 95):.0f}"
        out[action] = row
    return pd.DataFrame(out).T.rename_axis("action")


def player(store, j2d: np.ndarray, sequence: str):
    """ipywidgets player: scrub a sequence's frames and rotate its 3D skeleton."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    rows = store.rows_of([sequence])

    def show(frame: int = 0, azimuth: float = -60.0, elevation: float = -70.0):
        r = rows[frame]
        fig = plt.figure(figsize=(7, 3.4))
        ax = fig.add_subplot(1, 2, 1)
        ax.imshow(store.images[r])
        draw_skeleton(ax, j2d[r])
        ax.axis("off")
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        j = store.j3d[r] - store.j3d[r, 0]
        for p, c in BONES:
            ax3.plot(j[[p, c], 0], j[[p, c], 1], j[[p, c], 2], color=FINGER_COLOURS[(c - 1) // 4])
        ax3.view_init(elev=elevation, azim=azimuth)
        ax3.set_xlabel("x mm")
        ax3.set_ylabel("y mm")
        ax3.set_zlabel("z mm")
        lim = np.abs(j).max()
        for setter in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            setter(-lim, lim)
        plt.show()

    return widgets.interactive(show, frame=widgets.IntSlider(value=0, min=0, max=len(rows) - 1),
                               azimuth=widgets.FloatSlider(value=-60.0, min=-180.0, max=180.0),
                               elevation=widgets.FloatSlider(value=-70.0, min=-90.0, max=90.0))
