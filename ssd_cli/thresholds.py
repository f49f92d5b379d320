"""Decision thresholds a person can choose and understand.

An image is anomalous when its score is above the threshold (strictly). The threshold comes from one
rule: the model's stored one (R, or a quantile of the training scores), a value the user gives, the
top fraction of the scored images (contamination) or the top k. With labels (`ssd evaluate`), the
operating points show what other thresholds would give, so a user can pick one for `ssd score`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ssd_cli.errors import UsageError
from ssd_cli.metrics import DetectionMetrics, compute_metrics


@dataclass(frozen=True)
class ThresholdRule:
    """How the threshold is set; at most one of value, contamination and top_k (none: the model's)."""

    value: float | None = None
    contamination: float | None = None  # flag this fraction of the scored images, the highest scores
    top_k: int | None = None  # flag the k highest scores

    def __post_init__(self) -> None:
        given = [n for n, v in (("--threshold", self.value), ("--contamination", self.contamination), ("--top-k", self.top_k)) if v is not None]
        if len(given) > 1:
            raise UsageError(f"give at most one of {', '.join(given)}")
        if self.value is not None and not math.isfinite(self.value):
            raise UsageError(f"--threshold must be a finite number, got {self.value}")
        if self.contamination is not None and not 0 < self.contamination < 1:
            raise UsageError(f"--contamination must be a fraction in (0, 1), got {self.contamination}")
        if self.top_k is not None and self.top_k < 0:
            raise UsageError(f"--top-k must be 0 or more, got {self.top_k}")

    @property
    def needs_scores(self) -> bool:
        """Contamination and top-k depend on all scores, so flags come only after the last image."""
        return self.contamination is not None or self.top_k is not None


@dataclass(frozen=True)
class Threshold:
    value: float
    rule: str  # for the user: how the value was set
    count: int | None = None  # top-k and contamination: exactly this many are flagged, the best ranks


def _round_up(fraction: float, n: int) -> int:
    """ceil(fraction x n), of the decimal product: 0.07 x 100 is 7.000000000000001 in floating point."""
    return math.ceil(round(fraction * n, 9))


def resolve(rule: ThresholdRule, model_threshold: float, model_rule: str, scores: np.ndarray) -> Threshold:
    """The threshold the rule gives for these scores."""
    if rule.value is not None:
        return Threshold(float(rule.value), "given with --threshold")
    if rule.contamination is not None:
        n, p = len(scores), rule.contamination
        k = _round_up(p, n)
        return _highest(scores, k, f"the top {p:g} of the scored images (--contamination: {p:g} x {n} = {round(p * n, 9):g}, rounded up to {k})")
    if rule.top_k is not None:
        return _highest(scores, rule.top_k, f"the {rule.top_k} highest scores (--top-k)")
    return Threshold(float(model_threshold), f"the model's: {model_rule}" if model_rule else "the model's")


def _highest(scores: np.ndarray, k: int, rule: str) -> Threshold:
    """Flag exactly the k best-ranked (Scores ranks ties in input order); the rule says when a tie
    at the cut was split, since no threshold value can split equal scores."""
    s = np.asarray(scores, dtype=np.float64)
    value = top_k_threshold(s, k)
    above, at = int((s > value).sum()), int((s == value).sum())
    count = min(k, len(s))
    if above < count:  # count - above of the `at` scores equal to the value are flagged
        rule += f"; {at} scores tie at {value:.4g}, the first {count - above} by rank flagged"
    return Threshold(value, rule, count)


def top_k_threshold(scores: np.ndarray, k: int) -> float:
    """The threshold of the k highest scores: halfway between the k-th and the (k+1)-th, so a
    printed value still splits them; with a tie at the cut, the tied score itself (which images of
    the tie are flagged is then up to their rank: `resolve`)."""
    s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])[::-1]
    if len(s) == 0:
        return math.inf
    if k <= 0:
        return float(s[0])
    if k >= len(s):
        return _below(float(s[-1]))
    return _between(float(s[k - 1]), float(s[k]))


def _between(high: float, low: float) -> float:
    return low if high == low else low + (high - low) / 2


def _below(value: float) -> float:
    """A threshold just under the lowest score, so every image is flagged."""
    return value / 2 if value > 0 else value - 1.0


def normalised(scores: np.ndarray, threshold: float) -> np.ndarray:
    """score / threshold: above 1 = anomalous. Distances are >= 0, and so is a sensible threshold;
    a threshold of 0 or below has no scale, so every score is reported as inf (flagged) or 0."""
    s = np.asarray(scores, dtype=np.float64)
    if threshold > 0 and math.isfinite(threshold):
        return s / threshold
    if not math.isfinite(threshold):
        return np.zeros_like(s)
    return np.where(s > threshold, np.inf, 0.0)


def f1_best(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """The threshold with the highest F1 on these labels (among the thresholds that split the
    scores differently; on ties, the highest threshold, which flags the least)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly, dtype=bool)
    values, tp, fp = _cumulative(s, y)
    n_pos = int(y.sum())
    f1 = 2 * tp / (tp + fp + n_pos)  # F1 = 2TP / (2TP + FP + FN) and TP + FN = n_pos
    return _flagging_from(values, int(np.argmax(f1)))


def recall_threshold(scores: np.ndarray, is_anomaly: np.ndarray, target: float) -> float:
    """The highest threshold whose recall reaches the target (so the fewest false alarms)."""
    if not 0 < target <= 1:
        raise UsageError(f"--recall must be in (0, 1], got {target}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly, dtype=bool)
    values, tp, _ = _cumulative(s, y)
    reached = np.nonzero(tp >= target * int(y.sum()) - 1e-9)[0]
    return _flagging_from(values, int(reached[0]))


def _cumulative(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores in decreasing order, and the true and false positives when every score of at
    least that value is flagged."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last_of_value]
    fp = np.cumsum(~y_sorted)[last_of_value]
    return s_sorted[last_of_value], tp, fp


def _flagging_from(values: np.ndarray, i: int) -> float:
    """The threshold that flags values[0..i] (distinct, decreasing) and nothing lower."""
    return _between(float(values[i]), float(values[i + 1])) if i + 1 < len(values) else _below(float(values[i]))


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    metrics: DetectionMetrics


def operating_points(scores: np.ndarray, is_anomaly: np.ndarray, threshold: Threshold, recall: float = 0.95) -> list[OperatingPoint]:
    """The metrics at the threshold in use, at the F1-best threshold and at the threshold that
    reaches the target recall."""
    points = [
        ("threshold in use", threshold.value),
        ("F1-best", f1_best(scores, is_anomaly)),
        (f"recall >= {recall:g}", recall_threshold(scores, is_anomaly, recall)),
    ]
    return [OperatingPoint(name, compute_metrics(scores, is_anomaly, t)) for name, t in points]
