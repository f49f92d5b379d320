"""Settings as enums and dataclasses; defaults are the paper's (Appendix A and C)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum

# The synthetic anomalies core/synthetic.py makes (--synthetic), in the order "all" lists them: local
# defects inside a box (the kinds patch-level models and the synthetic threshold use), then the whole
# image turned (for whole-image models of photos taken upright).
LOCAL_KINDS = ("cutpaste", "scar", "confetti", "perlin")
SYNTHETIC_KINDS = (*LOCAL_KINDS, "rotate")
# The augmentations core/augment.py applies to real training images (--augment).
AUGMENT_KINDS = ("hflip",)


def check_names(names: tuple[str, ...], known: tuple[str, ...], what: str, plural: str) -> None:
    """A ValueError naming the unknown or repeated entries of a list of --synthetic / --augment names."""
    unknown = [k for k in names if k not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)} or none")
    if len(set(names)) != len(names):
        raise ValueError(f"{plural} are listed twice: {', '.join(names)}")


@dataclass(frozen=True)
class SyntheticConfig:
    """Which generators make the synthetic anomalies, how many per normal sample in a mini-batch,
    and the defect box side as a fraction of what phi sees (the patch, or the whole image)."""

    kinds: tuple[str, ...] = ()
    ratio: float = 0.5  # synthetic anomalies per normal sample of the mini-batch
    min_side: float = 0.1
    max_side: float = 0.5

    def __post_init__(self) -> None:
        check_names(self.kinds, SYNTHETIC_KINDS, "synthetic anomaly kind(s)", "synthetic anomaly kinds")
        if not (math.isfinite(self.ratio) and 0 < self.ratio <= 4):
            raise ValueError(f"the synthetic ratio must be in (0, 4], got {self.ratio}")
        if not 0 < self.min_side <= self.max_side <= 1:
            raise ValueError(f"synthetic defect sides must satisfy 0 < min <= max <= 1, got {self.min_side}, {self.max_side}")

    @property
    def enabled(self) -> bool:
        return bool(self.kinds)

    def to_dict(self) -> dict:
        return {"kinds": list(self.kinds), "ratio": self.ratio, "min_side": self.min_side, "max_side": self.max_side}


def parse_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names as given to --synthetic or --augment: 'a, B' -> ('a', 'b');
    'none' or '' -> ()."""
    names = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    return () if names == ("none",) else names


def parse_kinds(text: str) -> tuple[str, ...]:
    """'cutpaste,scar' -> ('cutpaste', 'scar'); 'none' or '' -> (); 'all' -> every local defect kind
    (not rotate, which turns the whole image and is asked for by name)."""
    names = parse_names(text)
    return LOCAL_KINDS if names == ("all",) else names


class Objective(str, Enum):
    """The two Deep SVDD objectives; with labeled data they become (3) and (4) of the paper."""

    ONE_CLASS = "one-class"
    SOFT_BOUNDARY = "soft-boundary"


class AnomalyLoss(str, Enum):
    """What a labeled anomaly pays in the one-class objective for its squared distance d to c."""

    INVERSE = "inverse"  # the paper's (d + eps)^-1
    HSC = "hsc"  # -log(1 - exp(-d)), the hypersphere classifier's: bounded push, strong near c


class ThresholdSource(str, Enum):
    """Where a one-class model's stored threshold comes from."""

    QUANTILE = "quantile"  # a quantile of the training images' scores
    SYNTHETIC = "synthetic"  # F1-best between held-out images and synthetic anomalies made from them


class Resize(str, Enum):
    """How an image of another shape becomes the square network input; stored in every model file."""

    SQUASH = "squash"  # resize to size x size, ignoring the aspect ratio: keeps every pixel of content
    CROP = "crop"  # resize the short side to size, cut the centre square: keeps the aspect ratio, loses borders
    PAD = "pad"  # resize the long side to size, pad the rest with black: keeps everything and the aspect ratio


class Tiling(str, Enum):
    """Whether large photos are cut into tiles at native resolution (core/tiles.py) or fitted whole."""

    AUTO = "auto"  # tiles when the images are much larger than the input (engine.choose_tiles)
    ON = "on"
    OFF = "off"


class Preprocessing(str, Enum):
    """How raw pixels become network input; stored in every model file so scoring repeats it."""

    SCALE = "scale"  # pixels / 255 -> [0, 1]
    GCN = "gcn"  # global contrast normalisation (l1), then min-max scaling fitted on training data


