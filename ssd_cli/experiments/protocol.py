"""The paper's semi-supervised AD setups (Ruff et al., sections 3.1 and 3.2), exactly.

One class of a ten-class dataset is normal and the other nine are anomalies. The unlabeled part of
the training set is every training sample of the normal class plus, in scenarios (ii) and (iii),
polluting anomalies from all nine anomaly classes. The labeled part is anomalies from one or more
a-priori drawn "known" anomaly classes. The test set is the original test split, scored against
all nine anomaly classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ssd_cli.errors import InputError

# Scenarios (ii) and (iii) fix these ratios (section 3.2).
_FIXED_LABELED_RATIO = 0.05
_FIXED_POLLUTION_RATIO = 0.10

# First word of the SeedSequence entropy of each random stream. It comes first, and is non-zero,
# because numpy's SeedSequence pads short entropy with zeros: [s, c] and [s, c, 0] would collide.
_KNOWN_CLASS_STREAM = 1
_SAMPLE_STREAM = 2


class Method(str, Enum):
    """The five methods of the paper's tables; values are the names used in paper_results.csv."""

    SOFT_DSVDD = "soft_dsvdd"
    ONE_CLASS_DSVDD = "one_class_dsvdd"
    SOFT_SS_DSVDD = "soft_ss_dsvdd"
    ONE_CLASS_SS_DSVDD = "one_class_ss_dsvdd"
    SUPERVISED = "supervised"

    @property
    def display_name(self) -> str:
        """The column header of the paper's tables."""
        return _DISPLAY_NAMES[self]

    @property
    def uses_labels(self) -> bool:
        """Whether the labeled anomalies change what this method learns."""
        return self in (Method.SOFT_SS_DSVDD, Method.ONE_CLASS_SS_DSVDD, Method.SUPERVISED)

    @property
    def is_soft_boundary(self) -> bool:
        """Soft-boundary objectives have a nu; the paper runs nu in {0.01, 0.1} and reports the better."""
        return self in (Method.SOFT_DSVDD, Method.SOFT_SS_DSVDD)

    @property
    def is_deep_svdd(self) -> bool:
        """Deep SVDD variants share one autoencoder pretraining per training set."""
        return self is not Method.SUPERVISED

    @property
    def unsupervised_counterpart(self) -> Method | None:
        """The method an SS-DSVDD objective reduces to when there are no labeled samples (m = 0)."""
        return _UNSUPERVISED_COUNTERPARTS.get(self)


_DISPLAY_NAMES = {
    Method.SOFT_DSVDD: "Soft DSVDD",
    Method.ONE_CLASS_DSVDD: "One-Class DSVDD",
    Method.SOFT_SS_DSVDD: "Soft SS-DSVDD",
    Method.ONE_CLASS_SS_DSVDD: "One-Class SS-DSVDD",
    Method.SUPERVISED: "Supervised Classifier",
}

_UNSUPERVISED_COUNTERPARTS = {
    Method.SOFT_SS_DSVDD: Method.SOFT_DSVDD,
    Method.ONE_CLASS_SS_DSVDD: Method.ONE_CLASS_DSVDD,
}


@dataclass(frozen=True)
class LevelSettings:
    """What one level of a scenario fixes: ratios are fractions in [0, 1)."""

    labeled_ratio: float  # m / (n + m)
    pollution_ratio: float  # fraction of anomalies in the unlabeled part
    n_known_classes: int  # anomaly classes the labeled anomalies are drawn from

    @property
    def has_labels(self) -> bool:
        return self.labeled_ratio > 0 and self.n_known_classes > 0


@dataclass(frozen=True)
class _ScenarioInfo:
    table: int
    levels: tuple[float, ...]
    varied_column: str
    axis_label: str
    heading: str


