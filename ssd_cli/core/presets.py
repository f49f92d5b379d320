"""Training settings per network: the one place every command (train, pretrain, benchmark) reads them.

The paper's networks get the paper's schedule (Appendix C) and the original Deep SVDD code's
autoencoder pretraining, where the paper is silent: 150 epochs with weight decay 0.5e-3 for the
grayscale networks, 350 epochs with 0.5e-6 for CIFAR-10. The native-resolution networks get shorter
schedules chosen by measurement so that a default run on a few hundred photos fits a CPU
(docs/method.md, "Networks for native resolution").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ssd_cli.core.config import (
    Objective,
    PAPER_PRETRAIN_COLOUR,
    ThresholdSource,
    PAPER_PRETRAIN_GRAYSCALE,
    PAPER_TRAIN,
    LOCAL_KINDS,
    OptimConfig,
    SyntheticConfig,
)
from ssd_cli.core.nets import LeNetSpec, network_for_size


@dataclass(frozen=True)
class Schedule:
    """Adam settings for the two phases: autoencoder pretraining, then Deep SVDD training."""

    train: OptimConfig
    pretrain: OptimConfig
    pretrain_by_default: bool = True  # False: `ssd train` pretrains only when --pretrain-epochs asks


_NATIVE = Schedule(
    train=OptimConfig(epochs=40, lr=1e-4, lr_milestones=(27,), weight_decay=1e-6),
    pretrain=OptimConfig(epochs=40, lr=1e-4, lr_milestones=(27,), weight_decay=0.5e-3),
)

SCHEDULES: dict[str, Schedule] = {
    "mnist": Schedule(PAPER_TRAIN, PAPER_PRETRAIN_GRAYSCALE),
    "fashion-mnist": Schedule(PAPER_TRAIN, PAPER_PRETRAIN_GRAYSCALE),
    "cifar10": Schedule(PAPER_TRAIN, PAPER_PRETRAIN_COLOUR),
    "lenet-64": _NATIVE,
    "lenet-128": _NATIVE,
    "lenet-256": _NATIVE,
}

# Patch-level models (--patch-size) train on crops of native-resolution photos whatever their phi,
# against synthetic defects. Measured on surface-defects-x3 (docs/photos.md): 200-image batches at
# lr 1e-4 gave phi too few steps to learn the defects at all (0.73 AUROC); batches of 32 at lr 1e-3
# for 20 epochs gave 0.85, 40 epochs 0.80 (fitting the synthetic kinds), and autoencoder
# pretraining before it 0.83: it costs as much again and is left to --pretrain-epochs. Their scores
# are Mahalanobis distances of the whitened phi (core/whitening.py): surface-defects-x3 0.86 -> 0.94
# with the same networks, brick-cracks 0.91 / 0.88 -> 0.93 / 0.90, the other sets within +-0.02.
PATCH_SCHEDULE = Schedule(
    train=OptimConfig(epochs=20, lr=1e-3, lr_milestones=(14,), weight_decay=1e-6, batch_size=32),
    pretrain=_NATIVE.pretrain,
    pretrain_by_default=False,
)


# ... and at least this many optimiser steps: phi learns from steps, not epochs. The default above
# gives about 1,180 on 500 photos (470 trained images, 4 crops each, batches of 32); 100 photos give
# 14 steps an epoch, and 20 epochs of them scored brick-cracks 0.704 where 100 epochs (1,400 steps)
# scored 0.923, against 0.931 with 500 photos; histology-defects 0.561 -> 0.690 with this rule (0.705
# with 500; seed 0, docs/photos.md, "Small folders").
PATCH_MIN_STEPS = 1_150


def with_min_steps(optim: OptimConfig, samples_per_epoch: int, min_steps: int) -> OptimConfig:
    """The preset's epochs, or more where samples_per_epoch (batches of optim.batch_size) would give
    fewer than min_steps optimiser steps; the learning-rate drops keep their relative place."""
    per_epoch = max(1, math.ceil(samples_per_epoch / optim.batch_size))
    return with_epochs(optim, max(optim.epochs, math.ceil(min_steps / per_epoch)))


def schedule_for(arch: str) -> Schedule:
    """The default schedule of a registered network (every registered network has one: tested)."""
    try:
        return SCHEDULES[arch]
    except KeyError:
        raise ValueError(f"no training schedule for network '{arch}'; choose one of: {', '.join(sorted(SCHEDULES))}") from None


def schedule_for_spec(spec: LeNetSpec) -> Schedule:
    """The schedule of the network's name, else of the registered network made for its input size
    (a network loaded from a file need not be registered)."""
    return SCHEDULES.get(spec.name) or SCHEDULES[network_for_size(spec.image_size)]


def with_epochs(optim: OptimConfig, epochs: int | None) -> OptimConfig:
    """`epochs` instead of the preset's, with each learning-rate drop kept at its relative place.

    150 epochs dropping at 50 become 30 dropping at 10; a drop never lands on epoch 0.
    """
    if epochs is None or epochs == optim.epochs:
        return optim
    milestones = tuple(sorted({max(1, round(m * epochs / optim.epochs)) for m in optim.lr_milestones})) if optim.epochs else ()
    return replace(optim, epochs=epochs, lr_milestones=milestones)


def customised(
    optim: OptimConfig,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    lr_milestones: tuple[int, ...] | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
) -> OptimConfig:
    """A preset with the user's overrides; None keeps the preset's value (milestones move with epochs)."""
    out = with_epochs(optim, epochs)
    changes = {"lr": lr, "lr_milestones": lr_milestones, "weight_decay": weight_decay, "batch_size": batch_size}
    return replace(out, **{k: v for k, v in changes.items() if v is not None})


# Whole-image one-class models of small images (the paper's 28-32 px networks: digits, small
# photos of objects) train from random weights against turned copies of their own images (synthetic
# `rotate`), 100 epochs of 64-image batches at lr 1e-3. Measured on colour-objects (CIFAR-10
# automobiles, docs/photos.md): the paper's schedule with autoencoder pretraining gave 0.656 AUROC in
# 8 min 46 s; this 0.81 / 0.80 (two seeds) in 1 min 10 s, and 0.81 / 0.79 without labeled anomalies,
# where the same schedule without turned copies gave 0.68. One-class CIFAR-10 (not tuned on): 0.70.
UPRIGHT_MAX_SIZE = 32
UPRIGHT_TRAIN = OptimConfig(epochs=100, lr=1e-3, lr_milestones=(70,), weight_decay=1e-6, batch_size=64)
# Colour ones (photos of objects) also see their training images mirrored at random: colour-objects
# 0.820 / 0.827 against 0.809 / 0.804 (seeds 0 / 1); one-class CIFAR-10, not tuned on, with 20
# labeled anomalies 0.739 / 0.736 against 0.719 / 0.718, without 0.713 / 0.713 against 0.705 / 0.709.
# Grayscale ones do not: a mirrored digit is another shape, and on MNIST digits 0, 1, 4, 8 it gained
# nothing on average (0.956 both ways, per digit -0.009 to +0.014; docs/photos.md).
MIRRORED_PHOTOS = ("hflip",)
# Colour ones also keep ssd's built-in outlier photos (data/outliers.py, 416 crops) away from c:
# colour-objects 0.884 / 0.895 with labels and 0.845 / 0.857 without, against 0.820 / 0.827 and
# 0.813 / 0.794; one-class CIFAR-10, not tuned on, 0.766 / 0.758 without labels against 0.713 /
# 0.713 (seeds 0 / 1; 208 crops gave 0.756 / 0.741, and 0.759 / 0.761 with 20 labeled anomalies
# against 0.739 / 0.736; docs/photos.md, "Outlier images").
# Grayscale ones given labeled anomalies train on those alone, without turned copies: on MNIST one-class
# (20 labeled anomalies of the next digit, all ten digits, not tuned on) the mean is the same (0.963 /
# 0.955 against 0.960 / 0.954, seeds 0 / 1; round digits 0 and 1 gain, 3, 4 and 7 lose about 0.01),
# the README's sample data (zeros, 45 labeled anomalies) scores 1.000 / 0.999 / 0.999 against 0.982 /
# 0.983 / 0.985 (seeds 0-2), and training takes about two thirds of the time; a zero turned by a half
# turn is a zero. Without labeled anomalies the turned copies are the only anomalies phi sees.


@dataclass(frozen=True)
class TrainDefaults:
    """What `ssd train` gives a model unless the user says otherwise, by the kind of model: its
    schedule, synthetic anomalies, where the threshold comes from, why, and the augmentation of its
    training images. (The anomaly term's loss is the paper's inverse distance for every kind: hsc
    measured no better, docs/photos.md.)"""

    schedule: Schedule
    synthetic: SyntheticConfig
    threshold: ThresholdSource
    reason: str
    augment: tuple[str, ...] = ()
    builtin_outliers: bool = False  # ssd's own outlier photos as anomalies, unless the user gives outliers
    whiten: bool = False  # score Mahalanobis distances (core/whitening.py)


def train_defaults(spec: LeNetSpec, patches: bool, objective: Objective, labeled_anomalies: bool) -> TrainDefaults:
    """Patch-level models (photos of 128 px and more, searched for local defects) train against
    synthetic defects of every local kind and score Mahalanobis distances; whole-image one-class
    models of small images against turned copies, colour ones (photos) with their images mirrored
    at random and ssd's outlier photos as anomalies, grayscale ones (digits) only when no labeled
    anomalies are given; the rest (larger whole images, the soft-boundary objective) keep the
    network's schedule and the paper's objective, where nothing better was measured (docs/photos.md)."""
    network = schedule_for_spec(spec)
    one_class = objective is Objective.ONE_CLASS
    if one_class and patches:
        reason = "patch-level model: local defects are searched for"
        return TrainDefaults(PATCH_SCHEDULE, SyntheticConfig(kinds=LOCAL_KINDS), ThresholdSource.SYNTHETIC, reason, whiten=True)
    if one_class and spec.image_size <= UPRIGHT_MAX_SIZE:
        upright = Schedule(UPRIGHT_TRAIN, network.pretrain, pretrain_by_default=False)
        photos = spec.channels == 3
        if not photos and labeled_anomalies:
            reason = f"whole-image grayscale model of images up to {UPRIGHT_MAX_SIZE} px: the labeled anomalies, no turned copies"
            return TrainDefaults(upright, SyntheticConfig(), ThresholdSource.QUANTILE, reason)
        reason = f"whole-image model of images up to {UPRIGHT_MAX_SIZE} px: turned copies are anomalies"
        return TrainDefaults(upright, SyntheticConfig(kinds=("rotate",)), ThresholdSource.QUANTILE, reason, MIRRORED_PHOTOS if photos else (), photos)
    reason = "whole-image model: the paper's objective" if one_class else "soft-boundary: the paper's objective"
    return TrainDefaults(network, SyntheticConfig(), ThresholdSource.QUANTILE, reason)
