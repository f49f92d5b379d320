"""Synthetic anomalies (core/synthetic.py), mask-aware patch labels (core/views.py) and the one loop
with extra sample sources: what they change is what their masks say, and the paper's path is intact."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssd_cli.core.config import LOCAL_KINDS, AnomalyLoss, Objective, OptimConfig, SyntheticConfig, TrainConfig, parse_kinds
from ssd_cli.core.nets import Encoder, LeNetSpec
from ssd_cli.core.objectives import anomaly_term, one_class_loss, squared_distances
from ssd_cli.core.roles import OUTLIER
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.synthetic import GENERATORS, make_anomalies
from ssd_cli.core.training import minibatches, seeded_init, synthesize, train_deep_svdd
from ssd_cli.core.views import PatchView, Samples, WholeView, holds_defect

TINY = LeNetSpec("tiny", channels=1, image_size=8, conv_filters=(8,), dense_units=(16,))
GRID = PatchSpec(image_size=32, patch_size=8, stride=4)


def noise(n: int, ch: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, ch, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", LOCAL_KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_each_generator_changes_exactly_its_mask_and_is_seeded(kind: str, channels: int) -> None:
    x = noise(24, channels)
    cfg = SyntheticConfig(kinds=(kind,))
    out, masks = make_anomalies(x, cfg, 16, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and masks.shape == (24, 32, 32) and masks.dtype == torch.bool
    changed = (out != x).any(dim=1)
    assert not (changed & ~masks).any(), "a pixel outside the mask was changed"
    assert masks.flatten(1).any(dim=1).all(), "every anomaly has a non-empty mask"
    assert (changed & masks).sum() >= 0.8 * masks.sum(), "the mask marks pixels that were not changed"
    again, again_masks = make_anomalies(x, cfg, 16, torch.Generator().manual_seed(5))
    assert torch.equal(again, out) and torch.equal(again_masks, masks)
    other, other_masks = make_anomalies(x, cfg, 16, torch.Generator().manual_seed(6))
    assert not torch.equal(other_masks, masks)


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_defects_stay_small_against_the_scale(kind: str) -> None:
    """The defect lies in a box of at most max_side * scale px (its diagonal for rotated scars)."""
    cfg = SyntheticConfig(kinds=(kind,), min_side=0.2, max_side=0.4)
    _, masks = make_anomalies(noise(40, size=64), cfg, 20, torch.Generator().manual_seed(0))
    for m in masks:
        rows, cols = torch.nonzero(m, as_tuple=True)
        extent = max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) + 1
        assert extent <= math.ceil(0.4 * 20 * math.sqrt(3)) + 2  # a cutpaste of aspect 3 is longest


@pytest.mark.parametrize("channels", [1, 3])
def test_rotate_turns_whole_images_seeded(channels: int) -> None:
    x = noise(30, channels)
    cfg = SyntheticConfig(kinds=("rotate",))
    out, masks = make_anomalies(x, cfg, 32, torch.Generator().manual_seed(5))
    assert masks.all(), "a turned image is anomalous everywhere"
    turns = [next(k for k in (1, 2, 3) if torch.equal(out[i], torch.rot90(x[i], k, dims=(1, 2)))) for i in range(len(x))]
    assert set(turns) == {1, 2, 3}, "quarter, half and three-quarter turns are all drawn"
    again, _ = make_anomalies(x, cfg, 32, torch.Generator().manual_seed(5))
    other, _ = make_anomalies(x, cfg, 32, torch.Generator().manual_seed(6))
    assert torch.equal(again, out) and not torch.equal(other, out)
    wide = torch.rand(4, channels, 8, 12, generator=torch.Generator().manual_seed(1))
    turned, _ = make_anomalies(wide, cfg, 8, torch.Generator().manual_seed(0))
    assert torch.equal(turned, torch.rot90(wide, 2, dims=(2, 3))), "not square: a half turn keeps the shape"


def test_config_and_kind_parsing() -> None:
    assert parse_kinds("none") == () and parse_kinds("") == ()
    assert parse_kinds("all") == LOCAL_KINDS and set(GENERATORS) == {*LOCAL_KINDS, "rotate"}
    assert parse_kinds(" Scar, perlin ") == ("scar", "perlin")
    with pytest.raises(ValueError, match="unknown synthetic anomaly kind"):
        SyntheticConfig(kinds=("scratch",))
    with pytest.raises(ValueError, match="listed twice"):
        SyntheticConfig(kinds=("scar", "scar"))
    with pytest.raises(ValueError, match="ratio"):
        SyntheticConfig(kinds=("scar",), ratio=0)
    assert not SyntheticConfig().enabled


def test_holds_defect_labels_crops_by_the_mask() -> None:
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 10:14, 10:14] = True  # a 4x4 defect (16 px)
    offsets = torch.tensor([[8, 8], [12, 12], [20, 20], [13, 13]])  # whole, 4 of 16 px, none, 1 px
    # 4 of 16 px is under half of the mask but over 2% of an 8x8 crop (1.28 px): it holds the defect;
    # 1 px is neither (it grazes it), and 4 px are not 2% of a 16x16 crop (5.12 px)
    assert holds_defect(masks, offsets, 8).tolist() == [True, True, False, False]
    assert holds_defect(masks[:2], torch.tensor([[12, 12], [2, 2]]), 16).tolist() == [False, True]


def test_patch_view_crops_synthetic_defects_where_the_mask_is() -> None:
    x = noise(30)
    cfg = SyntheticConfig(kinds=tuple(GENERATORS))
    batch = synthesize(Samples(x, torch.zeros(30, dtype=torch.int8)), cfg, GRID.patch_size, torch.Generator().manual_seed(1))
    assert len(batch.x) == 15 and (batch.y == -1).all()  # ratio 0.5 per normal sample
    view = PatchView(GRID)
    gen = torch.Generator().manual_seed(2)
    state = gen.get_state()
    crops, labels = view.inputs(batch, seeded_init(lambda: Encoder(TINY), 0), None, gen)
    assert crops.shape[1:] == (1, 8, 8) and 0 < len(crops) <= 15 and (labels == -1).all()
    # Replayed: every kept crop holds at least one changed pixel
    gen.set_state(state)
    pixel = torch.multinomial(batch.masks.flatten(1).float(), 1, generator=gen).flatten()
    rows, cols = pixel // 32, pixel % 32
    within = torch.randint(0, 8, (15, 2), generator=gen)
    offsets = torch.stack([(rows - within[:, 0]).clamp(0, 24), (cols - within[:, 1]).clamp(0, 24)], dim=1)
    keep = holds_defect(batch.masks, offsets, 8)
    assert int(keep.sum()) == len(crops)
    for crop, image, (r, c), m in zip(crops, batch.x[keep], offsets[keep].tolist(), batch.masks[keep]):
        assert torch.equal(crop, image[:, r : r + 8, c : c + 8]) and m[r : r + 8, c : c + 8].any()


def test_whole_view_labels_synthetic_images_anomalous() -> None:
    x = noise(10, size=8)
    batch = synthesize(Samples(x, torch.tensor([0] * 8 + [-1, 1], dtype=torch.int8)), SyntheticConfig(kinds=("confetti",), ratio=1.0), 8, torch.Generator())
    assert len(batch.x) == 9  # one per normal (unlabeled or labeled-normal) image, never from anomalies
    inputs, labels = WholeView(8).inputs(batch, torch.nn.Identity(), None, torch.Generator())
    assert inputs is batch.x and (labels == -1).all()


def reference_algorithm_1(encoder: Encoder, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int) -> list[float]:
    """Algorithm 1 written out plainly (Adam, step schedule, shuffled mini-batches, objective (4)),
    with c the mean of phi over the non-anomalous samples: what the one loop must equal on the
    paper's path."""
    from ssd_cli.core.embedding import init_center

    c = init_center(encoder, x, y, cfg.center_eps)
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.optim.lr_milestones), gamma=cfg.optim.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    encoder.to(memory_format=torch.channels_last)
    encoder.train()
    losses = []
    for _ in range(cfg.optim.epochs):
        total = torch.zeros(())
        for idx in minibatches(torch.randperm(len(x), generator=gen), cfg.optim.batch_size):
            loss = one_class_loss(squared_distances(encoder(x[idx]), c), y[idx], cfg.eta, cfg.eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        sched.step()
        losses.append(total.item() / len(x))
    return losses


def test_the_paper_path_is_algorithm_1_bit_for_bit() -> None:
    spec = LeNetSpec("tiny", channels=1, image_size=16, conv_filters=(4, 8), dense_units=(8,))
    x = F.avg_pool2d(noise(45, size=16, seed=3), 3, 1, 1)
    y = torch.tensor([0] * 35 + [1] * 5 + [-1] * 5, dtype=torch.int8)
    cfg = TrainConfig(eta=3.0, optim=OptimConfig(epochs=4, lr=1e-3, lr_milestones=(2,), batch_size=16))
    ours, ref = seeded_init(lambda: Encoder(spec), 7), seeded_init(lambda: Encoder(spec), 7)
    result = train_deep_svdd(ours, x, y, cfg, seed=11)
    expected = reference_algorithm_1(ref, x, y, cfg, seed=11)
    assert result.losses == expected
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in ours.state_dict().items())


