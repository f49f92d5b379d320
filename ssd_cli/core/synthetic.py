"""Synthetic anomalies made on the fly from normal training images, each with the mask of what it changed.

Objective (4) pushes labeled anomalies away from c; a user rarely has more than a few, and a network
memorises a few. Here every mini-batch brings fresh anomalies made from its own normal images, so
phi learns what a local irregularity is rather than which crops were labeled. The kinds follow the
from-scratch defect detectors (CutPaste, DRAEM), using only the training images themselves:

- ``cutpaste``: a rectangle of the same image, from elsewhere, pasted with a brightness/contrast jitter;
- ``scar``: the same with a thin rotated rectangle (a scratch-like mark);
- ``confetti``: a few small discs of random intensity;
- ``perlin``: another training image blended in inside a thresholded Perlin-noise mask;
- ``rotate``: the whole image turned by 90, 180 or 270 degrees (180 only where it is not square).
  For whole-image models of things photographed upright (objects, digits), where the orientation
  is part of what normal looks like: phi must learn the object's shape to tell the turned copies
  apart, as the transformation-based one-class methods found. Its mask is the whole image.

Every defect lies inside a box whose side is drawn from a range given by the caller (a fraction of
the patch for patch models, of the image for whole-image models), so defects are small against
what phi sees. Images are preprocessed float tensors (N, C, H, W); masks are (N, H, W) bool, True
where a pixel was changed, never empty; pixels outside the mask are returned unchanged, bit for
bit. All randomness comes from the CPU generator passed in (deterministic per seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ssd_cli.core.config import SYNTHETIC_KINDS, SyntheticConfig

# (images, other images, box sides (N,), box centres (N, 2) row/col, generator) -> (images, masks)
Generator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _coords(n: int, h: int, w: int, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's offset from its image's box centre: (N, H, 1) rows and (N, 1, W) columns."""
    rows = torch.arange(h, dtype=torch.float32)[None, :, None] - centres[:, 0, None, None]
    cols = torch.arange(w, dtype=torch.float32)[None, None, :] - centres[:, 1, None, None]
    return rows, cols


