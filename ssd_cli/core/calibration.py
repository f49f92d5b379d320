"""A threshold for one-class models without labeled anomalies: F1-best between held-out normal
images and synthetic anomalies made from them.

The default threshold, a quantile of the training scores, sits where the training images are, and
those were pulled towards c: new normal images score higher, and how far the anomalies lie is not
used at all. Here a share of the unlabeled images is kept out of training; after training they and
synthetic anomalies made from them (core/synthetic.py, the same kinds as in training, or all) are
scored, and the threshold with the best F1 between the two is stored.

Where the user gave enough labeled anomalies, a quarter of them are kept out too. They take no part
in the threshold; they check the model on real defects it has not seen, beside the held-out normal
images. How the threshold treats the labeled anomalies a model trained on says little about unseen
ones (docs/photos.md), and on patch models training on all of them or on none moved test AUROC by under 0.02
(docs/photos.md), so a few held out cost little and tell the user whether ssd sees their kind of
defect at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssd_cli.core.roles import ANOMALY, UNLABELED
from ssd_cli.core.config import LOCAL_KINDS, SyntheticConfig
from ssd_cli.core.synthetic import make_anomalies
from ssd_cli.core.views import View
from ssd_cli.metrics import auroc
from ssd_cli.thresholds import f1_best

HOLDOUT_FRACTION = 0.1  # of the unlabeled images, kept out of training
MIN_HOLDOUT = 10  # fewer held-out images than this give no usable F1: the quantile is used instead
ANOMALY_HOLDOUT_FRACTION = 0.25  # of the labeled anomalies, kept out of training to check the model
MIN_ANOMALY_HOLDOUT = 4  # fewer held-out anomalies than this check nothing: all are trained on
# At or below this AUROC the held-out anomalies score like normal images, and `ssd train` warns.
# Simulated (normal scores, 5 anomalies against 50 images, 4 against 10): a model at chance lands
# above it 23-27% of the time, one whose true AUROC is 0.8 below it 4-10%, 0.9 at most 1%.
CHANCE_AUROC = 0.6
_HOLDOUT_STREAM = 0x401D07  # the split's random stream, apart from the others of the seed


@dataclass(frozen=True)
class HeldOutCheck:
    """The model on labeled anomalies and normal images it never trained on."""

    n_normal: int
    n_anomalous: int
    auroc: float
    normal_above: int  # held-out normal images above the stored threshold (false alarms)
    anomalous_above: int  # held-out labeled anomalies above it (found)

    def to_dict(self) -> dict:
        return {"n_normal": self.n_normal, "n_anomalous": self.n_anomalous, "auroc": self.auroc, "normal_above": self.normal_above, "anomalous_above": self.anomalous_above}


@dataclass(frozen=True)
class Calibration:
    threshold: float
    n_normal: int
    n_anomalous: int
    check: HeldOutCheck | None = None

    def to_dict(self) -> dict:
        held = self.check.to_dict() if self.check is not None else None
        return {"threshold": self.threshold, "n_held_out_normal": self.n_normal, "n_synthetic": self.n_anomalous, "held_out_anomalies": held}


def held_out_count(n_unlabeled: int) -> int:
    """How many of n unlabeled images holdout() keeps out of training: 0 when it would be fewer than MIN_HOLDOUT."""
    k = int(n_unlabeled * HOLDOUT_FRACTION)
    return k if k >= MIN_HOLDOUT else 0


def held_out_anomaly_count(n_anomalous: int) -> int:
    """How many of n labeled anomalies holdout() keeps out of training (when it holds images out at all)."""
    k = int(n_anomalous * ANOMALY_HOLDOUT_FRACTION)
    return k if k >= MIN_ANOMALY_HOLDOUT else 0


def holdout(y: torch.Tensor, seed: int) -> torch.Tensor | None:
    """A seeded random HOLDOUT_FRACTION of the unlabeled samples and ANOMALY_HOLDOUT_FRACTION of the
    labeled anomalies (bool mask over y), or None when that would be fewer than MIN_HOLDOUT unlabeled
    images. Each role has its own random stream, so the unlabeled images held out do not depend on
    the anomalies."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for role, count, stream in ((UNLABELED, held_out_count, 0), (ANOMALY, held_out_anomaly_count, 2)):
        rows = torch.nonzero(y.cpu() == role).flatten()
        k = count(len(rows))
        if role == UNLABELED and k == 0:
            return None
        gen = torch.Generator().manual_seed(seed + _HOLDOUT_STREAM + stream)
        mask[rows[torch.randperm(len(rows), generator=gen)[:k]]] = True
    return mask.to(y.device)


def synthetic_scores(view: View, encoder: torch.nn.Module, c: torch.Tensor, normal_images: torch.Tensor, synthetic: SyntheticConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of held-out normal images and of one synthetic anomaly made from each (the kinds
    trained on, or all local ones), scored as `ssd score` scores images, from the seed's own stream."""
    kinds = synthetic if synthetic.enabled else SyntheticConfig(kinds=LOCAL_KINDS)
    gen = torch.Generator().manual_seed(seed + _HOLDOUT_STREAM + 1)
    made, _ = make_anomalies(normal_images, kinds, view.scale, gen)
    return view.scores(encoder, c, normal_images), view.scores(encoder, c, made)


def pooled(normal: torch.Tensor, anomalous: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of scores as one array (float64) and its truth (anomalous = True)."""
    scores = torch.cat([normal, anomalous]).double().cpu().numpy()
    return scores, np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)]


def synthetic_threshold(view: View, encoder: torch.nn.Module, c: torch.Tensor, held: torch.Tensor, y_held: torch.Tensor, synthetic: SyntheticConfig, seed: int) -> Calibration:
    """F1-best threshold between the held-out normal images' scores and those of one synthetic
    anomaly made from each (synthetic_scores). One each: F1 depends on the share of anomalies, and
    with four per image the F1-best threshold flagged every test image of the photo sets
    (docs/photos.md). Held-out labeled anomalies (y_held == ANOMALY) are then scored against the
    same normal images as a check on real defects."""
    y_held = y_held.to(held.device)
    normal, anomalous = synthetic_scores(view, encoder, c, held[y_held == UNLABELED], synthetic, seed)
    threshold = float(f1_best(*pooled(normal, anomalous)))
    real = held[y_held == ANOMALY]
    check = _check(normal, view.scores(encoder, c, real), threshold) if len(real) else None
    return Calibration(threshold, len(normal), len(anomalous), check)


def _check(normal: torch.Tensor, anomalous: torch.Tensor, threshold: float) -> HeldOutCheck:
    """AUROC and the counts above the threshold of held-out labeled anomalies against held-out normals."""
    scores, truth = pooled(normal, anomalous)
    above = scores > threshold
    return HeldOutCheck(len(normal), len(anomalous), auroc(scores, truth), int(above[~truth].sum()), int(above[truth].sum()))
