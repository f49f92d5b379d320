"""Whitened scores (core/whitening.py): folding the whitening into phi's output layer gives exactly
the Mahalanobis distance under scikit-learn's Ledoit-Wolf covariance, computed here the long way;
degenerate embeddings leave phi alone; patch models get it by default and the plan, the model file
and `ssd info` say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssd_cli.core.embedding import embed
from ssd_cli.core.nets import Encoder, LeNetSpec
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.patches import PatchSpec, patch_distances
from ssd_cli.core.views import PatchView
from ssd_cli.core.whitening import ledoit_wolf, moments, whiten
from ssd_cli.errors import ExitCode
from ssd_cli.io.modelfile import load_model
from conftest import ok, one_line_error, photos, ssd

FAST = ["--device", "cpu", "--batch-size", "16", "--epochs", "1", "--force"]

SPEC = LeNetSpec("mnist", channels=1, image_size=16, conv_filters=(4, 8), dense_units=(6,))


def encoder(seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(SPEC).eval()


def mahalanobis(z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The long way: scikit-learn's Ledoit-Wolf estimate of the training embeddings' covariance."""
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(train)
    v = z - fitted.location_
    return np.einsum("ni,ij,nj->n", v, fitted.precision_, v)


@pytest.mark.parametrize(("n", "offset"), [(40, 0.0), (300, 0.0), (2000, 5.0)])
def test_moments_and_shrinkage_are_scikit_learns(n: int, offset: float) -> None:
    """Accumulated in one pass from raw sums, they match the estimator run on all embeddings at once,
    far from the origin too (where the expansion of the centred sums could lose precision)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    enc = encoder(4)
    with torch.no_grad():
        enc.dense[-1].weight.add_(offset / SPEC.dense_units[-1])  # embeddings far from 0
    x = torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(n))
    z = embed(enc, x).double().numpy()
    mom = moments(enc, x.split(64))
    assert mom.n == n
    np.testing.assert_allclose(mom.mean.numpy(), z.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mom.cov.numpy(), np.cov(z, rowvar=False, bias=True), rtol=1e-7, atol=1e-10)
    assert ledoit_wolf(mom) == pytest.approx(ledoit_wolf_shrinkage(z), rel=1e-6, abs=1e-9)
    assert 0 < ledoit_wolf(mom) < 1


def test_the_folded_distance_is_the_mahalanobis_distance() -> None:
    enc = encoder()
    gen = torch.Generator().manual_seed(1)
    train, test = torch.randn(300, 1, 16, 16, generator=gen), torch.randn(40, 1, 16, 16, generator=gen) * 1.5
    before_train, before_test = embed(enc, train).double().numpy(), embed(enc, test).double().numpy()
    folded = whiten(enc, train.split(64))
    assert folded is not None
    centre, record = folded
    assert record.n == 300 and 0 < record.shrinkage < 1 and record.condition >= 1
    got = squared_distances(embed(enc, test), centre).double().numpy()
    want = mahalanobis(before_test, before_train)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    # and it is not the plain distance to the mean: directions are weighed by their spread
    plain = ((before_test - before_train.mean(axis=0)) ** 2).sum(axis=1)
    assert abs(np.corrcoef(got, plain)[0, 1]) < 0.999
    # with more embeddings the shrinkage falls: the estimate needs less of it
    more = torch.randn(3000, 1, 16, 16, generator=gen)
    assert ledoit_wolf(moments(encoder(), more.split(256))) < ledoit_wolf(moments(encoder(), train.split(64)))


def test_patch_grids_are_whitened_patch_by_patch() -> None:
    """Through a patch view, the moments are those of every grid patch, and maps are Mahalanobis."""
    spec = PatchSpec(image_size=32, patch_size=16, stride=8)
    view = PatchView(spec)
    enc = encoder(2)
    images = torch.randn(20, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    patches = view.scored_inputs(images)
    assert patches.shape == (20 * spec.grid**2, 1, 16, 16)
    before = embed(enc, patches).double().numpy()
    folded = whiten(enc, (view.scored_inputs(chunk) for chunk in images.split(7)))
    assert folded is not None and folded[1].n == len(patches)
    maps = patch_distances(enc, folded[0], images[:3], spec) ** 2
    want = mahalanobis(before[: 3 * spec.grid**2], before).reshape(3, spec.grid, spec.grid)
    np.testing.assert_allclose(maps.double().numpy(), want, rtol=2e-3)


def test_embeddings_that_do_not_vary_leave_phi_as_trained() -> None:
    enc = encoder()
    weights = enc.dense[-1].weight.clone()
    assert whiten(enc, [torch.ones(30, 1, 16, 16)]) is None  # one input repeated: no spread
    assert whiten(enc, [torch.randn(1, 1, 16, 16)]) is None  # one sample: no spread to estimate
    assert torch.equal(enc.dense[-1].weight, weights)


@pytest.mark.slow
def test_patch_models_score_mahalanobis_distances_unless_told_not_to(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", 12, (128, 128), colour=False)
    out, unwhitened = tmp_path / "m.safetensors", tmp_path / "plain.safetensors"
    text = " ".join(ok(ssd("train", "-u", folder, "--out", out, "--threshold-from", "quantile", *FAST)).split())
    assert "scores are Mahalanobis distances" in text
    whitened = load_model(out)
    assert whitened.patch is not None and whitened.training["config"]["whiten"] is True
    assert whitened.training["whitening"]["n"] == 12 * whitened.patch.grid**2
    assert "scores: Mahalanobis (phi whitened)" in " ".join(ok(ssd("info", out)).split())
    text = " ".join(ok(ssd("train", "-u", folder, "--out", unwhitened, "--threshold-from", "quantile", "--no-whiten", *FAST)).split())
    assert "Mahalanobis" not in text
    plain = load_model(unwhitened)
    assert plain.training["config"]["whiten"] is False and plain.training["whitening"] is None
    assert "scores: distance to c" in " ".join(ok(ssd("info", unwhitened)).split())
    # the same training either way: only phi's output layer and c differ
    last = f"dense.{len(plain.spec.dense_units) - 1}.weight"
    differ = [name for name, tensor in plain.encoder_state.items() if not torch.equal(tensor, whitened.encoder_state[name])]
    assert differ == [last] and not torch.equal(plain.c, whitened.c)


def test_whitening_is_for_the_one_class_objective(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = ssd("train", "-u", sample_dir / "normal", "--out", out, "--objective", "soft-boundary", "--whiten", *FAST)
    one_line_error(result, ExitCode.USAGE, "whitened scores are for the one-class objective")
    assert not out.exists()
