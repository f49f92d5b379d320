"""Preprocessing: GCN's contrast normalisation is the same for every image whatever its constant level."""

from __future__ import annotations

import pytest
import torch

from ssd_cli.core.preprocess import global_contrast_normalize


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (1, 3, 32, 32), (1, 3, 128, 128)])
def test_a_constant_image_is_exactly_zero_at_every_level(shape: tuple[int, ...]) -> None:
    """Before the first pixel was subtracted, a float32 mean one ulp off made some levels all -1
    (200 at every size, 128 at 28 x 28), so a blank frame scored by accident of its grey level."""
    levels = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).expand(256, *shape[1:])
    out = global_contrast_normalize(levels.to(torch.float32) / 255.0)
    assert out.abs().max().item() == 0.0


def test_gcn_ignores_shifts_and_scales_and_has_unit_l1_deviation() -> None:
    x = torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    g = global_contrast_normalize(x)
    torch.testing.assert_close(global_contrast_normalize(0.5 * x + 0.25), g, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g.flatten(1).mean(1), torch.zeros(4), rtol=0, atol=1e-6)
    torch.testing.assert_close(g.flatten(1).abs().mean(1), torch.ones(4), rtol=1e-5, atol=0)
