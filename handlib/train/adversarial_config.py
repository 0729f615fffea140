"""The adversarial stage's configuration: one flat, recorded parameter set (papermill
parameters) for every method. The data, loop and record parameters are inherited from their
components (``DataParams``, ``LoopParams``, ``RecordParams``: declared there once); the
method's and D's are declared here, and the component configs (``MotionConfig`` of D,
``DTrainConfig`` of D's training, ``LoopConfig``) are built from it, so each default lives in
one place. ``params/`` grids override only on purpose.

New D-training options default to the behaviour of the first study (no warm start, no replay,
one D update per step on as many real as predicted windows, no NDA, the paper's D), so records
made before they existed still describe their runs; the settings chosen on validation are in
``params/`` grids.
"""
from __future__ import annotations

from dataclasses import dataclass

from handlib.config import ConfigError, defaults, param
from handlib.models.motion import MotionConfig
from handlib.train.discriminator import NDA_KINDS, DTrainConfig
from handlib.train.loop import LoopConfig, LoopParams
from handlib.train.stage_data import DataParams
from handlib.train.stage_record import RecordParams

METHODS = ("adversarial", "supervised", "smoothness", "pose_prior")


# pre-training field -> the adversarial-stage field it must equal: the one rule by which a
# continuation finds the pre-training run it starts from (the study's dependencies,
# ``find_pretrain_run``, ``ensure_pretrain``)
PRETRAIN_MATCH = {"dataset": "dataset", "root": "root", "preset": "preset", "appearance_shift": "appearance_shift",
                  "protocol": "protocol", "fraction": "fraction", "seed": "pretrain_seed",
                  "split_seed": "pretrain_split_seed", "image_size": "image_size", "smoke": "smoke"}


