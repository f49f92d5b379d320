"""Stacked training equals training each run alone (the single-run functions are the reference).

In float64 the stack agrees with the single runs to rounding (~1e-14), which shows the two compute
the same thing: the same shuffles, the same per-run batch-norm statistics, the same Adam steps, the
same lr schedule and the same per-batch radius. The float32 check uses the production dtype with a
tolerance; it is done for Deep SVDD only, because in float32 Adam's first step turns a rounding-noise
gradient of ~0 into a step of +-lr, which an autoencoder run sometimes shows in a few weights.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from ssd_cli.core.config import Objective, OptimConfig, TrainConfig
from ssd_cli.core.nets import DECODERS, AutoEncoder, Classifier, Encoder, get_spec
from ssd_cli.core.stacked import (
    pretrain_autoencoders_stacked,
    stack_is_faster,
    train_classifiers_stacked,
    train_deep_svdd_stacked,
)
from ssd_cli.core.training import (
    EpochInfo,
    classifier_scores,
    distances,
    pretrain_autoencoder,
    seeded_init,
    train_classifier,
    train_deep_svdd,
)

SPEC = get_spec("mnist")
N = 300  # 4 full batches of 64 and a partial one of 44
OPTIM = OptimConfig(epochs=2, lr=1e-3, lr_milestones=(1,), lr_gamma=0.1, weight_decay=1e-6, batch_size=64)
SEEDS = [11, 12, 13, 14]
TIGHT = {"rtol": 1e-9, "atol": 1e-12}  # float64: equal up to rounding


def _images(k: int, n: int, dtype: torch.dtype, seed: int = 0, spec=SPEC) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, spec.channels, spec.image_size, spec.image_size)
    return [torch.rand(shape, generator=g, dtype=dtype).contiguous(memory_format=torch.channels_last) for _ in range(k)]


def _labels() -> list[torch.Tensor]:
    """Run 0 unlabeled only, run 1 labeled anomalies and normals, run 2 labeled anomalies, run 3 none."""
    ys = [torch.zeros(N, dtype=torch.int8) for _ in SEEDS]
    ys[1][:20], ys[1][150:160] = -1, 1
    ys[2][::20] = -1
    return ys


def _configs(optim: OptimConfig = OPTIM) -> list[TrainConfig]:
    """One-class, one-class SS (eta 2), soft-boundary SS (nu 0.1) and soft-boundary (nu 0.01), mixed."""
    return [
        TrainConfig(Objective.ONE_CLASS, optim=optim),
        TrainConfig(Objective.ONE_CLASS, eta=2.0, optim=optim),
        TrainConfig(Objective.SOFT_BOUNDARY, nu=0.1, optim=optim),
        TrainConfig(Objective.SOFT_BOUNDARY, nu=0.01, optim=optim),
    ]


def _nets(build, seeds: list[int], dtype: torch.dtype) -> tuple[list[nn.Module], list[nn.Module]]:
    """Two identical sets of freshly initialised networks: one for the single runs, one for the stack."""
    nets = [seeded_init(build, s).to(dtype) for s in seeds]
    return nets, [copy.deepcopy(m) for m in nets]


def _assert_same_state(a: nn.Module, b: nn.Module, **tol) -> None:
    """Every parameter and buffer (batch-norm running statistics and batch counts included)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sb[name], sa[name], **tol, msg=lambda m, name=name: f"{name}: {m}")


