"""The benchmark's settings: the paper's preset (Appendix C, and the original Deep SVDD code where
the paper is silent) and a quick one, with the epochs a user may override."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from ssd_cli.core.config import OptimConfig, Preprocessing
from ssd_cli.core.nets import LeNetSpec
from ssd_cli.core.presets import schedule_for
from ssd_cli.core.presets import with_epochs as scale_epochs

PAPER_NUS = (0.01, 0.1)


class Preset(str, Enum):
    PAPER = "paper"  # Appendix C training; the Deep SVDD code's pretraining epochs (the paper gives none); 10 seeds
    QUICK = "quick"  # few epochs, 1 seed: minutes on a 2-core CPU for MNIST / Fashion-MNIST


@dataclass(frozen=True)
class BenchmarkSettings:
    train: OptimConfig
    pretrain: OptimConfig
    seeds: int
    preprocessing: Preprocessing = Preprocessing.GCN
    nus: tuple[float, ...] = PAPER_NUS
    label: str = "paper"  # how results.jsonl names these settings; resume matches on it


def preset_settings(preset: Preset, spec: LeNetSpec) -> BenchmarkSettings:
    """The paper preset follows Appendix C, and the original Deep SVDD code where the paper is silent."""
    schedule = schedule_for(spec.name)
    if preset is Preset.PAPER:
        return BenchmarkSettings(train=schedule.train, pretrain=schedule.pretrain, seeds=10, label=preset.value)
    # quick: the same schedule shape (a 10x lr drop two thirds in), a tenth of the epochs or less
    return BenchmarkSettings(
        train=replace(schedule.train, epochs=6, lr_milestones=(4,)),
        pretrain=replace(schedule.pretrain, epochs=6, lr_milestones=(4,)),
        seeds=1,
        label=preset.value,
    )


def with_epochs(s: BenchmarkSettings, train_epochs: int | None, pretrain_epochs: int | None) -> BenchmarkSettings:
    """Override epochs; the milestone keeps its relative place, and the label records the change."""
    train, pre = scale_epochs(s.train, train_epochs), scale_epochs(s.pretrain, pretrain_epochs)
    label = s.label
    if (train, pre) != (s.train, s.pretrain):
        label = f"{s.label}(epochs={train.epochs},pretrain={pre.epochs})"
    return replace(s, train=train, pretrain=pre, label=label)