# Upper bounds of the settings. Past them nothing trains, and torch's float32 arithmetic overflows
# before the run could even diverge (an lr of 1e38 or a weight decay of 1e300 made Adam raise).
MAX_LR = 1.0  # Adam moves every weight by about lr per step
MAX_WEIGHT_DECAY = 1.0  # an L2 penalty that outweighs the loss itself
MAX_ETA = 1e6  # a labeled sample (or an outlier) weighing a million unlabeled ones


@dataclass(frozen=True)
class OptimConfig:
    """Adam with a step learning-rate schedule (the paper's two phases by default)."""

    epochs: int = 150
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = (50,)  # lr is multiplied by lr_gamma at each milestone epoch
    lr_gamma: float = 0.1
    weight_decay: float = 1e-6
    batch_size: int = 200

    def __post_init__(self) -> None:
        # `not (x > 0)` rather than `x <= 0`: NaN fails every comparison, and must fail here too
        if not 0 < self.lr <= MAX_LR:
            raise ValueError(f"lr (learning rate) must be a number in (0, {MAX_LR:g}], got {self.lr}")
        if not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise ValueError(f"weight decay must be a number in [0, {MAX_WEIGHT_DECAY:g}], got {self.weight_decay}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 or more, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2 (batch normalisation cannot train on one image), got {self.batch_size}")
        if any(m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr milestones are epochs, 1 or more, got {list(self.lr_milestones)}")
        if not (math.isfinite(self.lr_gamma) and self.lr_gamma > 0):
            raise ValueError(f"the learning-rate factor must be a finite number > 0, got {self.lr_gamma}")

    def to_dict(self) -> dict:
        """As JSON holds it (the milestones a list), for training records."""
        return asdict(self) | {"lr_milestones": list(self.lr_milestones)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one SS-DSVDD training run besides the data."""

    objective: Objective = Objective.ONE_CLASS
    nu: float = 0.1  # soft-boundary trade-off, in (0, 1]
    eta: float = 1.0  # weight of the labeled term
    eps: float = 1e-6  # added to the distance in the inverse for labeled anomalies (paper footnote 1)
    center_eps: float = 0.1  # |c_k| below this is pushed to +-center_eps (Ruff et al. 2018)
    optim: OptimConfig = field(default_factory=OptimConfig)
    anomaly_loss: AnomalyLoss = AnomalyLoss.INVERSE  # one-class only; soft-boundary keeps its hinge
    outlier_weight: float = 1.0  # weight of outlier images (--outliers) instead of eta
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # no kinds: none made
    augment: tuple[str, ...] = ()  # augmentations of the real training images (core/augment.py); () none
    whiten: bool = False  # one-class: score the Mahalanobis distance, phi whitened after training (core/whitening.py)

    def __post_init__(self) -> None:
        if not 0 < self.nu <= 1:  # False for NaN too
            raise ValueError(f"nu must be in (0, 1], got {self.nu}")
        if not 0 < self.eta <= MAX_ETA:
            raise ValueError(f"eta must be a number in (0, {MAX_ETA:g}], got {self.eta}")
        if not 0 < self.outlier_weight <= MAX_ETA:
            raise ValueError(f"the outlier weight must be a number in (0, {MAX_ETA:g}], got {self.outlier_weight}")
        if self.anomaly_loss is not AnomalyLoss.INVERSE and self.objective is not Objective.ONE_CLASS:
            raise ValueError(f"the {self.anomaly_loss.value} anomaly loss is for the one-class objective; soft-boundary has its own hinge")
        check_names(self.augment, AUGMENT_KINDS, "augmentation(s)", "augmentations")
        if self.whiten and self.objective is not Objective.ONE_CLASS:
            raise ValueError("whitened scores are for the one-class objective; soft-boundary's radius R is a distance to c")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = list(self.augment)
        d["objective"] = self.objective.value
        d["anomaly_loss"] = self.anomaly_loss.value
        d["synthetic"] = self.synthetic.to_dict()
        return d


# Appendix C: Adam, 1e-4 for 50 epochs then 1e-5 for 100, batch 200, weight decay 1e-6.
PAPER_TRAIN = OptimConfig()

# The paper is silent on autoencoder pretraining; these follow the original Deep SVDD code.
PAPER_PRETRAIN_GRAYSCALE = OptimConfig(epochs=150, lr=1e-4, lr_milestones=(50,), weight_decay=0.5e-3)
PAPER_PRETRAIN_COLOUR = OptimConfig(epochs=350, lr=1e-4, lr_milestones=(250,), weight_decay=0.5e-6)
