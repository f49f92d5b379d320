"""Turning uint8 pixels into network input, decided once at training and stored in the model file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ssd_cli.core.config import Preprocessing

_CHUNK = 8192  # images per chunk, so fitting statistics on large sets needs no full float copy


def _scaled(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255.0)


def global_contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per image: subtract the mean, divide by the mean absolute deviation (l1), as Deep SVDD did.

    The first pixel is subtracted before the mean is taken, which GCN's result does not depend on:
    a constant image is then exactly zero, where the rounding of its float32 mean would leave an
    ulp of noise that the division blows up to all -1 (for some values and sizes), and differently
    in every runtime (an exported model, io/onnx_export.py, must score a blank frame as ssd does).
    The sums are taken in float64: over the 16,384 pixels of a 128 px image, float32 sums in another
    order (onnxruntime's) moved patch scores by 3e-5, three times the bound an export is held to."""
    flat = x.flatten(1).to(torch.float64)
    flat = flat - flat[:, :1]
    flat = flat - flat.mean(dim=1, keepdim=True)
    scale = flat.abs().mean(dim=1, keepdim=True)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # a constant image stays all zero
    return (flat / scale).to(x.dtype).view_as(x)


@dataclass(frozen=True)
class Preprocessor:
    kind: Preprocessing = Preprocessing.SCALE
    low: float = 0.0  # min-max statistics of the GCN-normalised training data
    high: float = 1.0

    @classmethod
    def fit(cls, kind: Preprocessing, images: torch.Tensor | Iterable[torch.Tensor]) -> Preprocessor:
        """Fit on training images (uint8, N x C x H x W, or chunks of them); only GCN has statistics to fit."""
        if kind is Preprocessing.SCALE:
            return cls(kind)
        low, high = float("inf"), float("-inf")
        for chunk in images.split(_CHUNK) if isinstance(images, torch.Tensor) else images:
            g = global_contrast_normalize(_scaled(chunk))
            low, high = min(low, g.min().item()), max(high, g.max().item())
        if not high > low:
            high = low + 1.0  # constant data: keep the transform finite
        return cls(kind, low, high)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _scaled(images)
        if self.kind is Preprocessing.GCN:
            x = (global_contrast_normalize(x) - self.low) / (self.high - self.low)
        return x

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind.value, "low": self.low, "high": self.high})

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        d = json.loads(text)
        return cls(Preprocessing(d["kind"]), float(d["low"]), float(d["high"]))

    def describe(self) -> str:
        if self.kind is Preprocessing.SCALE:
            return "scale to [0, 1]"
        return f"GCN (l1) + min-max [{self.low:.4g}, {self.high:.4g}]"
