"""The four SS-DSVDD objectives (1)-(4) of the paper and the exact radius solver, per mini-batch.

Labels (core/roles.py) follow the paper: y = 0 for unlabeled samples, +1 for labeled normals, -1 for labeled
anomalies (given or synthetic), and -2 for outlier images (unrelated photos: anomalies with their own
weight). With no labeled samples (m = 0) objectives (3) and (4) reduce to (1) and (2). All
functions accept leading batch dimensions (..., B) so that stacked runs can share them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ssd_cli.core.config import AnomalyLoss, Objective, TrainConfig
from ssd_cli.core.roles import OUTLIER


def hinge(z: torch.Tensor) -> torch.Tensor:
    """l(z) = max(0, -z)."""
    return torch.clamp(-z, min=0)


def squared_distances(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||phi(x) - c||^2 for each row of z."""
    return ((z - c) ** 2).sum(dim=-1)


def anomaly_term(dist: torch.Tensor, eps: float, kind: AnomalyLoss = AnomalyLoss.INVERSE) -> torch.Tensor:
    """What a labeled anomaly at squared distance dist pays: the paper's (dist + eps)^-1, or the
    hypersphere classifier's -log(1 - exp(-dist)), which stays finite far out and only falls slowly."""
    if kind is AnomalyLoss.HSC:
        return -torch.log(-torch.expm1(-(dist + eps)))
    return 1.0 / (dist + eps)


def labeled_weight(y: torch.Tensor, eta: float, outlier_weight: float = 1.0) -> float | torch.Tensor:
    """eta for labeled samples, the outlier weight for outlier images (a plain eta without any: the
    paper's arithmetic, bit for bit)."""
    if bool((y == OUTLIER).any()):
        return torch.where(y == OUTLIER, outlier_weight, eta)
    return eta


def one_class_loss(
    dist: torch.Tensor, y: torch.Tensor, eta: float, eps: float, anomaly: AnomalyLoss = AnomalyLoss.INVERSE, outlier_weight: float = 1.0
) -> torch.Tensor:
    """Objective (4) on a batch: mean over n+m samples; labeled anomalies pay anomaly_term."""
    labeled = labeled_weight(y, eta, outlier_weight) * torch.where(y < 0, anomaly_term(dist, eps, anomaly), dist)
    return torch.where(y == 0, dist, labeled).mean(dim=-1)


def soft_boundary_loss(dist: torch.Tensor, y: torch.Tensor, radius: torch.Tensor, nu: float, eta: float, outlier_weight: float = 1.0) -> torch.Tensor:
    """Objective (3) on a batch: R^2 + 1/(nu (n+m)) * sum of weighted hinge violations."""
    r2 = radius**2
    sign = torch.where(y < 0, -1.0, 1.0)  # unlabeled samples are treated like normals, y = +1
    weight = torch.where(y == 0, 1.0, labeled_weight(y, eta, outlier_weight))
    violations = weight * hinge(sign * (r2.unsqueeze(-1) - dist))
    return r2 + violations.sum(dim=-1) / (nu * dist.shape[-1])


def solve_radius(dist: torch.Tensor, y: torch.Tensor, nu: float, eta: float, outlier_weight: float = 1.0) -> torch.Tensor:
    """The R minimising objective (3) for fixed distances.

    The objective is convex and piecewise linear in r = R^2 with kinks at the distances, so its
    minimum lies at r = 0 or at one of the distances. After sorting, prefix sums give the objective
    at every kink in O(B log B) time and O(B) memory (so it also serves a whole training set). With
    no labeled anomalies this is the (1 - nu)-quantile of the distances.
    """
    d = dist.detach().double()
    y = y.expand_as(d)
    order = d.argsort(dim=-1)
    d, y = d.gather(-1, order), y.gather(-1, order)
    inside = torch.where(y < 0, 0.0, torch.where(y == 0, 1.0, eta)).double()  # want d <= r: pay d - r
    outside = torch.where(y < 0, labeled_weight(y, eta, outlier_weight), 0.0).double()  # labeled anomalies want d >= r: pay r - d
    w_in, s_in = inside.cumsum(-1), (inside * d).cumsum(-1)
    w_in_after, s_in_after = w_in[..., -1:] - w_in, s_in[..., -1:] - s_in  # samples sorted after r
    w_out, s_out = outside.cumsum(-1), (outside * d).cumsum(-1)  # samples sorted up to r
    scale = nu * d.shape[-1]
    at_kinks = d + (s_in_after - d * w_in_after + d * w_out - s_out) / scale
    at_zero = s_in[..., -1:] / scale
    cost = torch.cat([at_zero, at_kinks], dim=-1)
    candidates = torch.cat([torch.zeros_like(d[..., :1]), d], dim=-1)
    # On a flat stretch (e.g. nu * B whole) every kink in it is optimal; take the smallest, so that
    # rounding noise in the distances cannot flip the choice between two of them.
    near_best = cost <= cost.min(dim=-1, keepdim=True).values * (1 + 1e-12)
    best = candidates.gather(-1, near_best.to(torch.int8).argmax(dim=-1, keepdim=True)).squeeze(-1)
    return best.sqrt().to(dist.dtype)


BatchLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, TrainConfig], torch.Tensor]

LOSSES: dict[Objective, BatchLoss] = {
    Objective.ONE_CLASS: lambda dist, y, radius, cfg: one_class_loss(dist, y, cfg.eta, cfg.eps, cfg.anomaly_loss, cfg.outlier_weight),
    Objective.SOFT_BOUNDARY: lambda dist, y, radius, cfg: soft_boundary_loss(dist, y, radius, cfg.nu, cfg.eta, cfg.outlier_weight),
}
