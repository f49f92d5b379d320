"""Threshold rules and operating points, against brute force over every possible threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssd_cli.errors import UsageError
from ssd_cli.metrics import compute_metrics
from ssd_cli.io.results import Scores
from ssd_cli.thresholds import (
    Threshold,
    ThresholdRule,
    f1_best,
    normalised,
    operating_points,
    recall_threshold,
    resolve,
    top_k_threshold,
)


def candidates(s: np.ndarray) -> list[float]:
    """Every distinct way to split the scores: just below each value, and above the maximum."""
    v = np.unique(s)
    return [float(v[0]) - 1.0, *[(a + b) / 2 for a, b in zip(v[:-1], v[1:])], float(v[-1])]


@pytest.mark.parametrize("seed", range(5))
def test_f1_best_and_recall_threshold_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    s = np.round(rng.normal(size=n) + 1.2 * y, 1)  # rounding makes ties
    best = max(compute_metrics(s, y, t).f1 for t in candidates(s))
    assert compute_metrics(s, y, f1_best(s, y)).f1 == pytest.approx(best)
    for target in (0.5, 0.9, 1.0):
        t = recall_threshold(s, y, target)
        assert compute_metrics(s, y, t).recall >= target - 1e-12
        higher = [c for c in candidates(s) if c > t]
        assert all(compute_metrics(s, y, c).recall < target for c in higher)  # the highest that reaches it


def test_top_k_flags_exactly_k_distinct_scores() -> None:
    s = np.array([0.5, 3.0, 1.0, 2.0, 0.1])
    for k in range(0, 7):
        t = top_k_threshold(s, k)
        assert int((s > t).sum()) == min(k, 5)
    tied = np.array([1.0, 2.0, 2.0, 3.0])
    assert int((tied > top_k_threshold(tied, 2)).sum()) == 1  # no value splits a tie at the boundary...
    flagged = Scores.build([None] * 4, tied, resolve(ThresholdRule(top_k=2), 0.0, "", tied), []).anomalous
    assert flagged.tolist() == [False, True, False, True]  # ...so the rank does: the first of the tie in input order


def test_resolve_each_rule() -> None:
    s = np.linspace(0, 1, 101)
    assert resolve(ThresholdRule(), 0.7, "R", s) == Threshold(0.7, "the model's: R")
    assert resolve(ThresholdRule(value=0.3), 0.7, "R", s).value == 0.3
    t = resolve(ThresholdRule(contamination=0.05), 0.7, "R", s)
    assert int((s > t.value).sum()) == 6 and "0.05 x 101 = 5.05, rounded up to 6" in t.rule
    assert int((s > resolve(ThresholdRule(top_k=10), 0.7, "R", s).value).sum()) == 10


@pytest.mark.parametrize(
    "kwargs", [dict(value=1.0, top_k=2), dict(contamination=0.1, top_k=2), dict(value=math.nan), dict(contamination=0.0), dict(contamination=1.0), dict(top_k=-1)]
)
def test_bad_rules_are_usage_errors(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        ThresholdRule(**kwargs)


def test_normalised_scores_and_a_nan_score_is_never_normal() -> None:
    assert normalised(np.array([0.0, 1.0, 3.0]), 2.0).tolist() == [0.0, 0.5, 1.5]
    scores = Scores.build([None] * 3, np.array([0.5, np.nan, 2.0]), Threshold(1.0, "x"), [])
    assert scores.anomalous.tolist() == [False, True, True]
    assert [r.rank for r in scores] == [3, 1, 2]  # NaN ranks first: it needs a look


def test_operating_points_names_and_order() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.35])
    y = np.array([False, False, False, True, True, True])
    points = operating_points(s, y, Threshold(0.5, "model"), recall=0.95)
    assert [p.name for p in points] == ["threshold in use", "F1-best", "recall >= 0.95"]
    assert points[0].metrics.threshold == 0.5
    assert points[1].metrics.f1 == 1.0 and points[2].metrics.recall == 1.0
