"""A benchmark's data: a built-in dataset (MNIST, Fashion-MNIST, CIFAR-10) or a folder of
train/<class>/ and test/<class>/ images, with the network for it, and each run's training set."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ssd_cli.core.nets import LeNetSpec, get_spec
from ssd_cli.data.datasets import BUILTIN_DATASETS, LabeledImages, load_builtin, load_class_folders
from ssd_cli.data.scan import choose_input, scan_inputs
from ssd_cli.errors import InputError, UsageError
from ssd_cli.experiments.protocol import TrainingSet, draw_training_set
from ssd_cli.experiments.runs import Run


@dataclass
class BenchmarkData:
    name: str  # "mnist", or the folder's name
    source: str  # human description, e.g. that CIFAR-10 is the JPEG copy
    spec: LeNetSpec
    train: LabeledImages
    test: LabeledImages
    choice: tuple[str, ...] = ()  # why this network, when it was chosen from the images

    @property
    def n_classes(self) -> int:
        return len(self.train.classes)

    def training_set(self, run: Run) -> TrainingSet:
        """The run's unlabeled, polluting and labeled training samples, drawn as the paper does."""
        return draw_training_set(self.train.labels.numpy(), run.normal_class, run.scenario, run.level, run.seed, self.n_classes)


def load_benchmark_data(dataset: str, root: Path, download: bool, arch: str | None, decoder: str | None = None) -> BenchmarkData:
    """A built-in dataset by name, or a folder with train/<class>/ and test/<class>/ image folders;
    `decoder` replaces the network's own pretraining decoder."""
    data = _load(dataset, root, download, arch)
    if decoder is None or decoder == data.spec.decoder:
        return data
    try:
        return replace(data, spec=replace(data.spec, decoder=decoder))
    except ValueError as exc:
        raise UsageError(f"--decoder: {exc}") from None


def _load(dataset: str, root: Path, download: bool, arch: str | None) -> BenchmarkData:
    if dataset in BUILTIN_DATASETS:
        b = BUILTIN_DATASETS[dataset]
        spec = get_spec(arch or b.architecture)
        if (spec.channels, spec.image_size) != (b.channels, b.image_size):
            raise InputError(f"--arch {spec.name} takes {spec.channels}x{spec.image_size}x{spec.image_size} images; {dataset} has {b.channels}x{b.image_size}x{b.image_size}")
        train, test = load_builtin(dataset, root, True, download), load_builtin(dataset, root, False, download)
        return BenchmarkData(dataset, train.source, spec, train, test)
    path = Path(dataset)
    if not path.is_dir():
        raise InputError(f"'{dataset}' is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor a folder")
    spec, reasons = _folder_network(path, arch)
    train = load_class_folders(path, "train", spec.image_size, spec.channels)
    test = load_class_folders(path, "test", spec.image_size, spec.channels)
    source = f"image folders {path} ({len(train.classes)} classes)"
    return BenchmarkData(path.resolve().name, source, spec, train, test, reasons)


def _folder_network(path: Path, arch: str | None) -> tuple[LeNetSpec, tuple[str, ...]]:
    """For a folder dataset the network is chosen from its training images, as `ssd train` does."""
    choice = choose_input(scan_inputs({"train": [path / "train"]}), arch=arch)
    try:
        return get_spec(choice.arch, choice.channels, choice.image_size), choice.reasons
    except ValueError as exc:
        raise UsageError(str(exc)) from None
