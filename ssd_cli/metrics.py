"""Detection quality of anomaly scores against ground truth; anomalies are the positive class."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ssd_cli.errors import InputError


@dataclass(frozen=True)
class DetectionMetrics:
    """Threshold-free ranking quality (AUROC, AUPRC) plus the confusion counts at one threshold."""

    auroc: float
    auprc: float  # average precision
    threshold: float  # a sample is flagged anomalous when its score is > threshold
    precision: float  # 0 when nothing is flagged
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int
    n_normal: int
    n_anomalous: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def compute_metrics(scores: np.ndarray, is_anomaly: np.ndarray, threshold: float) -> DetectionMetrics:
    """All metrics of scores (higher = more anomalous) for ground truth is_anomaly.

    Raises InputError when the arrays do not match or only one class is present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score  # here: `ssd score` need not load sklearn

    s, y = _checked(scores, is_anomaly)
    flagged = s > threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    # Counted here rather than with sklearn so that "nothing flagged" is a plain 0, not a warning.
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionMetrics(
        auroc=float(roc_auc_score(y, s)),
        auprc=float(average_precision_score(y, s)),
        threshold=float(threshold),
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        n_normal=fp + tn,
        n_anomalous=tp + fn,
    )


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve, the paper's metric; ties count half."""
    from sklearn.metrics import roc_auc_score

    s, y = _checked(scores, is_anomaly)
    return float(roc_auc_score(y, s))


def _checked(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly)
    if s.ndim != 1 or s.shape != y.shape:
        raise InputError(f"scores {s.shape} and labels {y.shape} must be one-dimensional and of equal length")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise InputError("anomaly labels must be booleans or 0/1")
        y = y.astype(np.bool_)
    if not np.isfinite(s).all():
        raise InputError("anomaly scores contain NaN or infinity")
    n_anomalous = int(y.sum())
    if n_anomalous == 0 or n_anomalous == y.size:
        only = "anomalous" if n_anomalous else "normal"
        raise InputError(
            f"all {y.size} samples are {only}; AUROC and the other metrics need both normal and anomalous samples"
        )
    return s, y
