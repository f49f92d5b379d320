"""Objectives (1)-(4) of the paper and the radius solver, checked against numbers worked out by hand."""

from __future__ import annotations

import itertools

import pytest
import torch

from ssd_cli.core.config import Objective, TrainConfig
from ssd_cli.core.objectives import (
    LOSSES,
    hinge,
    one_class_loss,
    soft_boundary_loss,
    solve_radius,
    squared_distances,
)

F64 = torch.float64


def t(values, dtype=F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def labels(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int8)  # the dtype training uses


# --- building blocks ---------------------------------------------------------------------------


def test_hinge_is_max_zero_minus_z() -> None:
    assert torch.equal(hinge(t([-2.0, -0.5, 0.0, 0.5, 3.0])), t([2.0, 0.5, 0.0, 0.0, 0.0]))


def test_squared_distances_per_row() -> None:
    z = t([[1.0, 2.0], [0.0, 0.0], [4.0, -1.0]])
    c = t([1.0, 1.0])
    assert torch.equal(squared_distances(z, c), t([1.0, 2.0, 13.0]))


# --- objective (4): one-class SS-DSVDD --------------------------------------------------------


def test_one_class_loss_by_hand() -> None:
    dist = t([0.5, 2.0, 4.0, 0.25])
    y = labels([0, 1, -1, 0])
    eta, eps = 2.0, 0.5
    # unlabeled: d; labeled normal: eta * d; labeled anomaly: eta / (d + eps); divided by n + m = 4
    expected = (0.5 + 0.25 + 2.0 * 2.0 + 2.0 / (4.0 + 0.5)) / 4
    assert one_class_loss(dist, y, eta, eps).item() == pytest.approx(expected, rel=1e-12)


def test_one_class_loss_normalises_by_n_plus_m_not_n() -> None:
    dist = t([1.0, 3.0, 5.0])
    y = labels([0, 1, 1])  # n = 1, m = 2
    assert one_class_loss(dist, y, eta=1.0, eps=1e-6).item() == pytest.approx((1 + 3 + 5) / 3)
    # eta scales only the labeled term, the denominator stays n + m
    assert one_class_loss(dist, y, eta=3.0, eps=1e-6).item() == pytest.approx((1 + 3 * 3 + 3 * 5) / 3)


def test_one_class_anomaly_term_is_inverse_with_eps() -> None:
    eta, eps = 1.5, 1e-3
    # an anomaly exactly at the center costs eta / eps (finite), not infinity
    loss = one_class_loss(t([0.0]), labels([-1]), eta, eps)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(eta / eps)
    # farther away is cheaper for a labeled anomaly, dearer for anything else
    far, near = t([10.0]), t([0.1])
    assert one_class_loss(far, labels([-1]), eta, eps) < one_class_loss(near, labels([-1]), eta, eps)
    assert one_class_loss(far, labels([0]), eta, eps) > one_class_loss(near, labels([0]), eta, eps)
    assert one_class_loss(far, labels([1]), eta, eps) > one_class_loss(near, labels([1]), eta, eps)


def test_one_class_gradient_pushes_anomalies_out() -> None:
    dist = t([1.0, 2.0]).requires_grad_()
    one_class_loss(dist, labels([0, -1]), eta=1.0, eps=0.0).backward()
    # d/dd (d / 2) = 1/2 for the unlabeled sample; d/dd (1 / (2 d)) = -1 / (2 d^2) for the anomaly
    assert dist.grad.tolist() == pytest.approx([0.5, -1 / (2 * 4.0)])


def test_one_class_reduces_to_objective_2_without_labels() -> None:
    dist = t([0.5, 2.0, 4.0, 0.25])
    y = labels([0, 0, 0, 0])
    for eta in (0.1, 1.0, 7.0):  # eta must not matter when m = 0
        assert one_class_loss(dist, y, eta, 1e-6).item() == pytest.approx((0.5 + 2.0 + 4.0 + 0.25) / 4)


# --- objective (3): soft-boundary SS-DSVDD ------------------------------------------------------


def test_soft_boundary_loss_by_hand() -> None:
    dist = t([0.5, 3.0, 1.0, 4.0, 2.5])
    y = labels([0, 0, -1, -1, 1])
    radius, nu, eta = t(1.5), 0.5, 2.0
    # R^2 = 2.25. Violations l(y~ (R^2 - d)) with l(z) = max(0, -z):
    #   unlabeled 0.5 inside: 0;  unlabeled 3.0 outside: 0.75
    #   anomaly 1.0 inside: eta * 1.25 = 2.5;  anomaly 4.0 outside: 0
    #   normal 2.5 outside: eta * 0.25 = 0.5
    expected = 2.25 + (0.75 + 2.5 + 0.5) / (nu * 5)
    assert expected == pytest.approx(3.75)
    assert soft_boundary_loss(dist, y, radius, nu, eta).item() == pytest.approx(expected, rel=1e-12)


def test_soft_boundary_reduces_to_objective_1_without_labels() -> None:
    dist = t([0.5, 3.0, 1.0, 4.0, 2.5])
    y = labels([0] * 5)
    radius, nu = t(1.2), 0.4
    r2 = 1.44
    expected = r2 + sum(max(0.0, d - r2) for d in dist.tolist()) / (nu * 5)
    for eta in (0.1, 1.0, 9.0):
        assert soft_boundary_loss(dist, y, radius, nu, eta).item() == pytest.approx(expected, rel=1e-12)


def test_soft_boundary_zero_radius_is_mean_distance_over_nu() -> None:
    dist = t([1.0, 2.0, 3.0])
    assert soft_boundary_loss(dist, labels([0, 0, 0]), t(0.0), 0.5, 1.0).item() == pytest.approx(6.0 / (0.5 * 3))


def test_losses_registry_uses_config() -> None:
    dist, y = t([0.5, 3.0, 1.0, 4.0, 2.5]), labels([0, 0, -1, -1, 1])
    cfg = TrainConfig(objective=Objective.SOFT_BOUNDARY, nu=0.5, eta=2.0)
    assert LOSSES[Objective.SOFT_BOUNDARY](dist, y, t(1.5), cfg).item() == pytest.approx(3.75)
    cfg = TrainConfig(objective=Objective.ONE_CLASS, eta=2.0, eps=0.5)
    expected = (0.5 + 3.0 + 2.0 / 1.5 + 2.0 / 4.5 + 2.0 * 2.5) / 5
    assert LOSSES[Objective.ONE_CLASS](dist, y, t(0.0), cfg).item() == pytest.approx(expected)


# --- solving for R ------------------------------------------------------------------------------


def reference_objective(r2: float, dist: list[float], y: list[int], nu: float, eta: float) -> float:
    """Objective (3) as a function of r = R^2, written out independently of the library."""
    total = 0.0
    for d, label in zip(dist, y):
        if label == 0:
            total += max(0.0, d - r2)
        elif label > 0:
            total += eta * max(0.0, d - r2)
        else:
            total += eta * max(0.0, r2 - d)
    return r2 + total / (nu * len(dist))


@pytest.mark.parametrize("nu", [0.05, 0.1, 0.25, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_solve_radius_unlabeled_is_a_quantile(nu: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    dist = torch.rand(40, generator=gen, dtype=F64) * 5
    y = labels([0] * 40)
    r2 = solve_radius(dist, y, nu, eta=1.0).item() ** 2
    tol = 1e-9
    above = (dist > r2 + tol).double().mean().item()
    at_or_above = (dist >= r2 - tol).double().mean().item()
    assert above <= nu + 1e-12, f"{above:.3f} of the distances lie strictly outside R^2, more than nu={nu}"
    assert at_or_above >= nu - 1e-12, f"only {at_or_above:.3f} of the distances lie on or outside R^2 < nu={nu}"


def test_solve_radius_small_nu_encloses_almost_all() -> None:
    dist = t([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    y = labels([0] * 10)
    assert solve_radius(dist, y, nu=0.05, eta=1.0).item() ** 2 == pytest.approx(10.0)
    assert solve_radius(dist, y, nu=0.15, eta=1.0).item() ** 2 == pytest.approx(9.0)


CASES = {
    "unlabeled": [0] * 12,
    "unlabeled+normals": [0] * 8 + [1] * 4,
    "unlabeled+anomalies": [0] * 9 + [-1] * 3,
    "mixed": [0, 0, 0, 0, 0, 1, 1, 1, -1, -1, -1, -1],
    "only anomalies": [-1] * 12,
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("nu,eta", [(0.1, 1.0), (0.3, 0.5), (0.5, 4.0), (1.0, 2.0)])
def test_solve_radius_beats_a_dense_grid(case: str, nu: float, eta: float) -> None:
    y_list = CASES[case]
    gen = torch.Generator().manual_seed(len(case))
    dist = torch.rand(len(y_list), generator=gen, dtype=F64) * 3
    if -1 in y_list:  # labeled anomalies a bit farther out, as after some training
        dist = dist + torch.tensor([1.0 if v < 0 else 0.0 for v in y_list], dtype=F64)
    d_list = dist.tolist()
    radius = solve_radius(dist, labels(y_list), nu, eta)
    assert radius.shape == ()
    assert radius.item() >= 0
    best = reference_objective(radius.item() ** 2, d_list, y_list, nu, eta)
    grid = torch.linspace(0, max(d_list) * 1.5, 3001, dtype=F64).tolist() + d_list
    grid_best = min(reference_objective(r2, d_list, y_list, nu, eta) for r2 in grid)
    assert best <= grid_best + 1e-9, f"R^2={radius.item() ** 2:.4f} gives {best:.6f}, the grid reaches {grid_best:.6f}"
    # and the library's own loss agrees with the reference at the solution
    lib = soft_boundary_loss(dist, labels(y_list), radius, nu, eta).item()
    assert lib == pytest.approx(best, rel=1e-9)


def test_solve_radius_labeled_anomalies_shrink_the_sphere() -> None:
    dist = t([1.0, 1.1, 1.2, 1.3, 5.0, 5.5, 6.0])
    # as unlabeled points, the far ones would drag R out with nu = 0.1 ...
    r_unlabeled = solve_radius(dist, labels([0] * 7), nu=0.1, eta=1.0).item()
    # ... labeled as anomalies they must stay outside
    r_labeled = solve_radius(dist, labels([0, 0, 0, 0, -1, -1, -1]), nu=0.1, eta=1.0).item()
    assert r_unlabeled**2 == pytest.approx(6.0)
    assert 1.3 - 1e-9 <= r_labeled**2 <= 5.0 + 1e-9
    assert r_labeled < r_unlabeled


def test_solve_radius_float32_and_no_grad() -> None:
    dist = torch.tensor([0.3, 0.9, 2.0, 0.1], requires_grad=True)
    radius = solve_radius(dist, labels([0, 0, 1, -1]), 0.5, 1.0)
    assert radius.dtype == torch.float32
    assert not radius.requires_grad


def test_batched_leading_dims_match_per_row() -> None:
    gen = torch.Generator().manual_seed(3)
    dist = torch.rand(3, 2, 7, generator=gen, dtype=F64) * 4
    y_shared = labels([0, 0, 1, 0, -1, 0, -1])
    y_full = torch.randint(-1, 2, (3, 2, 7), generator=gen).to(torch.int8)
    radius = torch.rand(3, 2, generator=gen, dtype=F64)
    nu, eta, eps = 0.3, 1.7, 1e-3
    for y in (y_shared, y_full):
        yb = y.expand_as(dist)
        r_batched = solve_radius(dist, y, nu, eta)
        sb_batched = soft_boundary_loss(dist, y, radius, nu, eta)
        oc_batched = one_class_loss(dist, y, eta, eps)
        assert r_batched.shape == sb_batched.shape == oc_batched.shape == (3, 2)
        for i, j in itertools.product(range(3), range(2)):
            assert r_batched[i, j].item() == pytest.approx(solve_radius(dist[i, j], yb[i, j], nu, eta).item(), rel=1e-12)
            assert sb_batched[i, j].item() == pytest.approx(
                soft_boundary_loss(dist[i, j], yb[i, j], radius[i, j], nu, eta).item(), rel=1e-12
            )
            assert oc_batched[i, j].item() == pytest.approx(one_class_loss(dist[i, j], yb[i, j], eta, eps).item(), rel=1e-12)
