"""Which training images the synthetic threshold keeps out (core/calibration.holdout)."""

from __future__ import annotations

import pytest
import torch

from ssd_cli.core.calibration import held_out_anomaly_count, held_out_count, holdout
from ssd_cli.core.roles import ANOMALY, NORMAL, OUTLIER, UNLABELED


def labels(unlabeled: int, anomalies: int) -> torch.Tensor:
    """Roles interleaved, as a folder's images and the outlier photos may come."""
    y = [UNLABELED] * unlabeled + [ANOMALY] * anomalies + [NORMAL] * 3 + [OUTLIER] * 5
    return torch.tensor(y)[torch.randperm(len(y), generator=torch.Generator().manual_seed(7))]


@pytest.mark.parametrize(("n", "held"), [(15, 0), (16, 4), (20, 5), (45, 11)])
def test_a_quarter_of_the_anomalies_and_only_enough_of_them(n: int, held: int) -> None:
    y = labels(100, n)
    mask = holdout(y, seed=0)
    assert held_out_anomaly_count(n) == held
    assert int((mask & (y == ANOMALY)).sum()) == held and int((mask & (y == UNLABELED)).sum()) == held_out_count(100) == 10
    assert not bool((mask & ((y == NORMAL) | (y == OUTLIER))).any())  # labeled normals and outliers always train


def test_the_unlabeled_images_held_out_do_not_depend_on_the_anomalies() -> None:
    """Each role has its own stream: adding labeled anomalies leaves the held-out normal images as they were."""
    base = torch.tensor([UNLABELED] * 100)
    with_anomalies = torch.cat([base, torch.tensor([ANOMALY] * 20)])
    assert torch.equal(holdout(with_anomalies, seed=3)[:100], holdout(base, seed=3))
    assert not torch.equal(holdout(with_anomalies, seed=3), holdout(with_anomalies, seed=4))


def test_no_anomaly_is_held_out_without_held_out_normal_images() -> None:
    assert holdout(labels(99, 20), seed=0) is None  # 9 would be held out: below MIN_HOLDOUT
