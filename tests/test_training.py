"""Center initialisation, Algorithm 1, seeding, pretraining and a real detection check on sample_data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ssd_cli.core import pipeline
from ssd_cli.core.config import Objective, OptimConfig, Preprocessing, TrainConfig
from ssd_cli.core.scoring import Scorer
from ssd_cli.core.nets import AutoEncoder, get_spec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.embedding import CenterError, embed, init_center
from ssd_cli.errors import ExitCode, TrainingDiverged
from ssd_cli.core.training import (
    distances,
    pretrain_autoencoder,
    reconstruction_loss,
    seeded_init,
    train_deep_svdd,
)

CPU = torch.device("cpu")
SPEC = get_spec("mnist")


class Identity(nn.Module):
    """An 'encoder' whose representation is its input, so c can be worked out by hand."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.spec = SimpleNamespace(rep_dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def y_of(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int8)


# --- init_center -----------------------------------------------------------------------------


def test_center_is_mean_of_unlabeled_and_normals_only() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [100.0, -100.0], [-50.0, 80.0]], dtype=torch.float64)
    y = y_of(0, 0, 1, -1, -1)
    c = init_center(Identity(2), x, y, eps=0.1)
    assert torch.equal(c, torch.tensor([3.0, 4.0], dtype=torch.float64))
    # the anomalies really would have moved it
    assert not torch.allclose(x.mean(dim=0), c)


def test_center_with_a_real_encoder_ignores_anomalies() -> None:
    enc = seeded_init(lambda: pipeline.Encoder(SPEC), 0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 28, 28, generator=gen)
    x[8:] *= 5.0  # the labeled anomalies look very different
    y = y_of(*([0] * 6 + [1] * 2 + [-1] * 4))
    c = init_center(enc, x, y, eps=0.0)
    torch.testing.assert_close(c, embed(enc, x[:8]).mean(dim=0))
    assert not torch.allclose(c, embed(enc, x).mean(dim=0))
    assert enc.training, "init_center must leave the encoder in the mode it found it"


def test_small_center_coordinates_are_pushed_to_eps() -> None:
    x = torch.tensor([[0.05, -0.05, 0.0, 0.5, -0.3, 0.1, -0.0999, 1e-9]], dtype=torch.float64)
    c = init_center(Identity(8), x, y_of(0), eps=0.1)
    assert c.tolist() == pytest.approx([0.1, -0.1, 0.1, 0.5, -0.3, 0.1, -0.1, 0.1])
    assert c[2].item() == pytest.approx(0.1), "an exact 0 must become +eps, not -eps"
    assert (c.abs() >= 0.1 - 1e-12).all()