# float32: c, R, losses and scores to rtol 1e-4; single weights can differ by a few 1e-5 (the Adam
# effect above, at lr 1e-3), so weights get atol 1e-4 = lr / 10. A real difference (another shuffle,
# a missed lr milestone, the wrong radius) moves weights by ~lr per step.
@pytest.mark.parametrize(
    "dtype, tol, weight_tol",
    [(torch.float64, TIGHT, TIGHT), (torch.float32, {"rtol": 1e-4, "atol": 1e-5}, {"rtol": 1e-4, "atol": 1e-4})],
    ids=["float64", "float32"],
)
@pytest.mark.slow
def test_deep_svdd_stack_equals_single_runs(dtype: torch.dtype, tol: dict, weight_tol: dict) -> None:
    xs, ys, cfgs = _images(len(SEEDS), N, dtype), _labels(), _configs()
    x_test = _images(1, 100, dtype, seed=1)[0]
    single, stacked = _nets(lambda: Encoder(SPEC), SEEDS, dtype)

    single_epochs: list[list[EpochInfo]] = []
    ref = []
    for enc, x, y, cfg, seed in zip(single, xs, ys, cfgs, SEEDS):
        single_epochs.append([])
        ref.append(train_deep_svdd(enc, x, y, cfg, seed=seed, on_epoch=single_epochs[-1].append))
    stack_epochs: list[list[EpochInfo]] = []
    got = train_deep_svdd_stacked(stacked, xs, ys, cfgs, SEEDS, on_epoch=stack_epochs.append)

    assert len(got) == len(SEEDS)
    for k, (r, g) in enumerate(zip(ref, got)):
        _assert_same_state(single[k], stacked[k], **weight_tol)
        torch.testing.assert_close(g.c, r.c, **tol)
        torch.testing.assert_close(g.radius, r.radius, **tol)
        torch.testing.assert_close(g.losses, r.losses, **tol)
        torch.testing.assert_close(distances(stacked[k], g.c, x_test), distances(single[k], r.c, x_test), **tol)
        assert stacked[k].training and stacked[k].convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert [r.radius > 0 for r in ref] == [False, False, True, True]  # the soft-boundary runs found an R

    # One callback per epoch with one EpochInfo per run; the lr milestone after epoch 1 applies.
    assert len(stack_epochs) == OPTIM.epochs and all(len(infos) == len(SEEDS) for infos in stack_epochs)
    for k in range(len(SEEDS)):
        for epoch, infos in enumerate(stack_epochs):
            mine, theirs = infos[k], single_epochs[k][epoch]
            assert (mine.epoch, mine.epochs, mine.lr) == (theirs.epoch, theirs.epochs, theirs.lr)
            torch.testing.assert_close(mine.loss, theirs.loss, **tol)
    assert [infos[0].lr for infos in stack_epochs] == pytest.approx([1e-3, 1e-4])


@pytest.mark.slow
def test_deep_svdd_stack_with_given_centers_and_shared_data() -> None:
    """One data tensor for all runs (several seeds of one setup) and centers passed in."""
    dtype, spec = torch.float64, get_spec("mnist", image_size=16)
    x = _images(1, N, dtype, spec=spec)[0]
    y = _labels()[1]
    cfgs = [TrainConfig(Objective.SOFT_BOUNDARY, nu=0.1, optim=OPTIM)] * 3
    seeds = SEEDS[:3]
    single, stacked = _nets(lambda: Encoder(spec), seeds, dtype)
    centers = [torch.full((spec.rep_dim,), 0.5 + k, dtype=dtype) for k in range(3)]

    ref = [train_deep_svdd(e, x, y, cfg, seed=s, c=c) for e, cfg, s, c in zip(single, cfgs, seeds, centers)]
    got = train_deep_svdd_stacked(stacked, x, y, cfgs, seeds, centers=centers)
    for k in range(3):
        _assert_same_state(single[k], stacked[k], **TIGHT)
        torch.testing.assert_close(got[k].c, centers[k], rtol=0, atol=0)
        torch.testing.assert_close(got[k].radius, ref[k].radius, **TIGHT)
        torch.testing.assert_close(got[k].losses, ref[k].losses, **TIGHT)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", DECODERS)
