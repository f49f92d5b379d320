import csv
from pathlib import Path

import numpy as np
import pytest

from ssd_cli.experiments import protocol
from ssd_cli.errors import InputError
from ssd_cli.experiments.paper import paper_result
from ssd_cli.experiments.protocol import Method, Scenario, draw_training_set, methods_for_level

NORMAL = 3
N_NORMAL = 1000
N_PER_ANOMALY_CLASS = 300
ANOMALY_CLASSES = {c for c in range(10) if c != NORMAL}
PAPER_CSV = Path(__file__).resolve().parents[1] / "ssd_cli" / "experiments" / "paper_results.csv"


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    counts = [N_NORMAL if c == NORMAL else N_PER_ANOMALY_CLASS for c in range(10)]
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), counts))


# (scenario, level) -> (polluting anomalies, labeled anomalies, known classes), by hand with
# n_poll = round(p * 1000 / (1 - p)), n = 1000 + n_poll, m = round(r * n / (1 - r)):
EXPECTED_COUNTS = {
    (Scenario.LABELED, 0): (0, 0, 0),
    (Scenario.LABELED, 1): (0, 10, 1),  # 10 / 0.99 = 10.10
    (Scenario.LABELED, 5): (0, 53, 1),  # 50 / 0.95 = 52.63
    (Scenario.LABELED, 10): (0, 111, 1),  # 100 / 0.9 = 111.1
    (Scenario.LABELED, 20): (0, 250, 1),  # 200 / 0.8 = 250
    (Scenario.POLLUTION, 0): (0, 53, 1),
    (Scenario.POLLUTION, 1): (10, 53, 1),  # n = 1010: 50.5 / 0.95 = 53.16
    (Scenario.POLLUTION, 5): (53, 55, 1),  # n = 1053: 52.65 / 0.95 = 55.42
    (Scenario.POLLUTION, 10): (111, 58, 1),  # n = 1111: 55.55 / 0.95 = 58.47
    (Scenario.POLLUTION, 20): (250, 66, 1),  # n = 1250: 62.5 / 0.95 = 65.79
    (Scenario.CLASSES, 0): (111, 0, 0),
    (Scenario.CLASSES, 1): (111, 58, 1),
    (Scenario.CLASSES, 2): (111, 58, 2),
    (Scenario.CLASSES, 3): (111, 58, 3),
    (Scenario.CLASSES, 5): (111, 58, 5),
}


@pytest.mark.parametrize(("scenario", "level"), list(EXPECTED_COUNTS))
def test_exact_counts_and_composition(labels: np.ndarray, scenario: Scenario, level: int) -> None:
    n_poll, m, k = EXPECTED_COUNTS[(scenario, level)]
    ts = draw_training_set(labels, NORMAL, scenario, level, seed=7)

    assert ts.unlabeled_idx.size == N_NORMAL + n_poll
    assert ts.polluted_idx.size == n_poll
    assert ts.labeled_idx.size == m
    assert len(ts.known_classes) == k
    assert set(ts.known_classes) <= ANOMALY_CLASSES
    assert np.all(ts.labeled_y == -1) and ts.labeled_y.size == m
    # every normal training sample is unlabeled; the rest of the unlabeled part is the pollution
    normal_idx = np.flatnonzero(labels == NORMAL)
    assert np.array_equal(np.setdiff1d(ts.unlabeled_idx, ts.polluted_idx), normal_idx)
    assert set(labels[ts.polluted_idx]) <= ANOMALY_CLASSES
    # labeled anomalies come only from the known classes, never from the normal class
    assert set(labels[ts.labeled_idx]) <= set(ts.known_classes)
    assert NORMAL not in labels[ts.labeled_idx]
    assert np.intersect1d(ts.labeled_idx, ts.unlabeled_idx).size == 0
    assert np.unique(ts.labeled_idx).size == m and np.unique(ts.unlabeled_idx).size == ts.unlabeled_idx.size