def _synthetic_run(seed: int, loss: AnomalyLoss = AnomalyLoss.INVERSE) -> tuple[list[float], Encoder]:
    enc = seeded_init(lambda: Encoder(TINY), 0)
    cfg = TrainConfig(anomaly_loss=loss, synthetic=SyntheticConfig(kinds=tuple(GENERATORS)), optim=OptimConfig(epochs=2, lr=1e-3, batch_size=8))
    result = train_deep_svdd(enc, noise(12), torch.zeros(12, dtype=torch.int8), cfg, seed=seed, view=PatchView(GRID, 2))
    return result.losses, enc


def test_training_with_synthetic_anomalies_is_seeded() -> None:
    a, enc_a = _synthetic_run(1)
    b, enc_b = _synthetic_run(1)
    assert a == b and all(torch.equal(v, enc_b.state_dict()[k]) for k, v in enc_a.state_dict().items())
    assert _synthetic_run(2)[0] != a
    assert _synthetic_run(1, AnomalyLoss.HSC)[0] != a


def test_anomaly_terms_and_outlier_weight() -> None:
    d = torch.tensor([0.5, 2.0, 8.0])
    torch.testing.assert_close(anomaly_term(d, 0.0), 1 / d)
    torch.testing.assert_close(anomaly_term(d, 0.0, AnomalyLoss.HSC), -torch.log(1 - torch.exp(-d)))
    dist = torch.tensor([1.0, 2.0, 4.0, 4.0])
    y = torch.tensor([0, -1, OUTLIER, 1], dtype=torch.int8)
    got = one_class_loss(dist, y, eta=2.0, eps=0.0, outlier_weight=0.5)
    torch.testing.assert_close(got, torch.tensor((1.0 + 2.0 / 2.0 + 0.5 / 4.0 + 2.0 * 4.0) / 4))


def test_hsc_and_soft_boundary_do_not_mix() -> None:
    with pytest.raises(ValueError, match="one-class"):
        TrainConfig(objective=Objective.SOFT_BOUNDARY, anomaly_loss=AnomalyLoss.HSC)
