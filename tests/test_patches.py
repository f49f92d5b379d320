"""Patch-level SS-DSVDD (ssd_cli/core/patches.py): the grid, the crops, c, the MIL objective, the map."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssd_cli.core import patches as P
from ssd_cli.core.config import Objective, OptimConfig, TrainConfig
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec
from ssd_cli.core.embedding import embed
from ssd_cli.core.objectives import one_class_loss, squared_distances
from ssd_cli.core.training import DeepSVDDResult, pretrain_autoencoder, sample_generator, seeded_init, train_deep_svdd
from ssd_cli.core.views import PatchView, Samples

TINY = LeNetSpec("tiny", channels=1, image_size=8, conv_filters=(8,), dense_units=(16,))  # for 8 px patches
GRID8 = P.PatchSpec(image_size=32, patch_size=8, stride=8)  # 4 x 4 non-overlapping patches


def texture(n: int, seed: int) -> torch.Tensor:
    """Grainy grey texture in [0.2, 0.7]: smoothed uniform noise."""
    noise = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(noise, 3, 1, 1, count_include_pad=False) * 0.5 + 0.2


def encoder(seed: int = 0) -> Encoder:
    return seeded_init(lambda: Encoder(TINY), seed)


# --- PatchSpec ------------------------------------------------------------------------------------


def test_patch_spec_grid_and_round_trip() -> None:
    p = P.PatchSpec(128, 32, 16)
    assert p.grid == 7
    assert P.PatchSpec(128, 128, 1).grid == 1
    assert P.PatchSpec.from_dict(p.to_dict()) == p
    assert p.to_dict()["grid"] == 7


@pytest.mark.parametrize(
    "args, message",
    [
        ((128, 129, 1), "patch size"),
        ((128, 32, 0), "stride"),
        ((128, 32, 33), "stride"),  # gaps between patches: pixels no patch sees
        ((128, 32, 20), "multiple of stride"),
        ((0, 1, 1), "image size"),
        ((2048, 32, 32), "image size"),
        ((128, 32.0, 16), "patch size"),
        ((128, True, 1), "patch size"),
        ((1024, 8, 1), "allowed"),
    ],
)
def test_patch_spec_rejects(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        P.PatchSpec(*args)


@pytest.mark.parametrize(
    "d",
    [[128, 32, 16], {"image_size": 128, "patch_size": 32}, {"image_size": 128, "patch_size": 32, "stride": 16, "extra": 1}, {"image_size": 128, "patch_size": 32, "stride": 16, "grid": 6}],
)
def test_patch_spec_from_dict_rejects(d: object) -> None:
    with pytest.raises(ValueError):
        P.PatchSpec.from_dict(d)


# --- patches and crops ----------------------------------------------------------------------------


def test_grid_patch_is_the_slice_it_claims_to_be() -> None:
    p = P.PatchSpec(20, 8, 4)
    x = torch.randn(2, 3, 20, 20)
    patches = P.grid_patches(x, p)
    assert patches.shape == (2, p.grid**2, 3, 8, 8) and p.grid == 4
    for i in range(p.grid):
        for j in range(p.grid):
            assert torch.equal(patches[:, i * p.grid + j], x[:, :, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8])
    assert torch.equal(patches[:, -1], x[:, :, -8:, -8:])  # the last patch touches the border
    with pytest.raises(ValueError, match="N x C x 20 x 20"):
        P.grid_patches(torch.zeros(1, 1, 24, 24), p)


def test_random_crops_are_slices_at_any_offset_and_seeded() -> None:
    p = P.PatchSpec(16, 8, 8)
    x = torch.randn(3, 2, 16, 16)
    images = torch.tensor([2, 0, 1, 2] * 100)
    crops, offsets = P.random_crops(x, images, p, sample_generator(7))
    assert crops.shape == (400, 2, 8, 8)
    for crop, i, (r, c) in zip(crops, images.tolist(), offsets.tolist()):
        assert torch.equal(crop, x[i, :, r : r + 8, c : c + 8])
    assert offsets.min() == 0 and offsets.max() == 8  # every pixel offset, not only grid positions
    assert set(offsets.flatten().tolist()) == set(range(9))
    again, again_offsets = P.random_crops(x, images, p, sample_generator(7))
    assert torch.equal(again, crops) and torch.equal(again_offsets, offsets)
    assert not torch.equal(P.random_crops(x, images, p, sample_generator(8))[1], offsets)


# --- training -------------------------------------------------------------------------------------


def _train(seed: int) -> tuple[list[float], DeepSVDDResult, Encoder]:
    x = texture(12, 0)
    y = torch.tensor([0] * 10 + [-1] * 2, dtype=torch.int8)
    ae = seeded_init(lambda: AutoEncoder(TINY), seed)
    ae_losses = pretrain_autoencoder(ae, x[y == 0], OptimConfig(epochs=2, lr=1e-3, batch_size=8), seed=seed, view=PatchView(GRID8, 3))
    enc = encoder(seed)
    enc.load_state_dict(ae.encoder.state_dict())
    result = train_deep_svdd(enc, x, y, TrainConfig(optim=OptimConfig(epochs=2, lr=1e-3, batch_size=8)), seed=seed, view=PatchView(GRID8, 3))
    return ae_losses, result, enc


def test_training_is_deterministic_for_a_seed() -> None:
    ae_a, res_a, enc_a = _train(3)
    ae_b, res_b, enc_b = _train(3)
    assert ae_a == ae_b and res_a.losses == res_b.losses and torch.equal(res_a.c, res_b.c)
    assert all(torch.equal(v, enc_b.state_dict()[k]) for k, v in enc_a.state_dict().items())
    ae_c, res_c, _ = _train(4)
    assert ae_c != ae_a and res_c.losses != res_a.losses
    assert res_a.radius == 0.0 and len(res_a.losses) == 2


def test_center_is_the_mean_over_grid_patches_of_non_anomalous_images() -> None:
    enc = encoder()
    x = texture(6, 1)
    x[4:] = 1.0  # the two labeled anomalies look nothing like the rest
    y = torch.tensor([0, 0, 1, 0, -1, -1], dtype=torch.int8)
    c = P.init_patch_center(enc, x, y, GRID8, eps=0.1)
    mean = embed(enc, P.grid_patches(x[:4], GRID8).flatten(0, 1)).mean(dim=0)
    expected = torch.where(mean.abs() < 0.1, torch.where(mean < 0, -0.1, 0.1), mean)
    torch.testing.assert_close(c, expected)
    with_anomalies = P.init_patch_center(enc, x, torch.zeros(6, dtype=torch.int8), GRID8, eps=0.1)
    assert not torch.allclose(c, with_anomalies)  # they would have moved c
    assert enc.training  # the mode is restored


def test_labeled_anomaly_pushes_only_its_most_anomalous_patch() -> None:
    """Multiple-instance objective: the anomalous image's gradient flows through its max patch only."""
    enc = encoder(1)
    x = texture(2, 2)
    x[1, :, 18:21, 10:13] = 1.0  # the defect: inside grid patch (2, 1) = 9
    x.requires_grad_(True)
    y = torch.tensor([0, -1], dtype=torch.int8)
    cfg = TrainConfig(eta=2.0)
    c = P.init_patch_center(enc, x.detach(), y, GRID8)
    worst = int(P.patch_distances(enc, c, x[1:].detach(), GRID8).flatten().argmax())
    assert worst == 9

    gen = sample_generator(0)
    state = gen.get_state()
    inputs, labels = PatchView(GRID8).inputs(Samples(x, y), enc, c, gen)
    loss = one_class_loss(squared_distances(enc(inputs), c), labels, cfg.eta, cfg.eps)
    loss.backward()
    grad = x.grad[1, 0].abs()
    r, col = divmod(worst, GRID8.grid)
    inside = torch.zeros_like(grad, dtype=torch.bool)
    inside[8 * r : 8 * r + 8, 8 * col : 8 * col + 8] = True
    assert grad[inside].sum() > 0 and grad[~inside].sum() == 0
    assert x.grad[0].abs().sum() > 0  # the unlabeled image's crop counts too

    # The value: (d_crop + eta / (d_max + eps)) / (n + m), the crop and the max patch in one batch.
    replay = torch.Generator()
    replay.set_state(state)
    crop, _ = P.random_crops(x.detach(), torch.tensor([0]), GRID8, replay)
    patch = P.grid_patches(x[1:].detach(), GRID8)[:, worst]
    with torch.no_grad():
        d = squared_distances(enc(torch.cat([crop, patch])), c)
    torch.testing.assert_close(loss.detach(), (d[0] + 2.0 / (d[1] + cfg.eps)) / 2)