def test_pollution_covers_all_anomaly_classes(labels: np.ndarray) -> None:
    ts = draw_training_set(labels, NORMAL, Scenario.POLLUTION, 20, seed=1)
    assert set(labels[ts.polluted_idx]) == ANOMALY_CLASSES


def test_several_known_classes_all_contribute(labels: np.ndarray) -> None:
    ts = draw_training_set(labels, NORMAL, Scenario.CLASSES, 3, seed=1)
    assert set(labels[ts.labeled_idx]) == set(ts.known_classes)


def test_same_inputs_same_set_other_seed_other_set(labels: np.ndarray) -> None:
    a = draw_training_set(labels, NORMAL, Scenario.POLLUTION, 10, seed=4)
    b = draw_training_set(labels, NORMAL, Scenario.POLLUTION, 10, seed=4)
    c = draw_training_set(labels, NORMAL, Scenario.POLLUTION, 10, seed=5)
    for name in ("unlabeled_idx", "polluted_idx", "labeled_idx", "labeled_y"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.known_classes == b.known_classes
    assert not np.array_equal(a.labeled_idx, c.labeled_idx)
    assert not np.array_equal(a.polluted_idx, c.polluted_idx)


def test_known_class_is_fixed_per_seed(labels: np.ndarray) -> None:
    for seed in range(5):
        known = {
            draw_training_set(labels, NORMAL, scenario, level, seed).known_classes
            for scenario, level in EXPECTED_COUNTS
            if EXPECTED_COUNTS[(scenario, level)][2] == 1
        }
        assert len(known) == 1
        # with more known classes, the one-class choice is among them
        (one,) = known
        for k in (2, 3, 5):
            assert set(one) <= set(draw_training_set(labels, NORMAL, Scenario.CLASSES, k, seed).known_classes)
    first_classes = {draw_training_set(labels, NORMAL, Scenario.LABELED, 5, seed).known_classes for seed in range(20)}
    assert len(first_classes) > 1  # the known class really is drawn per seed


def test_arrays_are_read_only(labels: np.ndarray) -> None:
    ts = draw_training_set(labels, NORMAL, Scenario.LABELED, 5, seed=0)
    with pytest.raises(ValueError):
        ts.labeled_idx[0] = 0


def test_pools_too_small_are_input_errors() -> None:
    few_anomalies = np.repeat(np.arange(10), [1000] + [100] * 9)
    with pytest.raises(InputError, match="labeled anomalies"):
        draw_training_set(few_anomalies, 0, Scenario.LABELED, 20, seed=0)  # needs 250 of one class
    rare_anomalies = np.repeat(np.arange(10), [1000] + [15] * 9)
    with pytest.raises(InputError, match="polluting anomalies"):
        # 58 labeled from 5 x 15 known-class samples fit; 111 polluting of the 135 - 58 left do not
        draw_training_set(rare_anomalies, 0, Scenario.CLASSES, 5, seed=0)


@pytest.mark.parametrize(
    ("scenario", "level"),
    [(Scenario.CLASSES, 2.5), (Scenario.CLASSES, 10), (Scenario.CLASSES, -1), (Scenario.LABELED, 100)],
)
def test_impossible_levels_are_input_errors(labels: np.ndarray, scenario: Scenario, level: float) -> None:
    with pytest.raises(InputError):
        draw_training_set(labels, NORMAL, scenario, level, seed=0)


def test_bad_labels_and_classes_are_input_errors(labels: np.ndarray) -> None:
    with pytest.raises(InputError, match="normal class"):
        draw_training_set(labels, 12, Scenario.LABELED, 5, seed=0)
    with pytest.raises(InputError, match="outside"):
        draw_training_set(labels, NORMAL, Scenario.LABELED, 5, seed=0, n_classes=5)
    with pytest.raises(InputError, match="one-dimensional"):
        draw_training_set(labels.astype(float), NORMAL, Scenario.LABELED, 5, seed=0)


def test_test_targets() -> None:
    assert protocol.test_targets(np.array([3, 1, 3, 0]), 3).tolist() == [False, True, False, True]


def test_scenario_settings() -> None:
    assert Scenario.LABELED.settings(5) == protocol.LevelSettings(0.05, 0.0, 1)
    assert Scenario.POLLUTION.settings(20) == protocol.LevelSettings(0.05, 0.2, 1)
    assert Scenario.CLASSES.settings(3) == protocol.LevelSettings(0.05, 0.1, 3)
    assert Scenario.CLASSES.settings(0) == protocol.LevelSettings(0.0, 0.1, 0)
    assert [s.table for s in Scenario] == [1, 2, 3]
    assert Scenario.CLASSES.levels == (0, 1, 2, 3, 5)
    assert (Scenario.LABELED.format_level(5), Scenario.CLASSES.format_level(2.0)) == ("5%", "2")


def test_method_properties() -> None:
    assert [m for m in Method if m.uses_labels] == [Method.SOFT_SS_DSVDD, Method.ONE_CLASS_SS_DSVDD, Method.SUPERVISED]
    assert [m for m in Method if m.is_soft_boundary] == [Method.SOFT_DSVDD, Method.SOFT_SS_DSVDD]
    assert [m for m in Method if not m.is_deep_svdd] == [Method.SUPERVISED]
    assert Method.ONE_CLASS_SS_DSVDD.display_name == "One-Class SS-DSVDD"
    assert Method.SOFT_SS_DSVDD.unsupervised_counterpart is Method.SOFT_DSVDD


def _paper_layout() -> dict[tuple[str, float], set[Method]]:
    layout: dict[tuple[str, float], set[Method]] = {}
    with PAPER_CSV.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["dataset"] == "mnist":
                layout.setdefault((row["varied"], float(row["level"])), set()).add(Method(row["method"]))
    return layout


def test_methods_for_level_matches_paper_tables() -> None:
    by_column = {s.varied_column: s for s in Scenario}
    layout = _paper_layout()
    assert len(layout) == 15
    for (column, level), in_paper in layout.items():
        scenario = by_column[column]
        ran = methods_for_level(scenario, level)
        filled = {m for m in Method if m not in ran and m.unsupervised_counterpart in ran}
        assert set(ran) | filled == in_paper, (scenario, level)
        assert not filled or (scenario is not Scenario.POLLUTION and level == 0)
    assert methods_for_level(Scenario.LABELED, 0) == [Method.SOFT_DSVDD, Method.ONE_CLASS_DSVDD]
    assert methods_for_level(Scenario.CLASSES, 2) == [
        Method.SOFT_SS_DSVDD,
        Method.ONE_CLASS_SS_DSVDD,
        Method.SUPERVISED,
    ]
    assert methods_for_level(Scenario.POLLUTION, 0) == list(Method)


def test_paper_lookup() -> None:
    assert paper_result("mnist", Scenario.LABELED, 5, Method.ONE_CLASS_SS_DSVDD) == (96.8, 0.9)
    assert paper_result("cifar10", Scenario.CLASSES, 5, Method.SUPERVISED) == (60.9, 4.6)
    assert paper_result("fashion-mnist", Scenario.POLLUTION, 20, Method.SOFT_DSVDD) == (74.5, 1.4)
    assert paper_result("mnist", Scenario.LABELED, 0, Method.SOFT_SS_DSVDD) == (94.1, 1.0)  # level-0 fill
    assert paper_result("mnist", Scenario.LABELED, 5, Method.SOFT_DSVDD) is None  # not in the table
    assert paper_result("svhn", Scenario.LABELED, 5, Method.SUPERVISED) is None


def test_paper_csv_tables_match_scenarios() -> None:
    by_column = {s.varied_column: s for s in Scenario}
    with PAPER_CSV.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 171
    for row in rows:
        assert by_column[row["varied"]].table == int(row["table"])
        assert float(row["level"]) in by_column[row["varied"]].levels
