"""Mahalanobis scores, folded into phi: after training, the output layer is whitened.

Deep SVDD scores ||phi(x) - c||, which weighs every direction of phi's output alike. Normal
patches vary a lot along some directions and hardly at all along others, where a small defect
then stands out. The Mahalanobis distance to the mean m of the training embeddings, with their
covariance S, weighs each direction by its normal spread. With S = V diag(l) V^T and
W = diag(l)^-1/2 V^T it is ||W phi(x) - W m||: the Euclidean distance of a network whose
bias-free output layer is W times phi's, to the centre W m. Folding W into that layer keeps the
model file, the scorer and the ONNX export exactly as they are for any other model.

S is shrunk towards a multiple of the identity (SHRINKAGE of it), so that directions in which the
training patches happen not to vary are not weighted without bound. Measured on the patch-level
photo sets (docs/photos.md): surface-defects-x3 0.86 -> 0.94, brick-cracks +0.02, the others
within +-0.02; on whole small photos it lost 0.01-0.03, so it is the default for patch-level
models only (core/presets.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ssd_cli.core.embedding import embed
from ssd_cli.core.nets import Encoder

SHRINKAGE = 0.01  # share of the identity (scaled to the mean variance) in the covariance
IMAGES_AT_ONCE = 64  # images whose scored inputs are embedded at a time: memory stays bounded


@dataclass(frozen=True)
class Whitening:
    """What whitening did, for the model's training record."""

    n: int  # embeddings the mean and covariance came from
    shrinkage: float
    condition: float  # largest / smallest variance after shrinkage

    def to_dict(self) -> dict:
        return {"n": self.n, "shrinkage": self.shrinkage, "condition": round(self.condition, 2)}


@torch.inference_mode()
def moments(encoder: Encoder, chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and covariance (float64) of phi over every row of the chunks, accumulated chunk by chunk."""
    d = encoder.spec.rep_dim
    total, outer, n = torch.zeros(d, dtype=torch.float64), torch.zeros((d, d), dtype=torch.float64), 0
    for chunk in chunks:
        z = embed(encoder, chunk).to("cpu", torch.float64)
        total += z.sum(dim=0)
        outer += z.T @ z
        n += len(z)
    mean = total / max(n, 1)
    cov = (outer - n * torch.outer(mean, mean)) / max(n - 1, 1)
    return mean, cov, n


@torch.no_grad()
def whiten(encoder: Encoder, chunks: Iterable[torch.Tensor], shrinkage: float = SHRINKAGE) -> tuple[torch.Tensor, Whitening] | None:
    """Whiten phi's output layer in place by the embeddings of the chunks' rows and return the new
    centre W m with what was done; None (phi untouched) when they do not vary at all, or are too few
    to estimate a spread."""
    mean, cov, n = moments(encoder, chunks)
    scale = float(cov.trace()) / len(cov)
    if n < 2 or not scale > 0:
        return None
    shrunk = (1 - shrinkage) * cov + shrinkage * scale * torch.eye(len(cov), dtype=cov.dtype)
    variances, vectors = torch.linalg.eigh(shrunk)
    w = (vectors * variances.rsqrt()).T  # rows: the principal directions, each divided by its spread
    out = encoder.dense[-1]
    out.weight.copy_((w @ out.weight.to(torch.float64).cpu()).to(out.weight))
    centre = (w @ mean).to(out.weight)
    return centre, Whitening(n, shrinkage, float(variances.max() / variances.min()))