def test_autoencoder_pretraining_stack_equals_single_runs(decoder: str) -> None:
    """The mnist autoencoder on 16x16 images (float64 convolutions are slow on a CPU), each decoder."""
    dtype, seeds = torch.float64, SEEDS[:3]
    spec = replace(get_spec("mnist", image_size=16), decoder=decoder)
    optim = replace(OPTIM, weight_decay=0.5e-3)
    xs = _images(len(seeds), N, dtype, spec=spec)
    single, stacked = _nets(lambda: AutoEncoder(spec), seeds, dtype)

    ref = [pretrain_autoencoder(ae, x, optim, seed=s) for ae, x, s in zip(single, xs, seeds)]
    got = pretrain_autoencoders_stacked(stacked, xs, optim, seeds)
    torch.testing.assert_close(got, ref, **TIGHT)
    for a, b in zip(single, stacked):
        _assert_same_state(a, b, **TIGHT)


@pytest.mark.slow
def test_classifier_stack_equals_single_runs() -> None:
    """Shared images, per-run labels: the supervised baseline at several seeds."""
    dtype, spec, seeds = torch.float64, get_spec("mnist", image_size=16), SEEDS[:3]
    x = _images(1, N, dtype, spec=spec)[0]
    ys = _labels()[:3]
    single, stacked = _nets(lambda: Classifier(spec), seeds, dtype)

    ref = [train_classifier(clf, x, y, OPTIM, seed=s) for clf, y, s in zip(single, ys, seeds)]
    got = train_classifiers_stacked(stacked, x, ys, OPTIM, seeds)
    torch.testing.assert_close(got, ref, **TIGHT)
    for a, b in zip(single, stacked):
        _assert_same_state(a, b, **TIGHT)
        torch.testing.assert_close(classifier_scores(b, x), classifier_scores(a, x), **TIGHT)


def test_zero_epochs_leaves_the_weights_alone() -> None:
    spec = get_spec("mnist", image_size=8)
    encoders, before = _nets(lambda: Encoder(spec), SEEDS[:2], torch.float32)
    xs = _images(2, 20, torch.float32, spec=spec)
    y = torch.zeros(20, dtype=torch.int8)
    cfgs = [TrainConfig(Objective.SOFT_BOUNDARY, optim=replace(OPTIM, epochs=0))] * 2
    got = train_deep_svdd_stacked(encoders, xs, [y, y], cfgs, SEEDS[:2])
    assert [(r.losses, r.radius) for r in got] == [([], 0.0), ([], 0.0)]
    for a, b in zip(before, encoders):
        _assert_same_state(a, b, rtol=0, atol=0)


def test_runs_that_cannot_be_stacked_are_refused() -> None:
    spec = get_spec("mnist", image_size=8)
    encoders = [seeded_init(lambda: Encoder(spec), s) for s in (1, 2)]
    x = _images(1, 20, torch.float32, spec=spec)[0]
    y = torch.zeros(20, dtype=torch.int8)
    cfg = TrainConfig(optim=replace(OPTIM, epochs=1))
    with pytest.raises(ValueError, match="same number of training samples"):
        train_deep_svdd_stacked(encoders, [x, x[:10]], [y, y], [cfg, cfg], [1, 2])
    with pytest.raises(ValueError, match="one OptimConfig"):
        train_deep_svdd_stacked(encoders, x, y, [cfg, replace(cfg, optim=replace(OPTIM, lr=0.5))], [1, 2])
    with pytest.raises(ValueError, match="configs"):
        train_deep_svdd_stacked(encoders, x, y, [cfg, cfg], [1])
    other = seeded_init(lambda: Encoder(get_spec("fashion-mnist", image_size=8)), 3)
    with pytest.raises(ValueError, match="one architecture"):
        train_deep_svdd_stacked([encoders[0], other], x, y, [cfg, cfg], [1, 2], centers=[torch.ones(32)] * 2)
    with pytest.raises(TypeError, match="cannot stack"):
        pretrain_autoencoders_stacked([nn.Linear(2, 2)], torch.zeros(4, 2), OPTIM, [1])


def test_stacking_is_meant_for_cuda() -> None:
    assert stack_is_faster("cuda") and stack_is_faster(torch.device("cuda", 0))
    assert not stack_is_faster("cpu")