@pytest.mark.parametrize(
    "rows,labels,match",
    [
        ([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], (0, 1), "all zero"),
        ([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]], (0, 0), "all zero"),  # cancels out to exactly 0
        ([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], (-1, -1), "no unlabeled"),
    ],
)
def test_bad_centers_raise(rows, labels, match: str) -> None:
    x = torch.tensor(rows, dtype=torch.float64)
    with pytest.raises(CenterError, match=match):
        init_center(Identity(3), x, y_of(*labels), eps=0.1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_center_that_is_not_finite_is_divergence_not_bad_input(bad: float) -> None:
    """Inputs are bounded, so only weights blown up by the pretraining make phi overflow: exit 6."""
    x = torch.tensor([[bad, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    with pytest.raises(TrainingDiverged, match="pretrain-lr") as caught:
        init_center(Identity(3), x, y_of(0, 0), eps=0.1)
    assert caught.value.exit_code == ExitCode.DIVERGED


# --- Algorithm 1 on a small real set ---------------------------------------------------------


@pytest.fixture(scope="module")
def small(sample_images):
    """60 zeros unlabeled + 8 labeled anomalies, preprocessed: fast enough to train several times."""
    pre = Preprocessor.fit(Preprocessing.SCALE, sample_images.normal[:60])
    x, y = pipeline.training_tensors(pre, CPU, sample_images.normal[:60], None, sample_images.anomalies[:8])
    return x, y


def quick_run(x: torch.Tensor, y: torch.Tensor, seed: int, objective: Objective = Objective.SOFT_BOUNDARY, epochs: int = 2):
    optim = OptimConfig(epochs=epochs, lr=1e-3, batch_size=16)
    ae, _ = pipeline.pretrain(SPEC, x[y == 0], OptimConfig(epochs=1, lr=1e-3, batch_size=16), seed=seed)
    enc = pipeline.initial_encoder(SPEC, ae, seed, CPU)
    res = train_deep_svdd(enc, x, y, TrainConfig(objective=objective, nu=0.1, optim=optim), seed=seed)
    return enc, res, distances(enc, res.c, x)


def test_soft_boundary_radius_starts_at_zero_and_grows(small) -> None:
    x, y = small
    enc = seeded_init(lambda: pipeline.Encoder(SPEC), 0)
    cfg = TrainConfig(objective=Objective.SOFT_BOUNDARY, nu=0.1, optim=OptimConfig(epochs=0))
    assert train_deep_svdd(enc, x, y, cfg, seed=0).radius == 0.0
    _, res, _ = quick_run(x, y, seed=0)
    assert res.radius > 0
    assert math.isfinite(res.radius)


def test_one_class_has_no_radius_and_its_loss_falls(small) -> None:
    x, y = small
    _, res, _ = quick_run(x, y, seed=0, objective=Objective.ONE_CLASS, epochs=4)
    assert res.radius == 0.0
    assert res.losses[-1] < res.losses[0]


def test_given_center_is_used_unchanged(small) -> None:
    x, y = small
    enc = seeded_init(lambda: pipeline.Encoder(SPEC), 0)
    c = torch.full((SPEC.rep_dim,), 0.7)
    res = train_deep_svdd(enc, x, y, TrainConfig(optim=OptimConfig(epochs=1, batch_size=32)), seed=0, c=c)
    assert torch.equal(res.c, c)


def test_same_seed_is_bit_identical_on_cpu(small) -> None:
    x, y = small
    rng_before = torch.random.get_rng_state()
    enc1, res1, s1 = quick_run(x, y, seed=7)
    enc2, res2, s2 = quick_run(x, y, seed=7)
    assert torch.equal(torch.random.get_rng_state(), rng_before), "training must not consume the global RNG"
    state1, state2 = enc1.state_dict(), enc2.state_dict()
    assert state1.keys() == state2.keys()
    for k in state1:
        assert torch.equal(state1[k], state2[k]), k
    assert torch.equal(res1.c, res2.c)
    assert res1.radius == res2.radius
    assert res1.losses == res2.losses
    assert torch.equal(s1, s2)


def test_different_seed_differs(small) -> None:
    x, y = small
    enc1, res1, s1 = quick_run(x, y, seed=7)
    enc3, res3, s3 = quick_run(x, y, seed=8)
    assert not torch.equal(enc1.dense[0].weight, enc3.dense[0].weight)
    assert not torch.equal(res1.c, res3.c)
    assert not torch.equal(s1, s3)


def test_pretraining_lowers_reconstruction_loss(small) -> None:
    x, y = small
    ae = seeded_init(lambda: AutoEncoder(SPEC), 0)
    xu = x[y == 0]

    def eval_loss() -> float:
        ae.eval()
        with torch.no_grad():
            loss = reconstruction_loss(ae(xu), xu).item()
        ae.train()
        return loss

    before = eval_loss()
    losses = pretrain_autoencoder(ae, xu, OptimConfig(epochs=6, lr=1e-3, weight_decay=0.5e-3, batch_size=16), seed=0)
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]
    assert eval_loss() < 0.8 * before


# --- the trained sample model (conftest: 10 + 10 epochs on sample_data) ----------------------


def test_sample_model_ranks_anomalies_first(sample_model, sample_images) -> None:
    scores = Scorer(sample_model, CPU).score(sample_images.incoming)
    assert len(scores) == len(sample_images.truth) == 100
    auc = roc_auc_score(sample_images.truth, scores.numpy())
    assert auc > 0.8, f"AUC {auc:.3f} on sample_data/incoming"


def test_sample_model_is_not_collapsed(sample_model, sample_images) -> None:
    """The PyOD-style failure modes: constant scores, a zero or near-zero center."""
    scores = Scorer(sample_model, CPU).score(sample_images.incoming)
    assert torch.isfinite(scores).all()
    assert scores.std().item() > 1e-3 * scores.mean().item() > 0
    assert len(torch.unique(scores)) > 90
    c = sample_model.c
    assert c.shape == (SPEC.rep_dim,)
    assert (c.abs() >= TrainConfig().center_eps - 1e-7).all()


def test_sample_model_threshold_is_the_training_quantile(sample_model) -> None:
    t = sample_model.training
    assert sample_model.objective is Objective.ONE_CLASS
    assert (t["n_unlabeled"], t["n_labeled_normal"], t["n_labeled_anomalous"]) == (400, 0, 45)
    assert sample_model.threshold > 0
    # threshold = 0.95-quantile of the 400 non-anomalous training scores: about 5% lie above it
    assert 0.0 < t["fraction_outside_threshold"] <= 0.05 + 1 / 400
