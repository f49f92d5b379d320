"""Training from folders, as one story: look at the data, decide and say what will be done, then do it.

`plan_training` scans the inputs, chooses what the user left open (network, channels, input size)
and fixes every setting, without decoding the training set; `run_training` carries a plan out.
The CLI renders the plan between the two, so the user sees it before any long work starts. Both
`ssd train` and `ssd pretrain` go through here, and nothing here prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ssd_cli.core import distributed
from ssd_cli.core.config import (
    PAPER_TRAIN,
    AnomalyLoss,
    SyntheticConfig,
    Objective,
    OptimConfig,
    Preprocessing,
    Resize,
    ThresholdSource,
    Tiling,
    TrainConfig,
)
from ssd_cli.device import resolve_device
from ssd_cli.errors import InputError, UsageError
from ssd_cli.core.estimate import step_cost, training_seconds
from ssd_cli.data.decoded import DecodedSet, decode_images, decode_tiles
from ssd_cli.data.images import Skipped
from ssd_cli.core.model import SavedAutoencoder, SavedModel
from ssd_cli.io.modelfile import load_autoencoder
from ssd_cli.core.nets import LeNetSpec, get_spec, network_for_size
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.tiles import TileSpec
from ssd_cli.core.views import PatchView
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.records import pretraining_record, pretraining_summary, tile_record
from ssd_cli.core.roles import Role
from ssd_cli.core.calibration import held_out_anomaly_count, held_out_count
from ssd_cli.core.presets import PATCH_MIN_STEPS, customised, train_defaults, with_min_steps
from ssd_cli.data.outliers import BUILTIN_OUTLIERS
from ssd_cli.data.scan import InputChoice, RoleScan, ScanReport, choose_input, input_warnings, scan_inputs, with_role
from ssd_cli.core.training import EpochInfo

MAX_SEED = 2**32 - 1  # torch's generators take 64 bits, and a patch model's crops add an offset to the seed
MAX_PATCHES_PER_IMAGE = 1024  # crops per image and epoch; more only multiplies the epoch's memory and time
# Training tiles kept of each large photo (TrainRequest.tiles_per_image): 8 colour tiles of 256 px
# are 1.5 MiB of uint8, and with 4 patches of each per epoch a photo costs 8x a 256 px image's
# training; 500 photos then hold 0.75 GiB, whatever their size.
TILES_PER_IMAGE = 8
MAX_TILES_PER_IMAGE = 1024  # as many patches: more tiles per image only multiply memory and time

StageCallback = Callable[[str, EpochInfo], None]  # (stage name, epoch info)


@dataclass(frozen=True)
class OptimOverrides:
    """What the user set of one phase's optimiser; None keeps the network's preset."""

    epochs: int | None = None
    lr: float | None = None
    lr_milestones: tuple[int, ...] | None = None
    weight_decay: float | None = None
    batch_size: int | None = None

    def apply(self, preset: OptimConfig) -> OptimConfig:
        try:
            return customised(preset, **self.__dict__)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class TrainRequest:
    """Everything a user can ask of `ssd train` / `ssd pretrain`; unset values are chosen by the plan."""

    unlabeled: tuple[Path, ...]
    normals: tuple[Path, ...] = ()
    anomalies: tuple[Path, ...] = ()
    outliers: tuple[Path, ...] = ()  # unrelated images, used as anomalies with their own weight
    arch: str | None = None
    decoder: str | None = None  # the autoencoder's decoder; None: the network's own
    channels: int | None = None
    image_size: int | None = None
    resize: Resize | None = None
    preprocessing: Preprocessing | None = None
    objective: Objective = Objective.ONE_CLASS
    nu: float = 0.1
    eta: float = 1.0
    synthetic: tuple[str, ...] | None = None  # generator names; () = none; None: the default for the data
    augment: tuple[str, ...] | None = None  # augmentations of the training images; () = none; None: the default
    synthetic_ratio: float | None = None  # None: the default
    anomaly_loss: AnomalyLoss | None = None  # None: the paper's inverse distance
    outlier_weight: float = 1.0
    builtin_outliers: bool | None = None  # ssd's own outlier photos (data/outliers.py); None: the default for the data
    whiten: bool | None = None  # Mahalanobis scores (core/whitening.py); None: the default for the model
    train: OptimOverrides = OptimOverrides()
    pretrain: OptimOverrides = OptimOverrides()
    pretrained: Path | None = None
    patch_size: int | None = None  # None: the default rule (default_patch_size); 0: whole images
    patch_stride: int | None = None  # default: half the patch
    patch_top_k: int | None = None  # an image scores as the mean of its top k patches; default (patch / stride)^2
    patches_per_image: int = 4
    tiles: Tiling = Tiling.AUTO  # large photos cut into tiles (choose_tiles)
    tile_scale: float | None = None  # None: native resolution (1), or the --pretrained file's scale
    tiles_per_image: int = TILES_PER_IMAGE  # training tiles kept of each image (at most)
    threshold_quantile: float = 0.95
    threshold_from: ThresholdSource | None = None  # None: the default for the data
    seed: int = 0
    device: str = "auto"
    cache: Path | None = None  # decode into a disk cache here and train from it (sets larger than memory)


@dataclass(frozen=True)
class TilePlan:
    """How the images are seen: cut into tiles (spec), or fitted whole to the input (spec None)."""

    spec: TileSpec | None
    per_image: int = 0  # training tiles kept of each image (at most)
    typical: int = 0  # tiles of an image of the sample's median size
    reason: str = ""  # why tiles, or why large images are not tiled ("" when the question did not arise)


@dataclass(frozen=True)
class TrainPlan:
    """What will be done, decided before any image is decoded: the CLI shows it first."""

    request: TrainRequest
    scan: ScanReport
    files: dict[Role, list[Path]]  # per role, after overlaps were resolved
    choice: InputChoice
    spec: LeNetSpec
    resize: Resize
    preprocessing: Preprocessing
    cfg: TrainConfig
    pretrain: OptimConfig | None  # None: no pretraining (a --pretrained file, or 0 epochs)
    pretrained: SavedAutoencoder | None
    patches: PatchView | None  # patch-level training, or None for whole images
    tiles: TilePlan  # large photos: patch-level training on tiles of them
    anomalies_reason: str  # why these synthetic anomalies (cfg.synthetic) and anomaly loss
    threshold_from: ThresholdSource  # one-class models: a training-score quantile or held-out + synthetic
    held_out: tuple[int, int]  # unlabeled images and labeled anomalies kept out of training (threshold and check)
    device: torch.device
    estimate_seconds: float | None
    warnings: list[str] = field(default_factory=list)
    builtin_outliers: bool = False  # ssd's own outlier photos are among the outlier images
    epochs_reason: str = ""  # why the epochs differ from the preset's, where they do

    @property
    def skipped(self) -> list[Skipped]:
        """Files the listing left out (not images, links to nothing, FIFOs), role by role."""
        return [s for scan in self.scan.roles.values() for s in scan.skipped]

    @property
    def input_size(self) -> int:
        """The side images are decoded to (the whole image of a patch-level model, or its tile)."""
        return self.patches.spec.image_size if self.patches else self.spec.image_size

    @property
    def trained_roles(self) -> list[Role]:
        """The roles whose images are trained on. A tiled model leaves out the labeled anomalies:
        a photo's defect lies in one of its tiles and nobody said which, so labeling all its tiles
        anomalous would teach phi that clean tiles are anomalous. They are scored after training
        instead (the summary says how the threshold separates them)."""
        return trained_roles(self.files, tiled=self.tiles.spec is not None)


def trained_roles(files: dict[Role, list[Path]], *, tiled: bool) -> list[Role]:
    """The roles with files that training visits: all, but the labeled anomalies of a tiled model."""
    return [role for role, f in files.items() if f and not (tiled and role is Role.ANOMALIES)]


@dataclass
class TrainOutcome:
    model: SavedModel
    skipped: list[Skipped]  # files that could not be decoded


def _check_options(req: TrainRequest) -> TrainConfig:
    """Cheap checks first: a typo in an option must not wait for a folder scan."""
    if not 0 < req.threshold_quantile < 1:
        raise UsageError(f"--threshold-quantile must be in (0, 1), got {req.threshold_quantile}")
    named = (("--channels", req.channels), ("--image-size", req.image_size), ("--patch-stride", req.patch_stride),
             ("--patches-per-image", req.patches_per_image), ("--tiles-per-image", req.tiles_per_image))  # fmt: skip
    for name, value in named:
        if value is not None and value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
    if not 0 <= req.seed <= MAX_SEED:
        raise UsageError(f"--seed must be from 0 to {MAX_SEED}, got {req.seed}")
    if req.patches_per_image > MAX_PATCHES_PER_IMAGE:
        raise UsageError(f"--patches-per-image must be at most {MAX_PATCHES_PER_IMAGE}, got {req.patches_per_image}")
    if req.patch_size is not None and req.patch_size < 0:
        raise UsageError(f"--patch-size must be 0 (whole images) or positive, got {req.patch_size}")
    if req.pretrained is not None:  # the file replaces the pretraining: its settings would be ignored
        p = req.pretrain
        given = [n for n, v in (("--pretrain-epochs", p.epochs), ("--pretrain-lr", p.lr), ("--pretrain-lr-milestones", p.lr_milestones), ("--pretrain-weight-decay", p.weight_decay)) if v is not None]
        if given:
            raise UsageError(f"--pretrained skips the pretraining, so {', '.join(given)} would be ignored: give --pretrained or {', '.join(given)}, not both")
    if req.tiles_per_image > MAX_TILES_PER_IMAGE:
        raise UsageError(f"--tiles-per-image must be at most {MAX_TILES_PER_IMAGE}, got {req.tiles_per_image}")
    if req.tile_scale is not None:
        if not (math.isfinite(req.tile_scale) and 0 < req.tile_scale <= 1):
            raise UsageError(f"--tile-scale must be in (0, 1] (1 = native resolution), got {req.tile_scale}")
        if req.tiles is Tiling.OFF:
            raise UsageError("--tile-scale scales the tiles, but --tiles off asks for none; drop one of them")
    req.train.apply(PAPER_TRAIN)  # negative epochs, zero lr and the like, before the network is known
    req.pretrain.apply(PAPER_TRAIN)
    try:
        return TrainConfig(objective=req.objective, nu=req.nu, eta=req.eta, outlier_weight=req.outlier_weight)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def plan_training(req: TrainRequest, *, pretrain_only: bool = False, estimate: bool = True) -> TrainPlan:
    """Scan, choose, fix every setting and estimate the time; decodes nothing but a small sample."""
    base = _check_options(req)
    device = resolve_device(req.device)
    if req.arch is not None:
        _spec_or_usage(req.arch, None, None)  # an unknown name is a usage error before any scan
    saved_ae = load_autoencoder(req.pretrained) if req.pretrained is not None else None
    roles = {Role.UNLABELED: list(req.unlabeled), Role.NORMALS: list(req.normals), Role.ANOMALIES: list(req.anomalies), Role.OUTLIERS: list(req.outliers)}
    report = scan_inputs({k: v for k, v in roles.items() if v})
    if saved_ae is not None:
        spec, choice = _from_pretrained(req, saved_ae)
        resize, preprocessing = saved_ae.resize, saved_ae.preprocessor.kind
        if req.resize is not None and req.resize is not resize:
            raise UsageError(f"--pretrained {req.pretrained} was trained with --resize {resize.value}; training must use the same")
        patches = _patches_of(saved_ae, req)
    else:
        choice, spec, patches = _choose_network(req, report)
        resize, preprocessing = req.resize or Resize.SQUASH, req.preprocessing or Preprocessing.GCN
    tiles = _tiles_of(saved_ae, req, report.unlabeled) if saved_ae is not None else choose_tiles(req, report, choice.image_size, patches)
    if tiles.spec is not None and req.cache is not None:
        raise UsageError("--cache is not available for tiled training (large photos): leave it out, or give --tiles off to fit the images whole")
    defaults = train_defaults(spec, patches is not None, base.objective, labeled_anomalies=Role.ANOMALIES in report.roles)
    schedule = defaults.schedule
    builtin = not pretrain_only and _builtin_outliers(req, defaults.builtin_outliers)
    if builtin:  # known once the network is: scanned now, as a folder given with --outliers would have been
        report = with_role(report, Role.OUTLIERS, [*req.outliers, BUILTIN_OUTLIERS])
    synthetic = SyntheticConfig() if pretrain_only else _synthetic(req, defaults.synthetic)
    try:
        cfg = TrainConfig(
            objective=base.objective, nu=base.nu, eta=base.eta, optim=req.train.apply(schedule.train),
            anomaly_loss=req.anomaly_loss or AnomalyLoss.INVERSE, outlier_weight=req.outlier_weight, synthetic=synthetic,
            augment=() if pretrain_only else (defaults.augment if req.augment is None else req.augment),
            whiten=not pretrain_only and (defaults.whiten if req.whiten is None else req.whiten),
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pre_optim = req.pretrain.apply(schedule.pretrain)
    asked = req.pretrain.epochs is not None or schedule.pretrain_by_default
    wants_pretraining = saved_ae is None and pre_optim.epochs > 0 and asked
    files = _resolve_overlaps(report)
    warnings = input_warnings(report, choice, resize, tiled=tiles.spec is not None)
    if req.resize is not None and tiles.spec is not None:
        warnings.append(f"--resize {req.resize.value} is not used: tiles are cut from the images as they are, keeping their shape")
    if req.tile_scale is not None and tiles.spec is None:
        warnings.append(f"--tile-scale {req.tile_scale:g} is not used: the images are not tiled ({tiles.reason or 'they are not much larger than the input'})")
    if patches is not None and cfg.objective is not Objective.ONE_CLASS:
        raise UsageError("patch-level training has the one-class objective only (--patch-size 0 trains on whole images)")
    threshold_from = req.threshold_from or defaults.threshold
    if tiles.spec is not None:  # held-out samples would be tiles: the threshold is a quantile of image scores
        if req.threshold_from is ThresholdSource.SYNTHETIC:
            raise UsageError("--threshold-from synthetic is not available for tiled models (large photos), whose threshold is a quantile of whole-image scores: drop it, or give --tiles off")
        threshold_from = ThresholdSource.QUANTILE
    visits = (patches.samples_per_image if patches else 1) * (min(tiles.per_image, tiles.typical) if tiles.spec else 1)
    held_out = _held_out(files, threshold_from, cfg.objective)
    images = _trained_images(files, tiles, held_out)
    epochs_reason = ""
    if patches is not None and not pretrain_only and req.train.epochs is None and req.train.lr_milestones is None:  # small folders
        preset = cfg.optim.epochs
        cfg = replace(cfg, optim=with_min_steps(cfg.optim, images * visits, PATCH_MIN_STEPS))
        if cfg.optim.epochs > preset:
            epochs_reason = f"not {preset}: a small folder, and patch-level models train at least {PATCH_MIN_STEPS:,} steps"
    seconds = None
    if estimate:
        cost = step_cost(spec, device, cfg.optim.batch_size)
        n_unlabeled, n_all = len(files[Role.UNLABELED]) * visits, images * visits
        trained = trained_roles(files, tiled=tiles.spec is not None)
        located = sum(len(files[r]) for r in trained if r in (Role.ANOMALIES, Role.OUTLIERS)) - held_out[1]  # trained at their worst patch
        if cfg.synthetic.enabled:  # each normal sample brings `ratio` synthetic ones into the forward pass
            n_all += round((n_all - located * visits) * cfg.synthetic.ratio)
        if patches is not None:  # each labeled anomaly's worst patch is searched on its whole grid, in inference:
            searches = visits if cfg.augment else 1  # once an epoch (core/training.py), or at every visit of an augmented image
            n_all += round(located * searches * patches.spec.grid**2 / FORWARD_SHARE)
        if pretrain_only:
            seconds = training_seconds(cost, 0, n_unlabeled, 0, pre_optim.epochs)
        else:
            seconds = training_seconds(cost, n_all, n_unlabeled, cfg.optim.epochs, pre_optim.epochs if wants_pretraining else 0)
            if tiles.spec is not None and patches is not None:  # the training images scored whole for the threshold
                scored = sum(len(files[r]) for r in (Role.UNLABELED, Role.NORMALS, Role.ANOMALIES))
                seconds += cost.encoder / FORWARD_SHARE * scored * tiles.typical * patches.spec.grid**2
            elif patches is not None:  # c, the whitening and the training images' scores: each a pass over every grid patch
                passes = 2 + int(cfg.whiten)
                seconds += cost.encoder / FORWARD_SHARE * passes * images * patches.spec.grid**2
    return TrainPlan(
        request=req,
        scan=report,
        files=files,
        choice=choice,
        spec=spec,
        resize=resize,
        preprocessing=preprocessing,
        cfg=cfg,
        pretrain=pre_optim if wants_pretraining or pretrain_only else None,
        pretrained=saved_ae,
        patches=patches,
        tiles=tiles,
        anomalies_reason=defaults.reason if req.synthetic is None else "as given",
        threshold_from=threshold_from,
        held_out=held_out,
        device=device,
        estimate_seconds=seconds,
        warnings=warnings,
        builtin_outliers=builtin,
        epochs_reason=epochs_reason,
    )


def _trained_images(files: dict[Role, list[Path]], tiles: TilePlan, held_out: tuple[int, int]) -> int:
    """The images one epoch visits: every listed one but those held out for a synthetic threshold
    and its check (_held_out) and, for tiled models, the labeled anomalies (trained_roles)."""
    return sum(len(files[role]) for role in trained_roles(files, tiled=tiles.spec is not None)) - sum(held_out)


def _held_out(files: dict[Role, list[Path]], threshold_from: ThresholdSource, objective: Objective) -> tuple[int, int]:
    """How many unlabeled images and labeled anomalies a synthetic threshold keeps out of training
    (core/pipeline.train_model: one-class models only; core/calibration.holdout: anomalies only
    when unlabeled images are held out)."""
    if threshold_from is not ThresholdSource.SYNTHETIC or objective is not Objective.ONE_CLASS:
        return 0, 0
    normal = held_out_count(len(files[Role.UNLABELED]))
    return normal, held_out_anomaly_count(len(files.get(Role.ANOMALIES, []))) if normal else 0


def _builtin_outliers(req: TrainRequest, default: bool) -> bool:
    """Whether ssd's own outlier photos are used: as the user says, else the default for the data
    unless the user gave outlier images of their own."""
    if req.builtin_outliers is not None:
        return req.builtin_outliers
    return default and not req.outliers


def _synthetic(req: TrainRequest, default: SyntheticConfig) -> SyntheticConfig:
    """The user's generators and ratio where given, else the default for the data."""
    kinds = default.kinds if req.synthetic is None else req.synthetic
    ratio = default.ratio if req.synthetic_ratio is None else req.synthetic_ratio
    try:
        return SyntheticConfig(kinds=kinds, ratio=ratio, min_side=default.min_side, max_side=default.max_side)
    except ValueError as exc:
        raise UsageError(f"--synthetic: {exc}") from None


