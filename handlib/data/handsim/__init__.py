"""HandSim: handlib's procedural hand-video benchmark, shaped like FPHAB.

    from handlib.data.handsim import load_handsim, HandSimConfig
    hs = load_handsim(preset="smoke")          # generates into the cache once, then memory-maps
    hs.store                                    # FrameStore (meta['split'] in {'train', 'test'})
    hs.motion                                   # unpaired motion corpus: (list of (T,21,3) mm, list of (T,3,3) K)

Modules: anatomy (bones, limits, kinematics), motion (actions, min-jerk), camera (views,
crops), background, scene (one sequence + appearance), render (OpenCV painter), dataset
(config, plan, cache, loading), augment (label-consistent image augmentation), presets.
"""
from handlib.data.handsim.augment import HandAugment
from handlib.data.handsim.dataset import VERSION, HandSim, HandSimConfig, load_handsim
from handlib.data.handsim.presets import PRESETS

__all__ = ["load_handsim", "HandSimConfig", "HandSim", "HandAugment", "PRESETS", "VERSION"]
