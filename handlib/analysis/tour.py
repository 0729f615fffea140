"""Notebook 00's settings and facts: what a HandSim build holds (counts, scale, depth)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handlib.config import StageConfig, param
from handlib.skeleton import REF_BONE


@dataclass(frozen=True)
class TourConfig(StageConfig):
    """What notebook 00 shows of a HandSim build (the build itself: ``HandSimConfig``)."""

    stage = "handsim_tour"
    cache_root: str | None = param(None, help="HandSim cache root; None = the default cache")
    n_show: int = param(8, range=(1, 64), help="sample frames drawn with their 2D skeletons")
    film_index: int = param(2, range=(0, None), help="which sequence (row of hs.sequences) the filmstrip shows")
    interactive: bool = param(False, help="show the ipywidgets player (skipped by papermill / nbval)")


def facts(hs) -> list[str]:
    """Counts per split, the mean reference bone (wrist - middle MCP, mm), the mean root depth
    (cm) and the size of the unpaired motion corpus, one line each."""
    m, j3d = hs.store.meta, hs.store.j3d
    ref = np.linalg.norm(j3d[:, REF_BONE[1]] - j3d[:, REF_BONE[0]], axis=-1)
    return [f"sequences per split: {m.groupby('split')['sequence'].nunique().to_dict()}",
            f"frames per split: {m['split'].value_counts().sort_index().to_dict()}",
            f"mean wrist-middle MCP bone (mm): {round(float(ref.mean()))}",
            f"mean root depth (cm): {round(float(j3d[:, 0, 2].mean()) / 10)}",
            f"motion corpus sequences: {len(hs.motion[0])}"]
