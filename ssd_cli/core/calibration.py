"""A threshold for one-class models without labeled anomalies: F1-best between held-out normal
images and synthetic anomalies made from them.

The default threshold, a quantile of the training scores, sits where the training images are, and
those were pulled towards c: new normal images score higher, and how far the anomalies lie is not
used at all. Here a share of the unlabeled images is kept out of training; after training they and
synthetic anomalies made from them (core/synthetic.py, the same kinds as in training, or all) are
scored, and the threshold with the best F1 between the two is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssd_cli.core.roles import UNLABELED
from ssd_cli.core.config import LOCAL_KINDS, SyntheticConfig
from ssd_cli.core.synthetic import make_anomalies
from ssd_cli.core.views import View
from ssd_cli.thresholds import f1_best

HOLDOUT_FRACTION = 0.1  # of the unlabeled images, kept out of training
MIN_HOLDOUT = 10  # fewer held-out images than this give no usable F1: the quantile is used instead
_HOLDOUT_STREAM = 0x401D07  # the split's random stream, apart from the others of the seed


@dataclass(frozen=True)
class Calibration:
    threshold: float
    n_normal: int
    n_anomalous: int

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "n_held_out_normal": self.n_normal, "n_synthetic": self.n_anomalous}


def held_out_count(n_unlabeled: int) -> int:
    """How many of n unlabeled images holdout() keeps out of training: 0 when it would be fewer than MIN_HOLDOUT."""
    k = int(n_unlabeled * HOLDOUT_FRACTION)
    return k if k >= MIN_HOLDOUT else 0


def holdout(y: torch.Tensor, seed: int) -> torch.Tensor | None:
    """A seeded random HOLDOUT_FRACTION of the unlabeled samples (bool mask over y), or None when
    that would be fewer than MIN_HOLDOUT images."""
    unlabeled = torch.nonzero(y.cpu() == UNLABELED).flatten()
    k = held_out_count(len(unlabeled))
    if k == 0:
        return None
    gen = torch.Generator().manual_seed(seed + _HOLDOUT_STREAM)
    chosen = unlabeled[torch.randperm(len(unlabeled), generator=gen)[:k]]
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[chosen] = True
    return mask.to(y.device)


def synthetic_threshold(view: View, encoder: torch.nn.Module, c: torch.Tensor, held: torch.Tensor, synthetic: SyntheticConfig, seed: int) -> Calibration:
    """F1-best threshold between the held-out images' scores and those of one synthetic anomaly made
    from each, scored as `ssd score` scores images. One each: F1 depends on the share of anomalies,
    and with four per image the F1-best threshold flagged every test image of the photo sets
    (docs/photos.md)."""
    kinds = synthetic if synthetic.enabled else SyntheticConfig(kinds=LOCAL_KINDS)
    gen = torch.Generator().manual_seed(seed + _HOLDOUT_STREAM + 1)
    normal = view.scores(encoder, c, held)
    made, _ = make_anomalies(held, kinds, view.scale, gen)
    anomalous = view.scores(encoder, c, made)
    scores = torch.cat([normal, anomalous]).double().cpu().numpy()
    truth = np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)]
    return Calibration(float(f1_best(scores, truth)), len(normal), len(anomalous))
