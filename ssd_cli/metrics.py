"""Detection quality of anomaly scores against ground truth; anomalies are the positive class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Union

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


# ---------------------------------------------------------------- pixel level (ground-truth masks)

FPR_LIMIT = 0.3  # AUPRO's upper bound on the false-positive rate, as MVTec AD and anomalib


@dataclass(frozen=True)
class PixelMetrics:
    """How well anomaly maps find the defect pixels of ground-truth masks (`ssd evaluate --masks`)."""

    auroc: float  # every pixel of every image pooled
    aupro: float  # per-region overlap, integrated over FPR in [0, fpr_limit], divided by fpr_limit
    fpr_limit: float
    n_masked: int  # anomalous images whose mask entered the pixel metrics
    n_anomalous_without_mask: int  # anomalous images that count at image level only

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


Maps = Union[np.ndarray, Sequence[np.ndarray]]  # (N, H, W), or N maps of their own sizes (tiled models)


def pixel_auroc(maps: Maps, masks: Maps) -> float:
    """AUROC over all pixels of all images pooled (anomalib's pixel AUROC); masks True = defect."""
    m, t = _checked_maps(maps, masks)
    return auroc(_pooled(m), _pooled(t))


def aupro(maps: Maps, masks: Maps, fpr_limit: float = FPR_LIMIT) -> float:
    """Area under the per-region-overlap curve up to fpr_limit, divided by fpr_limit (MVTec AD's
    AUPRO, which anomalib's approximates by resampling).

    At a threshold t, PRO(t) is the mean over the defect regions (8-connected components of each
    image's mask) of the share of the region's pixels scored >= t, so a small defect counts as much
    as a large one; FPR(t) is the share of all defect-free pixels scored >= t. PRO is a weighted
    true-positive rate (a defect pixel weighs 1 / its region's size), so the curve is the weighted
    ROC curve of the pixels; it is integrated by trapezoids up to fpr_limit, the last point
    interpolated linearly at fpr_limit.
    """
    from scipy import ndimage  # scipy comes with scikit-learn, a dependency: no package of its own
    from sklearn.metrics import roc_curve

    if not 0 < fpr_limit <= 1:
        raise ValueError(f"the FPR limit must be in (0, 1], got {fpr_limit}")
    m, t = _checked_maps(maps, masks)
    weights = [np.ones(truth.shape) for truth in t]
    eight = np.ones((3, 3), dtype=int)  # 8-connectivity: pixels touching by a corner are one region
    for truth, weight in zip(t, weights):
        regions, n = ndimage.label(truth, structure=eight)
        if n:
            sizes = np.bincount(regions.ravel())
            weight[truth] = 1.0 / sizes[regions[truth]]
    fpr, pro, _ = roc_curve(_pooled(t), _pooled(m), sample_weight=_pooled(weights), drop_intermediate=False)
    beyond = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:beyond] <= fpr_limit < fpr[beyond]
    x, y = fpr[:beyond], pro[:beyond]
    if beyond < len(fpr):
        share = (fpr_limit - fpr[beyond - 1]) / (fpr[beyond] - fpr[beyond - 1])
        x, y = np.r_[x, fpr_limit], np.r_[y, pro[beyond - 1] + share * (pro[beyond] - pro[beyond - 1])]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / fpr_limit)


def _checked_maps(maps: Maps, masks: Maps) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One (H, W) map and mask per image, each pair of one size (images may differ in size)."""
    m = [np.asarray(x, dtype=np.float64) for x in maps]
    t = [np.asarray(x, dtype=bool) for x in masks]
    if len(m) != len(t) or any(a.ndim != 2 or a.shape != b.shape for a, b in zip(m, t)):
        shapes = [a.shape for a in m[:2]], [b.shape for b in t[:2]]
        raise InputError(f"anomaly maps {shapes[0]}... and masks {shapes[1]}... must both be N x H x W, one H x W pair per image")
    if not all(np.isfinite(a).all() for a in m):
        raise InputError("anomaly maps contain NaN or infinity")
    defects = sum(int(b.sum()) for b in t)
    if defects == 0 or defects == sum(b.size for b in t):
        raise InputError("the masks mark no defect pixel" if not defects else "the masks mark every pixel as defect")
    return m, t


def _pooled(arrays: list[np.ndarray]) -> np.ndarray:
    """Every pixel of every image, in one flat array."""
    return np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
