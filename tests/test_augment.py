"""Augmentation of training images (core/augment.py): what each kind does to an image, seeded, and
how it enters training, the plan and the model file."""

from __future__ import annotations

import pytest
import torch

from ssd_cli.core.augment import AUGMENTATIONS, augment
from ssd_cli.core.config import AUGMENT_KINDS, Objective, OptimConfig, TrainConfig, parse_names
from ssd_cli.core.nets import Encoder, LeNetSpec
from ssd_cli.core.presets import train_defaults
from ssd_cli.core.training import sample_generator, seeded_init, train_deep_svdd

TINY = LeNetSpec("tiny", channels=3, image_size=16, conv_filters=(4, 8), dense_units=(8,))


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_hflip_mirrors_about_half_of_the_images_and_leaves_the_rest() -> None:
    x = images()
    out = augment(x, ("hflip",), sample_generator(0))
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((mirrored ^ kept).all())  # each image is one or the other, never anything else
    assert 16 <= int(mirrored.sum()) <= 48
    assert torch.equal(x, images())  # the input is not changed in place


def test_augmentation_is_seeded_and_none_is_the_identity() -> None:
    x = images()
    a, b = (augment(x, ("hflip",), sample_generator(5)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, augment(x, ("hflip",), sample_generator(6)))
    assert augment(x, (), sample_generator(5)) is x


def test_kinds_are_validated_and_parsed() -> None:
    assert tuple(AUGMENTATIONS) == AUGMENT_KINDS
    assert parse_names(" HFlip ") == ("hflip",) and parse_names("none") == () and parse_names("") == ()
    with pytest.raises(ValueError, match="unknown augmentation.*choose from hflip"):
        TrainConfig(augment=("vflip",))
    with pytest.raises(ValueError, match="twice"):
        TrainConfig(augment=("hflip", "hflip"))
    assert TrainConfig(augment=("hflip",)).to_dict()["augment"] == ["hflip"]


def test_training_with_augmentation_is_seeded_and_differs_from_without() -> None:
    x, y = images(24), torch.zeros(24, dtype=torch.int8)

    def run(kinds: tuple[str, ...], seed: int) -> list[float]:
        cfg = TrainConfig(augment=kinds, optim=OptimConfig(epochs=2, lr=1e-3, lr_milestones=(), batch_size=8))
        return train_deep_svdd(seeded_init(lambda: Encoder(TINY), 0), x, y, cfg, seed=seed).losses

    assert run(("hflip",), 1) == run(("hflip",), 1)
    assert run(("hflip",), 1) != run((), 1)


@pytest.mark.parametrize(
    ("channels", "size", "patches", "objective", "expected", "outliers"),
    [
        (3, 32, False, Objective.ONE_CLASS, ("hflip",), True),  # small colour photos of objects
        (1, 28, False, Objective.ONE_CLASS, (), False),  # digits: a mirrored digit is another shape
        (3, 32, True, Objective.ONE_CLASS, (), False),  # patch-level models: measured no gain
        (3, 64, False, Objective.ONE_CLASS, (), False),  # larger whole images: not measured
        (3, 32, False, Objective.SOFT_BOUNDARY, (), False),  # the paper's objective and nothing else
    ],
)
def test_default_augmentation_and_outlier_photos_by_kind_of_model(
    channels: int, size: int, patches: bool, objective: Objective, expected: tuple[str, ...], outliers: bool
) -> None:
    spec = LeNetSpec("cifar10" if size == 32 else "lenet-64", channels=channels, image_size=size, conv_filters=(4, 8), dense_units=(8,))
    for labeled_anomalies in (False, True):  # labeled anomalies change neither
        defaults = train_defaults(spec, patches, objective, labeled_anomalies)
        assert defaults.augment == expected and defaults.builtin_outliers is outliers