def test_labeled_anomaly_trains_at_the_patch_it_was_located_at() -> None:
    """A batch that carries where each labeled anomaly was found uses that patch, not a new search."""
    enc = encoder(1)
    x = texture(2, 2)
    x[1, :, 18:21, 10:13] = 1.0  # worst patch 9 (above)
    y = torch.tensor([0, -1], dtype=torch.int8)
    c = P.init_patch_center(enc, x, y, GRID8)
    view = PatchView(GRID8)
    assert view.locate(enc, c, x, torch.tensor([1])).tolist() == [9]
    inputs, labels = view.inputs(Samples(x, y, located=torch.tensor([-1, 5])), enc, c, sample_generator(0))
    torch.testing.assert_close(inputs[1:], P.grid_patches(x[1:], GRID8)[:, 5].contiguous(memory_format=torch.channels_last))
    assert labels.tolist() == [0, -1]


class _SpyView(PatchView):
    """A patch view that records what training asks of it."""

    def __init__(self) -> None:
        super().__init__(GRID8, 2)
        object.__setattr__(self, "calls", {"locate": [], "located": []})

    def locate(self, encoder, c, x, rows):  # type: ignore[no-untyped-def]
        found = super().locate(encoder, c, x, rows)
        self.calls["locate"].append(found.clone())
        return found

    def inputs(self, batch, encoder, c, gen):  # type: ignore[no-untyped-def]
        if batch.masks is None:  # the real images' batch, not the synthetic anomalies'
            self.calls["located"].append(None if batch.located is None else (batch.y.clone(), batch.located.clone()))
        return super().inputs(batch, encoder, c, gen)