class Scenario(str, Enum):
    """The three experimental scenarios of section 3.2; a level is what the scenario varies."""

    LABELED = "labeled"  # (i) labeled-anomaly ratio in %, one known class, no pollution
    POLLUTION = "pollution"  # (ii) pollution ratio in %, 5% labeled from one known class
    CLASSES = "classes"  # (iii) number of known classes, 5% labeled, 10% pollution

    @property
    def table(self) -> int:
        """Number of the paper's table (and, plus one, its figure) for this scenario."""
        return _SCENARIO_INFO[self].table

    @property
    def levels(self) -> tuple[float, ...]:
        """The levels the paper reports."""
        return _SCENARIO_INFO[self].levels

    @property
    def varied_column(self) -> str:
        """The value of the 'varied' column of paper_results.csv for this scenario."""
        return _SCENARIO_INFO[self].varied_column

    @property
    def axis_label(self) -> str:
        return _SCENARIO_INFO[self].axis_label

    @property
    def heading(self) -> str:
        """'(i) adding labeled anomalies': for table headings and figure titles."""
        return _SCENARIO_INFO[self].heading

    def format_level(self, level: float) -> str:
        """A level as the paper writes it: '5%' for ratios, '2' for class counts."""
        text = f"{level:g}"
        return text if self is Scenario.CLASSES else f"{text}%"

    def settings(self, level: float) -> LevelSettings:
        """The ratios and known-class count at a level; raises InputError for an impossible level."""
        if self is Scenario.CLASSES:
            if not (level >= 0 and float(level).is_integer()):
                raise InputError(f"scenario 'classes' needs a whole number of known classes, got {level:g}")
            known = int(level)
            return LevelSettings(_FIXED_LABELED_RATIO if known else 0.0, _FIXED_POLLUTION_RATIO, known)
        if not 0 <= level < 100:
            raise InputError(f"scenario '{self.value}' needs a percentage in [0, 100), got {level:g}")
        if self is Scenario.LABELED:
            return LevelSettings(level / 100, 0.0, 1 if level > 0 else 0)
        return LevelSettings(_FIXED_LABELED_RATIO, level / 100, 1)


_SCENARIO_INFO = {
    Scenario.LABELED: _ScenarioInfo(
        1, (0, 1, 5, 10, 20), "labeled_ratio_pct", "% labeled train set", "(i) adding labeled anomalies"
    ),
    Scenario.POLLUTION: _ScenarioInfo(
        2, (0, 1, 5, 10, 20), "pollution_ratio_pct", "% pollution train set", "(ii) polluted training data"
    ),
    Scenario.CLASSES: _ScenarioInfo(
        3, (0, 1, 2, 3, 5), "known_anomaly_classes", "# known anomaly classes", "(iii) known anomaly classes"
    ),
}