def _shifted(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x[i] moved by shift[i] = (rows, cols) pixels, clamped at the borders: the content pasted at p is x[p - shift]."""
    n, _, h, w = x.shape
    rows = (torch.arange(h)[None, :] - shift[:, :1]).clamp(0, h - 1).to(x.device)
    cols = (torch.arange(w)[None, :] - shift[:, 1:]).clamp(0, w - 1).to(x.device)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return x[idx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness and contrast changed per image (and per channel for colour): pasted content must not
    be a perfect copy, or it could not be told from normal texture at all."""
    n, ch = x.shape[:2]
    contrast = _uniform(n * ch, 0.7, 1.3, gen).view(n, ch, 1, 1).to(x.device)
    spread = x.flatten(2).std(dim=2).view(n, ch, 1, 1).clamp_min(1e-3)
    shift = (_uniform(n * ch, -0.5, 0.5, gen).view(n, ch, 1, 1).to(x.device)) * spread
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * contrast + mean + shift


def _paste(x: torch.Tensor, content: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask[:, None].to(x.device), content, x)


def _paste_from_elsewhere(x: torch.Tensor, mask: torch.Tensor, sides: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x with the mask's pixels replaced by jittered content of the same image, from at least one
    box side away (cutpaste and scar differ only in their mask)."""
    content = _jitter(_shifted(x, _source_shift(sides, x.shape[2], x.shape[3], gen)), gen)
    return _paste(x, content, mask)


def _source_shift(sides: torch.Tensor, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """A shift of at least one box side in some direction, so the pasted content comes from elsewhere."""
    n = len(sides)
    angle = _uniform(n, 0, 2 * math.pi, gen)
    dist = sides * _uniform(n, 1.0, 2.0, gen)
    shift = torch.stack([dist * torch.sin(angle), dist * torch.cos(angle)], dim=1).round().long()
    return shift.clamp(torch.tensor([-(h - 1), -(w - 1)]), torch.tensor([h - 1, w - 1]))


def cutpaste(x: torch.Tensor, other: torch.Tensor, sides: torch.Tensor, centres: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A rectangle (aspect ratio 1:3 to 3:1) of the same image, taken from elsewhere and jittered."""
    n, _, h, w = x.shape
    aspect = torch.exp(_uniform(n, -math.log(3), math.log(3), gen))
    half_h, half_w = (sides * aspect.sqrt() / 2).clamp_min(0.5), (sides / aspect.sqrt() / 2).clamp_min(0.5)
    rows, cols = _coords(n, h, w, centres)
    mask = (rows.abs() <= half_h[:, None, None]) & (cols.abs() <= half_w[:, None, None])
    return _paste_from_elsewhere(x, mask, sides, gen), mask


def scar(x: torch.Tensor, other: torch.Tensor, sides: torch.Tensor, centres: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A thin rectangle (length the box side, width 1-4 px) at any angle, cut from elsewhere in the image."""
    n, _, h, w = x.shape
    angle = _uniform(n, 0, math.pi, gen)
    width = _uniform(n, 1.0, 4.0, gen).minimum(sides / 3).clamp_min(1.0)
    rows, cols = _coords(n, h, w, centres)
    sin, cos = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    along, across = rows * sin + cols * cos, rows * cos - cols * sin
    mask = (along.abs() <= sides[:, None, None] / 2) & (across.abs() <= width[:, None, None] / 2)
    return _paste_from_elsewhere(x, mask, sides, gen), mask


def confetti(x: torch.Tensor, other: torch.Tensor, sides: torch.Tensor, centres: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """1-6 discs (radius 1 px to a quarter of the box) inside the box, each of one random intensity
    per channel within the image's own range."""
    n, ch, h, w = x.shape
    blobs = 6
    count = torch.randint(1, blobs + 1, (n,), generator=gen)
    offsets = (torch.rand(n, blobs, 2, generator=gen) - 0.5) * sides[:, None, None]
    radius = 1.0 + torch.rand(n, blobs, generator=gen) * (sides[:, None] / 4 - 1.0).clamp_min(0)
    low = x.flatten(2).amin(dim=2).cpu()
    high = x.flatten(2).amax(dim=2).cpu()
    values = low[:, None] + torch.rand(n, blobs, ch, generator=gen) * (high - low)[:, None]
    rows, cols = _coords(n, h, w, centres)
    out, mask = x.clone(), torch.zeros(n, h, w, dtype=torch.bool)
    for k in range(blobs):  # a few discs: a loop over 6 is clearer than a (N, 6, H, W) tensor
        used = (count > k)[:, None, None]
        disc = (rows - offsets[:, k, 0, None, None]) ** 2 + (cols - offsets[:, k, 1, None, None]) ** 2 <= radius[:, k, None, None] ** 2
        disc &= used
        out = torch.where(disc[:, None].to(x.device), values[:, k, :, None, None].to(x.device, x.dtype), out)
        mask |= disc
    return out, _never_empty(mask, centres)


def perlin_noise(n: int, size: int, cells: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gradient (Perlin) noise, (N, size, size), image i with cells[i] lattice cells per side."""
    out = torch.empty(n, size, size)
    t = torch.arange(size, dtype=torch.float32) + 0.5
    for i in range(n):  # lattices differ per image
        k = int(cells[i])
        angles = torch.rand(k + 1, k + 1, generator=gen) * 2 * math.pi
        grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
        pos = t * k / size
        cell, frac = pos.long().clamp(max=k - 1), pos - pos.long().clamp(max=k - 1)
        fade = frac**3 * (frac * (frac * 6 - 15) + 10)
        fy, fx = frac[:, None], frac[None, :]
        cy, cx = cell[:, None], cell[None, :]

        def dot(dy: int, dx: int) -> torch.Tensor:
            g = grads[cy + dy, cx + dx]
            return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

        uy, ux = fade[:, None], fade[None, :]
        top = torch.lerp(dot(0, 0), dot(0, 1), ux)
        bottom = torch.lerp(dot(1, 0), dot(1, 1), ux)
        out[i] = torch.lerp(top, bottom, uy)
    return out


def perlin(x: torch.Tensor, other: torch.Tensor, sides: torch.Tensor, centres: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Another training image blended in (opacity 0.5-1) where Perlin noise, inside the box, is above
    the middle of its range there: an irregular, textured region (DRAEM's anomalies, no external textures)."""
    n, _, h, w = x.shape
    size = max(h, w)
    cells = torch.randint(2, 5, (n,), generator=gen) * torch.clamp(torch.tensor(size) / sides, min=1).round().long()
    noise = perlin_noise(n, size, cells, gen)[:, :h, :w]
    rows, cols = _coords(n, h, w, centres)
    box = (rows.abs() <= sides[:, None, None] / 2) & (cols.abs() <= sides[:, None, None] / 2)
    inside = torch.where(box, noise, torch.tensor(float("-inf")))
    top = inside.flatten(1).amax(dim=1)[:, None, None]
    low = torch.where(box, noise, torch.tensor(float("inf"))).flatten(1).amin(dim=1)[:, None, None]
    mask = box & (inside >= (top + low) / 2)
    opacity = _uniform(n, 0.5, 1.0, gen).view(n, 1, 1, 1).to(x.device)
    texture = _shifted(other, torch.randint(-size, size + 1, (n, 2), generator=gen))
    blended = x + opacity * (texture - x)
    return _paste(x, blended, mask), _never_empty(mask, centres)


def _never_empty(mask: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """A mask with no pixel (a disc or noise region fully off the image) still marks the box centre,
    so a sample labeled anomalous always has its anomaly on record."""
    empty = ~mask.flatten(1).any(dim=1)
    if bool(empty.any()):
        idx = torch.nonzero(empty).flatten()
        mask = mask.clone()
        mask[idx, centres[idx, 0].long(), centres[idx, 1].long()] = True
    return mask


def rotate(x: torch.Tensor, other: torch.Tensor, sides: torch.Tensor, centres: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole image turned by a quarter, half or three-quarter turn (a half turn where H != W,
    so the shape is kept); the box is not used."""
    n, _, h, w = x.shape
    turns = torch.randint(1, 4, (n,), generator=gen) if h == w else torch.full((n,), 2)
    out = x.clone()
    for k in (1, 2, 3):
        chosen = torch.nonzero(turns == k).flatten().to(x.device)
        if len(chosen):
            out[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return out, torch.ones(n, h, w, dtype=torch.bool)


GENERATORS: dict[str, Generator] = {"cutpaste": cutpaste, "scar": scar, "confetti": confetti, "perlin": perlin, "rotate": rotate}
assert tuple(GENERATORS) == SYNTHETIC_KINDS, "core/config.py names the kinds, in this order"


def make_anomalies(x: torch.Tensor, cfg: SyntheticConfig, scale: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic anomaly per image of x: each image gets one kind (drawn), in a box of side
    cfg.min_side..cfg.max_side times `scale` px at a random place. Returns (images, masks (N, H, W))."""
    n, _, h, w = x.shape
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    if n == 0:
        return x, masks
    kinds = torch.randint(0, len(cfg.kinds), (n,), generator=gen)
    sides = _uniform(n, cfg.min_side * scale, cfg.max_side * scale, gen).clamp_min(2.0)
    centres = torch.stack([torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)], dim=1).float()
    other = x.roll(1, dims=0)  # the texture source of each image: another image of the batch
    out = x.clone()
    for k, name in enumerate(cfg.kinds):
        chosen = torch.nonzero(kinds == k).flatten()
        if len(chosen):
            made, mask = GENERATORS[name](x[chosen.to(x.device)], other[chosen.to(x.device)], sides[chosen], centres[chosen], gen)
            out[chosen.to(x.device)] = made
            masks[chosen] = mask
    return out, masks