def _choose_network(req: TrainRequest, report: ScanReport) -> tuple[InputChoice, LeNetSpec, PatchView | None]:
    """Whole images: the network for the chosen input. Patches: the images at the side chosen from
    the data, phi the network for the patch side (--arch names that network)."""
    whole = choose_input(report, channels=req.channels, image_size=req.image_size)
    patch_size = req.patch_size if req.patch_size is not None else default_patch_size(whole.image_size, req.arch, req.objective)
    if patch_size == 0:
        choice = choose_input(report, arch=req.arch, channels=req.channels, image_size=req.image_size)
        if req.patch_size is None and default_patch_size(whole.image_size, req.arch) > 0:  # the default moved: say why
            why = f"whole images, not the patch model {whole.image_size} px inputs get by default: patch-level models are one-class only"
            choice = replace(choice, reasons=(*choice.reasons, why))
        return choice, _spec_or_usage(choice.arch, choice.channels, choice.image_size, req.decoder), None
    if patch_size > whole.image_size:
        raise UsageError(f"--patch-size {patch_size} is larger than the {whole.image_size} px input; give a smaller patch or --patch-size 0")
    arch = req.arch or network_for_size(patch_size)
    spec = _spec_or_usage(arch, whole.channels, patch_size, req.decoder)
    stride = req.patch_stride or max(1, patch_size // 2)
    try:
        patch = PatchSpec(whole.image_size, patch_size, stride)
    except ValueError as exc:
        raise UsageError(f"--patch-size/--patch-stride: {exc}") from None
    reasons = (*whole.reasons[:2], f"{arch}: the network for {patch_size} px patches")
    return InputChoice(arch, whole.channels, whole.image_size, reasons), spec, PatchView(_scored_by(patch, req), req.patches_per_image)


PATCH_FROM_SIZE = 128  # inputs of this side and more get patch-level models by default
PATCH_FRACTION = 4  # the default patch is a quarter of the input side


def default_patch_size(image_size: int, arch: str | None, objective: Objective = Objective.ONE_CLASS) -> int:
    """Patches of a quarter of the side for inputs of 128 px and more, unless --arch names a
    whole-image network or the objective is soft-boundary (patch models are one-class): small local
    defects are what large photos are mostly searched for, and on the measured surface photos
    patches beat whole images (docs/photos.md)."""
    wanted = arch is None and objective is Objective.ONE_CLASS and image_size >= PATCH_FROM_SIZE
    return image_size // PATCH_FRACTION if wanted else 0


def _patches_of(saved: SavedAutoencoder, req: TrainRequest) -> PatchView | None:
    """A --pretrained autoencoder trained on patches fixes the patch grid too."""
    if saved.patch is None:
        if req.patch_size:
            raise UsageError(f"--pretrained {req.pretrained} was trained on whole images; it cannot start a patch-level model")
        return None
    if req.patch_size and req.patch_size != saved.patch.patch_size:
        raise UsageError(f"--pretrained {req.pretrained} was trained on {saved.patch.patch_size} px patches; --patch-size must match")
    return PatchView(_scored_by(saved.patch, req), req.patches_per_image)


def _scored_by(patch: PatchSpec, req: TrainRequest) -> PatchSpec:
    """The grid with its image score: the mean of --patch-top-k patches, by default the
    (patch / stride)^2 patches that hold any one point (docs/photos.md measured it against the max)."""
    k = req.patch_top_k if req.patch_top_k is not None else max(1, patch.patch_size // patch.stride) ** 2
    try:
        return replace(patch, top_k=k)
    except ValueError as exc:
        raise UsageError(f"--patch-top-k: {exc}") from None


TILE_FACTOR = 2  # auto tiles images whose median short side, at the tile scale, exceeds this many input sides
FORWARD_SHARE = 3  # a training step costs about this many forward passes (for the estimate)


def choose_tiles(req: TrainRequest, report: ScanReport, side: int, patches: PatchView | None) -> TilePlan:
    """Tiles of `side` px (the patch model's image, so the model inside a tile is the usual one) when
    --tiles on, or with --tiles auto when the sampled unlabeled images' median short side, scaled by
    --tile-scale, is more than TILE_FACTOR times the side. Up to 2x, squashing to the input loses at
    most half the resolution, about the patch grid's own granularity, while tiles would cost at
    least 2 x 2 (overlapping) tiles' work per image; beyond it, a defect of a few pixels shrinks
    below the size any patch can see. The tiles overlap by one patch (TileSpec)."""
    scale = 1.0 if req.tile_scale is None else req.tile_scale
    scan = report.unlabeled
    short = scan.short_side
    large = short is not None and short.median * scale > TILE_FACTOR * side
    seen = f"median short side {short.median:g} px" if short is not None else ""
    if req.tiles is Tiling.OFF or (req.tiles is Tiling.AUTO and not large):
        return TilePlan(None, reason=f"--tiles off: the images ({seen}) are fitted to {side} px" if large else "")
    if patches is None:
        if req.tiles is Tiling.ON:
            raise UsageError("--tiles on needs a patch-level model inside each tile, but this one sees whole images (--patch-size 0, or --arch without --patch-size)")
        return TilePlan(None, reason=f"not tiled, as the model sees whole images: the images ({seen}) are fitted to {side} px")
    tile = TileSpec(side, scale, patches.spec.patch_size)
    at = "native resolution" if scale == 1 else f"scale {scale:g}"
    if req.tiles is Tiling.ON or short is None:
        why = "--tiles on"
    else:
        shrink = short.median / side
        why = (
            f"{seen}{'' if scale == 1 else f' x {scale:g}'} is over {TILE_FACTOR}x the {side} px input: fitted to it, details "
            f"would shrink {shrink:.1f}x (an 8 px defect to {8 / shrink:.1f} px)"
        )
    return TilePlan(tile, req.tiles_per_image, _typical_tiles(tile, scan), f"{why}; tiles keep them at {at}")


def _typical_tiles(tile: TileSpec, scan: RoleScan) -> int:
    """The tiles of an image of the sample's median width and height (1 without a readable sample)."""
    if scan.width is None or scan.height is None:
        return 1
    w, h = tile.scaled((round(scan.width.median), round(scan.height.median)))
    return len(tile.boxes(h, w))


def _tiles_of(saved: SavedAutoencoder, req: TrainRequest, scan: RoleScan) -> TilePlan:
    """A --pretrained autoencoder trained on tiles fixes the tiles too; one trained without, their absence."""
    if saved.tile is None:
        if req.tiles is Tiling.ON or req.tile_scale is not None:
            raise UsageError(f"--pretrained {req.pretrained} was trained without tiles; --tiles on and --tile-scale need one trained on tiles")
        return TilePlan(None)
    if req.tiles is Tiling.OFF:
        raise UsageError(f"--pretrained {req.pretrained} was trained on tiles; --tiles off needs one trained without")
    if req.tile_scale is not None and req.tile_scale != saved.tile.scale:
        raise UsageError(f"--pretrained {req.pretrained} was trained on tiles at scale {saved.tile.scale:g}; --tile-scale must match")
    return TilePlan(saved.tile, req.tiles_per_image, _typical_tiles(saved.tile, scan), f"from --pretrained {req.pretrained}")


def _spec_or_usage(arch: str, channels: int | None, image_size: int | None, decoder: str | None = None) -> LeNetSpec:
    try:
        return get_spec(arch, channels, image_size, decoder)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _from_pretrained(req: TrainRequest, saved: SavedAutoencoder) -> tuple[LeNetSpec, InputChoice]:
    """A --pretrained autoencoder fixes the network, its input and its preprocessing."""
    spec, side = saved.spec, saved.input_size
    asked = (req.arch or spec.name, req.channels or spec.channels, req.image_size or side)
    if asked != (spec.name, spec.channels, side):
        raise UsageError(
            f"--pretrained {req.pretrained} is a {spec.name} {spec.channels}x{side}x{side} network, "
            "which does not match --arch/--channels/--image-size"
        )
    if req.decoder is not None and req.decoder != spec.decoder:
        raise UsageError(f"--pretrained {req.pretrained} was pretrained with the {spec.decoder} decoder, not {req.decoder}")
    if req.preprocessing is not None and req.preprocessing is not saved.preprocessor.kind:
        raise UsageError(f"--pretrained {req.pretrained} was trained with --preprocessing {saved.preprocessor.kind.value}; training must use the same")
    reason = f"from --pretrained {req.pretrained}"
    return spec, InputChoice(spec.name, spec.channels, side, (reason,))


def _resolve_overlaps(report: ScanReport) -> dict[Role, list[Path]]:
    """Each file counts once (scan.input_warnings says so to the user): a labeled file also found
    among the unlabeled counts as labeled, since its label is the stronger information; a file
    labeled both normal and anomalous contradicts itself and counts as unlabeled only."""
    files = {role: list(report.roles[role].files) if role in report.roles else [] for role in Role}
    if not report.overlaps:
        return files
    key = {role: {p.resolve(): p for p in paths} for role, paths in files.items()}
    both = key[Role.NORMALS].keys() & key[Role.ANOMALIES].keys()
    labeled = (key[Role.NORMALS].keys() | key[Role.ANOMALIES].keys()) - both
    files[Role.NORMALS] = [p for k, p in key[Role.NORMALS].items() if k not in both]
    files[Role.ANOMALIES] = [p for k, p in key[Role.ANOMALIES].items() if k not in both]
    files[Role.UNLABELED] = [p for k, p in key[Role.UNLABELED].items() if k not in labeled]
    files[Role.UNLABELED] += [key[Role.NORMALS][k] for k in sorted(both - key[Role.UNLABELED].keys())]
    if not files[Role.UNLABELED]:
        n = len(key[Role.UNLABELED])
        raise InputError(
            f"--unlabeled: all {n} file(s) are also given as labeled (--normals/--anomalies), and a file counts once, as labeled; "
            "no unlabeled image is left to train on"
        )
    return files


def run_training(plan: TrainPlan, *, on_epoch: StageCallback | None = None, workers: int | None = None) -> TrainOutcome:
    """Decode the training set, pretrain (unless a pretrained file was given), fix c, run Algorithm 1.

    Under torchrun every rank runs this together: each computes its share of every mini-batch, and
    they all end with the same model (rank 0 writes it)."""
    with distributed.data_parallel() as ranks:
        outcome = _run_training(plan, on_epoch, workers)
    outcome.model.training["world_size"] = ranks.world_size
    return outcome


def _run_training(plan: TrainPlan, on_epoch: StageCallback | None, workers: int | None) -> TrainOutcome:
    from ssd_cli.core import pipeline

    spec, dev = plan.spec, plan.device
    decoded = _decode(plan, workers)
    pre = plan.pretrained.preprocessor if plan.pretrained else Preprocessor.fit(plan.preprocessing, decoded.chunks(Role.UNLABELED))
    x, y = decoded.training_set(pre, dev)
    ae = plan.pretrained.autoencoder().to(dev) if plan.pretrained else None
    pretrain_seconds = 0.0
    if ae is None and plan.pretrain is not None:
        start = time.perf_counter()
        ae, _ = pipeline.pretrain(
            spec, x[y == Role.UNLABELED.label], plan.pretrain, seed=plan.request.seed, on_epoch=_stage(on_epoch, "pretraining"), patches=plan.patches
        )
        pretrain_seconds = time.perf_counter() - start
    summary = {
        **_tile_record(plan, decoded),
        **pretraining_summary(plan.pretrain, pretrain_seconds, str(plan.request.pretrained) if plan.request.pretrained else None),
        "input_choice": list(plan.choice.reasons),
        "resize": plan.resize.value,
        "builtin_outliers": plan.builtin_outliers,
    }
    model = pipeline.train_model(
        spec, x, y, plan.cfg, pre, seed=plan.request.seed, autoencoder=ae, threshold_quantile=plan.request.threshold_quantile,
        threshold_source=plan.threshold_from, resize=plan.resize, patches=plan.patches, tiles=plan.tiles.spec,
        on_epoch=_stage(on_epoch, f"training ({plan.cfg.objective.value})"), summary=summary,
        score_images=_scored_whole(plan, workers) if plan.tiles.spec is not None else None,
    )  # fmt: skip
    return TrainOutcome(model, decoded.skipped)


def _scored_whole(plan: TrainPlan, workers: int | None) -> Callable[[SavedModel], tuple[torch.Tensor, torch.Tensor]]:
    """For a tiled model: its training images scored whole, every tile, as `ssd score` scores them,
    with their role labels. The threshold is a quantile of image scores, and training kept only a
    few tiles of each image, whose worst would understate an image's score. The labeled anomalies,
    not trained on (TrainPlan.trained_roles), are scored too, so the summary can say how the
    threshold separates them."""
    from ssd_cli.core.scoring import Scorer
    from ssd_cli.data.score_files import score_files

    def scores(model: SavedModel) -> tuple[torch.Tensor, torch.Tensor]:
        scorer, out, labels = Scorer(model, plan.device), [torch.zeros(0)], [torch.zeros(0, dtype=torch.int8)]
        for role in (Role.UNLABELED, Role.NORMALS, Role.ANOMALIES):
            for batch in score_files(scorer, plan.files[role], workers=workers):
                out.append(batch.scores)
                labels.append(torch.full((len(batch.scores),), role.label, dtype=torch.int8))
        return torch.cat(out), torch.cat(labels)

    return scores


def run_pretraining(plan: TrainPlan, *, on_epoch: StageCallback | None = None, workers: int | None = None) -> tuple[SavedAutoencoder, list[Skipped]]:
    """`ssd pretrain`: the autoencoder alone, on the unlabeled images (together under torchrun)."""
    with distributed.data_parallel() as ranks:
        saved, skipped = _run_pretraining(plan, on_epoch, workers)
    saved.training["world_size"] = ranks.world_size
    return saved, skipped


def _run_pretraining(plan: TrainPlan, on_epoch: StageCallback | None, workers: int | None) -> tuple[SavedAutoencoder, list[Skipped]]:
    from ssd_cli.core import pipeline

    assert plan.pretrain is not None
    decoded = _decode(plan, workers)
    pre = Preprocessor.fit(plan.preprocessing, decoded.chunks(Role.UNLABELED))
    x, _ = decoded.training_set(pre, plan.device)
    start = time.perf_counter()
    ae, losses = pipeline.pretrain(plan.spec, x, plan.pretrain, seed=plan.request.seed, on_epoch=_stage(on_epoch, "pretraining"), patches=plan.patches)
    training = pretraining_record(len(x), plan.pretrain, losses, time.perf_counter() - start, plan.request.seed, plan.device)
    training = {**training, "input_choice": list(plan.choice.reasons), **_tile_record(plan, decoded)}
    patch = plan.patches.spec if plan.patches else None
    return SavedAutoencoder(plan.spec, pre, ae.state_dict(), training, resize=plan.resize, patch=patch, tile=plan.tiles.spec), decoded.skipped


def _decode(plan: TrainPlan, workers: int | None) -> DecodedSet:
    """The trained roles' images at the network's input: tiles of large photos, or whole images
    (into the disk cache with --cache)."""
    roles = {role: plan.files[role] for role in plan.trained_roles}
    if plan.tiles.spec is not None:
        return decode_tiles(roles, plan.tiles.spec, plan.spec.channels, plan.tiles.per_image, plan.request.seed, workers)
    return decode_images(roles, plan.input_size, plan.spec.channels, plan.resize, cache=plan.request.cache, workers=workers)


def _tile_record(plan: TrainPlan, decoded: DecodedSet) -> dict:
    """What the training record says of the tiles (nothing for a model that is not tiled)."""
    return tile_record(decoded.photos, decoded.counts, plan.tiles.per_image) if plan.tiles.spec is not None else {}


def _stage(on_epoch: StageCallback | None, name: str) -> Callable[[EpochInfo], None] | None:
    if on_epoch is None:
        return None
    return lambda info: on_epoch(name, info)
