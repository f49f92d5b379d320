"""Mahalanobis scores, folded into phi: after training, the output layer is whitened.

Deep SVDD scores ||phi(x) - c||, which weighs every direction of phi's output alike. Normal
patches vary a lot along some directions and hardly at all along others, where a small defect
then stands out. The Mahalanobis distance to the mean m of the training embeddings, with their
covariance S, weighs each direction by its normal spread. With S = V diag(l) V^T and
W = diag(l)^-1/2 V^T it is ||W phi(x) - W m||: the Euclidean distance of a network whose
bias-free output layer is W times phi's, to the centre W m. Folding W into that layer keeps the
model file, the scorer and the ONNX export exactly as they are for any other model.

S is shrunk towards its mean variance times the identity by the Ledoit-Wolf shrinkage, which the
embeddings themselves determine: large when they are few for their dimension (a dozen images),
small when there are thousands of patches. Without it, directions in which the training patches
happen not to vary would be weighted without bound, and so would float rounding along them.
Measured on the patch-level photo sets (docs/photos.md): surface-defects-x3 0.86 -> 0.94,
brick-cracks +0.02, the others within +-0.02; on whole small photos it lost 0.01-0.03, so it is
the default for patch-level models only (core/presets.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ssd_cli.core.embedding import embed
from ssd_cli.core.nets import Encoder

IMAGES_AT_ONCE = 64  # images whose scored inputs are embedded at a time: memory stays bounded


@dataclass(frozen=True)
class Whitening:
    """What whitening did, for the model's training record."""

    n: int  # embeddings the mean and covariance came from
    shrinkage: float  # Ledoit-Wolf: the identity's share in the shrunk covariance
    condition: float  # largest / smallest variance after shrinkage

    def to_dict(self) -> dict:
        return {"n": self.n, "shrinkage": round(self.shrinkage, 6), "condition": round(self.condition, 2)}


@dataclass(frozen=True)
class Moments:
    """Mean, covariance (divided by n, as Ledoit and Wolf's estimator wants) and the sum of the
    fourth powers of the centred norms, all in float64."""

    n: int
    mean: torch.Tensor
    cov: torch.Tensor
    fourth: float

    @property
    def mean_variance(self) -> float:
        """The covariance's mean diagonal: the scale of the identity it is shrunk towards."""
        return float(self.cov.trace()) / len(self.cov)


@torch.inference_mode()
def moments(encoder: Encoder, chunks: Iterable[torch.Tensor]) -> Moments:
    """One pass over phi of every row of the chunks, accumulating raw sums; the centred ones follow
    by expanding ||z - m||^2 = ||z||^2 - 2 m.z + ||m||^2, so the embeddings are never all held."""
    d = encoder.spec.rep_dim
    total, outer = torch.zeros(d, dtype=torch.float64), torch.zeros((d, d), dtype=torch.float64)
    norms2_z, norms4, n = torch.zeros(d, dtype=torch.float64), 0.0, 0
    for chunk in chunks:
        z = embed(encoder, chunk).to("cpu", torch.float64)
        sq = (z * z).sum(dim=1)
        total += z.sum(dim=0)
        outer += z.T @ z
        norms2_z += sq @ z
        norms4 += float((sq * sq).sum())
        n += len(z)
    if n == 0:
        return Moments(0, total, outer, 0.0)
    m = total / n
    mm = float(m @ m)
    cov = outer / n - torch.outer(m, m)
    # sum of ||z - m||^4 = sum (a - 2b + c)^2 with a = ||z||^2, b = m.z, c = ||m||^2, and sum b = n c
    sum_a, sum_ab, sum_b2 = float(outer.trace()), float(m @ norms2_z), float(m @ outer @ m)
    fourth = norms4 - 4 * sum_ab + 4 * sum_b2 + 2 * mm * sum_a - 3 * n * mm * mm
    return Moments(n, m, cov, max(fourth, 0.0))


def ledoit_wolf(mom: Moments) -> float:
    """The Ledoit-Wolf shrinkage of the covariance towards its mean variance times the identity, in
    [0, 1] (the formula of scikit-learn's `ledoit_wolf_shrinkage`, from the moments alone)."""
    n, p, mu = mom.n, len(mom.cov), mom.mean_variance
    delta = float(((mom.cov - mu * torch.eye(p, dtype=mom.cov.dtype)) ** 2).sum()) / p
    beta = (mom.fourth / n - float((mom.cov**2).sum())) / (p * n)
    beta = min(max(beta, 0.0), delta)
    return 0.0 if beta == 0 else beta / delta


@torch.no_grad()
def whiten(encoder: Encoder, chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, Whitening] | None:
    """Whiten phi's output layer in place by the embeddings of the chunks' rows and return the new
    centre W m with what was done; None (phi untouched) when they do not vary at all, or are too few
    to estimate a spread."""
    mom = moments(encoder, chunks)
    scale = mom.mean_variance
    if mom.n < 2 or not scale > 0:
        return None
    shrinkage = ledoit_wolf(mom)
    shrunk = (1 - shrinkage) * mom.cov + shrinkage * scale * torch.eye(len(mom.cov), dtype=mom.cov.dtype)
    variances, vectors = torch.linalg.eigh(shrunk)
    if not float(variances.min()) > 0:  # no shrinkage and a direction without spread: left as trained
        return None
    w = (vectors * variances.rsqrt()).T  # rows: the principal directions, each divided by its spread
    out = encoder.dense[-1]
    out.weight.copy_((w @ out.weight.to(torch.float64).cpu()).to(out.weight))
    centre = (w @ mom.mean).to(out.weight)
    return centre, Whitening(mom.n, shrinkage, float(variances.max() / variances.min()))