@dataclass(frozen=True)
@defaults(steps=400, lr=1e-4, eval_every=50, ckpt_every=100)
class AdversarialConfig(RecordParams, LoopParams, DataParams):
    """Data (``DataParams``: the pre-training run's), loop (``LoopParams``: ``lr`` is M's, constant)
    and record (``RecordParams``) parameters are inherited; the method's and D's are declared here."""

    stage = "adversarial"
    renamed = {"augment": "rotate"}  # records made before the rename (``from_record``)
    method: str = param("adversarial", choices=METHODS)
    # the pre-training run M starts from: its id, or the unique finished run with these fields
    pretrain_run: str | None = param(None, help="pre-training run id (results/runs/<id>)")
    pretrain_seed: int = param(0, range=(0, None))
    pretrain_split_seed: int | None = param(None, range=(0, None), help="the pre-training run's split_seed")
    # D and its data
    representation: str = param("25d", choices=("25d", "3d"))
    S: int = param(16, range=(1, 256), help="window length (pose_prior uses 1)")
    d_depth: int = param(2, range=(1, 16))
    d_channels: int = param(256, range=(8, 2048))
    spectral_norm: bool = param(False)
    rotate: bool = param(True, help="D's augmentation: one random rotation about the camera z-axis per window")
    center: bool = param(False, help="'25d': rays relative to frame 0's root ray")
    # motion-aware options of D (each off in the paper's D)
    d_kernel: int = param(3, range=(1, 15), help="D's temporal kernel (odd); 5: receptive field 25 >= S = 16")
    d_input: str = param("pose", choices=("pose", "pose_diff"), help="pose_diff: frame differences beside poses")
    d_pool: str = param("score", choices=("score", "window"),
                        help="score: mean of per-step scores (paper); window: one score from the whole window")
    motion_source: str = param("auto", choices=("auto", "corpus", "train_gt"),
                               help="auto: the dataset's unpaired corpus if it has one, else train_gt")
    # steps, batches, balance
    batch_size: int = param(16, range=(1, 4096), help="labelled frames per step")
    unlabelled_frames: int = param(32, range=(1, 4096), help="unlabelled frames per step (windows x S)")
    motion_batch: int = param(0, range=(0, 4096), help="real windows per D update; 0 = as many as fake")
    # D's training, decoupled from M's step (handlib.train.discriminator)
    d_updates: int = param(1, range=(1, 64), help="k D updates per M step (each on its own real batch)")
    d_fake_batch: int = param(0, range=(0, 4096),
                              help="M's windows per D update, this step's + replayed; 0 = this step's only")
    d_replay: int = param(0, range=(0, 1_000_000), help="replay buffer of M's windows (capacity); 0 = off")
    d_r1: float = param(0.0, range=(0.0, None), help="R1 gradient penalty weight on real windows; 0 = off")
    d_nda: float = param(0.0, range=(0.0, 1.0), help="weight of negative (time-corrupted real) fakes; 0 = off")
    d_nda_kinds: str = param("jitter,bone,shuffle", help="comma-separated: jitter, bone, shuffle, reverse, warp")
    d_nda_scale: float = param(1.0, range=(0.1, 100.0),
                               help="NDA jitter / bone amounts times this (1: jitter 1-10 mm, bone 1-10 %)")
    d_nda_graded: float = param(0.0, range=(0.0, 0.99),
                                help="NDA target for the mildest jitter / bone amount, falling to 0 at the "
                                     "strongest (log scale); 0 = every NDA fake's target is 0 (Sinha et al.)")
    d_warm_steps: int = param(0, range=(0, None), help="D's warm start against the frozen M's windows (max)")
    d_warm_eval_every: int = param(100, range=(1, None), help="warm start: validation every n D updates")
    d_warm_patience: int = param(5, range=(0, None), help="warm start: stop after n evaluations without gain")
    d_holdout_every: int = param(10, range=(2, None), help="every n-th motion sequence held out of D's training")
    d_probe_stride: int = param(1, range=(1, None), help="stride of the held-out windows D's sensitivity uses")
    d_probe_frames: int = param(1024, range=(16, None), help="validation frames (whole windows) D's probe scores")
    image_augment: str = param("pretrain", choices=("pretrain", "on", "off"),
                               help="HandAugment on the labelled batches; pretrain: as the pre-training run")
    d_lr: float = param(1e-5, range=(0.0, 1.0), help="D's learning rate; 1e-5: the committed study's")
    d_weight_decay: float = param(1e-4, range=(0.0, 1.0))
    d_beta1: float = param(0.5, range=(0.0, 1.0))
    d_every: int = param(1, range=(1, None), help="one D update every n steps")
    d_warmup: int = param(100, range=(0, None), help="steps in which D trains and lambda_MM = 0")
    lambda_mm: float = param(0.01, range=(0.0, None))
    lambda_warmup: int = param(100, range=(0, None), help="linear ramp of lambda_MM after d_warmup")
    # encoded windows move ~1e-2 per frame (velocity^2 ~ 1e-4)
    lambda_smooth: float = param(10.0, range=(0.0, None), help="method smoothness; 10: the committed study's")
    eval_max_frames: int = param(512, range=(0, None), help="val frames per periodic eval; 0 = all")

    def validate(self) -> None:
        if self.lr <= 0 or self.d_lr <= 0:
            raise ConfigError(f"AdversarialConfig.lr / d_lr: {self.lr} / {self.d_lr} must be > 0")
        if self.unlabelled_frames < self.window:
            raise ConfigError(f"AdversarialConfig.unlabelled_frames: {self.unlabelled_frames} < S = {self.window}")
        if self.d_kernel % 2 != 1:
            raise ConfigError(f"AdversarialConfig.d_kernel: {self.d_kernel} must be odd")
        if bad := sorted(set(self.nda_kinds) - set(NDA_KINDS)):
            raise ConfigError(f"AdversarialConfig.d_nda_kinds: {bad} not in {NDA_KINDS}")
        if self.d_nda > 0 and not self.nda_kinds:
            raise ConfigError("AdversarialConfig.d_nda > 0 needs d_nda_kinds")

    @property
    def nda_kinds(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.d_nda_kinds.split(",") if k.strip())

    @property
    def window(self) -> int:
        """The effective window length: 1 for the pose prior."""
        return 1 if self.method == "pose_prior" else self.S

    @property
    def uses_video(self) -> bool:
        return self.method != "supervised"

    @property
    def uses_d(self) -> bool:
        return self.method in ("adversarial", "pose_prior")

    def unused_fields(self) -> frozenset[str]:
        """Fields that cannot change this method's run (e.g. D's settings for ``supervised``):
        two configs that differ only there describe the same run."""
        d = {"representation", "S", "d_depth", "d_channels", "spectral_norm", "rotate", "center", "motion_source",
             "motion_batch", "d_lr", "d_weight_decay", "d_beta1", "d_every", "lambda_mm", "d_kernel", "d_input",
             "d_pool", "d_updates", "d_fake_batch", "d_replay", "d_r1", "d_nda", "d_nda_kinds", "d_nda_scale",
             "d_nda_graded", "d_warm_steps",
             "d_warm_eval_every", "d_warm_patience", "d_holdout_every", "d_probe_stride", "d_probe_frames"}
        if self.method == "supervised":
            return frozenset(d | {"unlabelled_frames", "d_warmup", "lambda_warmup", "lambda_smooth"})
        if self.method == "smoothness":
            return frozenset((d - {"representation", "S", "center"}) | {"d_warmup", "lambda_warmup"})
        return frozenset({"lambda_smooth"} | ({"S"} if self.method == "pose_prior" else set()))

    def motion_config(self) -> MotionConfig:
        return MotionConfig(S=self.window, depth=self.d_depth, channels=self.d_channels, kernel=self.d_kernel,
                            spectral_norm=self.spectral_norm, representation=self.representation,
                            augment=self.rotate, center=self.center, motion_input=self.d_input, pool=self.d_pool)

    @property
    def windows_per_step(self) -> int:
        """Unlabelled windows through M per step."""
        return self.unlabelled_frames // self.window

    def d_train_config(self) -> DTrainConfig:
        n = self.windows_per_step
        return DTrainConfig(lr=self.d_lr, beta1=self.d_beta1, weight_decay=self.d_weight_decay,
                            grad_clip=self.grad_clip, updates=self.d_updates, real_batch=self.motion_batch or n,
                            fake_batch=self.d_fake_batch or n, replay=self.d_replay, r1=self.d_r1, nda=self.d_nda,
                            nda_kinds=self.nda_kinds, augment=self.rotate, representation=self.representation,
                            center=self.center, warm_steps=self.d_warm_steps, warm_eval_every=self.d_warm_eval_every,
                            warm_patience=self.d_warm_patience, nda_scale=self.d_nda_scale,
                            nda_graded=self.d_nda_graded)

    def loop_config(self) -> LoopConfig:
        return LoopConfig(**self.loop_params(), schedule="constant", resume=not self.smoke)

    def pretrain_params(self, ignore: tuple[str, ...] = ()) -> dict:
        """The pre-training run's fields this run names (``PRETRAIN_MATCH``), less ``ignore``."""
        return {p: getattr(self, a) for p, a in PRETRAIN_MATCH.items() if a not in ignore}

    def starts_from(self, pre, ignore: tuple[str, ...] = ()) -> bool:
        """Whether this run continues from the pre-training run ``pre`` (a ``PretrainConfig`` or
        a record's config dict), by ``PRETRAIN_MATCH`` less the fields named in ``ignore``."""
        get = pre.get if isinstance(pre, dict) else (lambda k: getattr(pre, k, None))
        return all(get(k) == v for k, v in self.pretrain_params(ignore).items())


def get_lambda(step: int, cfg: AdversarialConfig) -> float:
    """lambda_MM at (0-based) ``step``: 0 during D's warm-up, then a linear ramp to lambda_mm."""
    t = step - cfg.d_warmup
    if t < 0:
        return 0.0
    if cfg.lambda_warmup and t < cfg.lambda_warmup:
        return cfg.lambda_mm * (t + 1) / cfg.lambda_warmup
    return cfg.lambda_mm