@pytest.mark.parametrize("augmented", [False, True])
def test_labeled_anomalies_are_located_once_per_epoch(augmented: bool) -> None:
    """Each labeled anomaly's worst patch is searched at the start of every epoch and used for the
    whole epoch; augmented images (a mirror moves the defect) are searched in every batch instead."""
    x = texture(6, 3)
    x[4:, :, 2:5, 20:23] = 1.0
    y = torch.tensor([0, 0, 0, 0, -1, -1], dtype=torch.int8)
    view = _SpyView()
    cfg = TrainConfig(optim=OptimConfig(epochs=3, lr=1e-3, batch_size=4), augment=("hflip",) if augmented else ())
    train_deep_svdd(encoder(2), x, y, cfg, seed=0, view=view)
    if augmented:  # searched by each batch that holds a labeled anomaly, never handed a location
        assert set(view.calls["located"]) == {None} and len(view.calls["locate"]) > 3
        return
    assert len(view.calls["locate"]) == 3 and all(found.shape == (2,) for found in view.calls["locate"])
    per_epoch = len(view.calls["located"]) // 3  # mini-batches per epoch
    for step, (labels, located) in enumerate(view.calls["located"]):
        assert ((located >= 0) == (labels < 0)).all()  # known for the labeled anomalies only
        found = view.calls["locate"][step // per_epoch]
        assert set(located[labels < 0].tolist()) <= set(found.tolist())


def test_bright_defect_scores_higher_and_is_located() -> None:
    """A 3x3 bright square on texture: the image outranks defect-free ones, the map points at it."""
    torch.manual_seed(0)
    x = texture(48, 10)
    clean, bad = texture(16, 11), texture(4, 12)
    spots = [(18, 10), (2, 27), (12, 4), (25, 25)]
    for i, (r, c) in enumerate(spots):
        bad[i, :, r : r + 3, c : c + 3] = 1.0
    enc = encoder(0)
    result = train_deep_svdd(enc, x, torch.zeros(48, dtype=torch.int8), TrainConfig(optim=OptimConfig(epochs=30, lr=1e-3)), seed=0, view=PatchView(GRID8, 4))
    clean_maps, bad_maps = P.patch_distances(enc, result.c, clean, GRID8), P.patch_distances(enc, result.c, bad, GRID8)
    assert bad_maps.shape == (4, 4, 4)
    assert P.image_scores(bad_maps).min() > P.image_scores(clean_maps).max()
    assert bad_maps.flatten(1).argmax(dim=1).tolist() == [(r // 8) * 4 + c // 8 for r, c in spots]
    # chunking does not change the map (3 patches per chunk rounds up to one image of 16)
    torch.testing.assert_close(P.patch_distances(enc, result.c, bad, GRID8, batch_size=3), bad_maps)


def test_image_score_is_the_worst_patch() -> None:
    maps = torch.tensor([[[0.1, 0.2], [0.3, 0.05]], [[2.0, 0.0], [0.0, 0.0]]])
    assert P.image_scores(maps).tolist() == pytest.approx([0.3, 2.0])


def test_soft_boundary_and_mismatched_network_are_refused() -> None:
    x, y = texture(2, 0), torch.zeros(2, dtype=torch.int8)
    soft = TrainConfig(objective=Objective.SOFT_BOUNDARY)
    with pytest.raises(ValueError, match="one-class objective only"):
        train_deep_svdd(encoder(), x, y, soft, seed=0, view=PatchView(GRID8, 1))
    with pytest.raises(ValueError, match="8 px inputs, but the patches are 1 x 16 px"):
        train_deep_svdd(encoder(), x, y, TrainConfig(), seed=0, view=PatchView(P.PatchSpec(32, 16, 16), 1))
    with pytest.raises(ValueError, match="patches per image"):
        PatchView(GRID8, 0)


def test_image_score_is_the_mean_of_the_top_k_patches_and_old_specs_keep_the_max() -> None:
    maps = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    assert P.image_scores(maps, 2).tolist() == pytest.approx([0.7])
    assert P.image_scores(maps, 4).tolist() == pytest.approx([0.45])
    spec = P.PatchSpec(32, 8, 4, top_k=4)
    assert P.PatchSpec.from_dict(spec.to_dict()) == spec
    old = {"image_size": 32, "patch_size": 8, "stride": 4, "grid": 7}  # a file of ssd 0.4: no top_k
    assert P.PatchSpec.from_dict(old).top_k == 1
    with pytest.raises(ValueError, match="top_k must be an integer from 1 to the 49 patches"):
        P.PatchSpec(32, 8, 4, top_k=50)