def methods_for_level(scenario: Scenario, level: float) -> list[Method]:
    """The methods the paper reports at a level, in table order.

    Without labeled samples (level 0 of scenarios i and iii) only the unsupervised methods run: the
    SS objectives coincide with them, and the supervised classifier has no anomalies to learn from.
    In scenarios (i) and (iii) the unsupervised methods ignore what the level varies, so they run at
    level 0 only; in scenario (ii) pollution affects every method, so all five run at every level.
    """
    if not scenario.settings(level).has_labels:
        return [m for m in Method if m.is_deep_svdd and not m.uses_labels]
    if scenario is Scenario.POLLUTION:
        return list(Method)
    return [m for m in Method if m.uses_labels]


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Indices into the training split; arrays are sorted and read-only."""

    unlabeled_idx: np.ndarray  # all normal-class samples plus the polluting anomalies
    polluted_idx: np.ndarray  # the anomalies among unlabeled_idx
    labeled_idx: np.ndarray
    labeled_y: np.ndarray  # +1 known normal, -1 known anomaly (always -1 in the paper's setups)
    known_classes: tuple[int, ...]


def training_counts(n_normal: int, settings: LevelSettings) -> tuple[int, int]:
    """(polluting anomalies, labeled anomalies) for n_normal normal samples, rounded half up.

    n_poll makes the unlabeled part have the pollution ratio p: n_poll / (n_normal + n_poll) = p.
    m makes the labeled share of the whole training set the labeled ratio r: m / (n + m) = r.
    """
    p, r = settings.pollution_ratio, settings.labeled_ratio
    n_poll = _round_half_up(p * n_normal / (1 - p))
    m = _round_half_up(r * (n_normal + n_poll) / (1 - r))
    return n_poll, m


def known_class_seed(seed: int, normal_class: int) -> list[int]:
    """Entropy of the known-class draw: depends on (seed, normal class) only, so one seed gives the
    same known classes at every level, in every scenario and for every method (and, being a prefix
    of one permutation, the known classes of k are among those of k + 1)."""
    return [_KNOWN_CLASS_STREAM, seed, normal_class]


def sample_seed(seed: int, normal_class: int, scenario: Scenario, level: float) -> list[int]:
    """Entropy of the labeled/polluting sample draw: (seed, normal class, scenario's table number,
    level in thousandths); independent of the method, so every method trains on the same set."""
    return [_SAMPLE_STREAM, seed, normal_class, scenario.table, round(level * 1000)]


def draw_training_set(
    train_labels: np.ndarray,
    normal_class: int,
    scenario: Scenario,
    level: float,
    seed: int,
    n_classes: int | None = None,
) -> TrainingSet:
    """The training set of one run of the paper's setup; a pure function of its arguments.

    Known classes: drawn without replacement from the anomaly classes (every class other than
    normal_class, among range(n_classes) or, when n_classes is None, among the labels present).
    Labeled anomalies: uniformly without replacement from the pooled samples of the known classes.
    Polluting anomalies: uniformly without replacement from the samples of all anomaly classes
    that were not drawn as labeled. Raises InputError when a pool is too small.
    """
    labels = _checked_labels(train_labels, n_classes)
    classes = list(range(n_classes)) if n_classes is not None else [int(c) for c in np.unique(labels)]
    if normal_class not in classes:
        raise InputError(f"normal class {normal_class} is not one of the classes {classes}")
    if seed < 0:
        raise InputError(f"seed must be non-negative, got {seed}")
    anomaly_classes = [c for c in classes if c != normal_class]
    settings = scenario.settings(level)
    if settings.n_known_classes > len(anomaly_classes):
        raise InputError(
            f"{settings.n_known_classes} known anomaly classes requested but only {len(anomaly_classes)} exist"
        )

    normal_idx = np.flatnonzero(labels == normal_class)
    if normal_idx.size == 0:
        raise InputError(f"the training split has no sample of normal class {normal_class}")
    n_poll, m = training_counts(normal_idx.size, settings)

    order = np.random.default_rng(known_class_seed(seed, normal_class)).permutation(anomaly_classes)
    known = tuple(sorted(int(c) for c in order[: settings.n_known_classes]))
    rng = np.random.default_rng(sample_seed(seed, normal_class, scenario, level))

    labeled_pool = np.flatnonzero(np.isin(labels, known))
    if m > labeled_pool.size:
        raise InputError(
            f"{m} labeled anomalies needed but known classes {list(known)} have only {labeled_pool.size} samples"
        )
    labeled_idx = np.sort(rng.choice(labeled_pool, size=m, replace=False))

    pollution_pool = np.setdiff1d(np.flatnonzero(np.isin(labels, anomaly_classes)), labeled_idx)
    if n_poll > pollution_pool.size:
        raise InputError(f"{n_poll} polluting anomalies needed but only {pollution_pool.size} are left")
    polluted_idx = np.sort(rng.choice(pollution_pool, size=n_poll, replace=False))

    return TrainingSet(
        unlabeled_idx=_read_only(np.sort(np.concatenate([normal_idx, polluted_idx]))),
        polluted_idx=_read_only(polluted_idx),
        labeled_idx=_read_only(labeled_idx),
        labeled_y=_read_only(np.full(m, -1, dtype=np.int64)),
        known_classes=known,
    )


def test_targets(test_labels: np.ndarray, normal_class: int) -> np.ndarray:
    """Ground truth of the test split: True for every class but the normal one."""
    return np.asarray(np.asarray(test_labels) != normal_class, dtype=np.bool_)


def _checked_labels(train_labels: np.ndarray, n_classes: int | None) -> np.ndarray:
    labels = np.asarray(train_labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError("training labels must be a one-dimensional array of class numbers")
    if labels.size and labels.min() < 0:
        raise InputError("training labels must be non-negative class numbers")
    if n_classes is not None and labels.size and labels.max() >= n_classes:
        raise InputError(f"training label {labels.max()} is outside the {n_classes} classes")
    return labels


def _round_half_up(x: float) -> int:
    """Half up, with a little slack so that float noise (2.4999999...) does not flip an exact half."""
    return math.floor(x + 0.5 + 1e-9)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.int64, copy=False)
    array.setflags(write=False)
    return array
