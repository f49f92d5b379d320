"""The training story of the paper, top to bottom: pretrain an autoencoder, fix c, run Algorithm 1.

One loop for every way of seeing a sample (whole image, patches: core/views.py) and every source of
samples (unlabeled, labeled, outlier images, synthetic anomalies: core/synthetic.py).

Data arrive as preprocessed float tensors on the training device, or as an ImageSet that
preprocesses the mini-batch it is indexed with (core/imageset.py); mini-batches are drawn by
shuffled index. Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssd_cli.core.ranks import Ranks, ranks
from ssd_cli.core import distributed
from ssd_cli.core.config import Objective, OptimConfig, SyntheticConfig, TrainConfig
from ssd_cli.errors import InputError, TrainingDiverged
from ssd_cli.core.nets import AutoEncoder, Classifier, Encoder
from ssd_cli.core.embedding import embed, embed_shared, eval_batch_size
from ssd_cli.core.objectives import LOSSES, solve_radius, squared_distances
from ssd_cli.core.roles import ANOMALY
from ssd_cli.core.synthetic import make_anomalies
from ssd_cli.core.augment import augment
from ssd_cli.core.views import Samples, View, WholeView


@dataclass(frozen=True)
class EpochInfo:
    epoch: int  # 1-based
    epochs: int
    loss: float
    seconds: float
    lr: float


EpochCallback = Callable[[EpochInfo], None]


def seeded_init(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a network with weights drawn from `seed`, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def fit(
    model: nn.Module,
    n: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    optim: OptimConfig,
    *,
    seed: int,
    device: torch.device,
    after_step: Callable[[], None] | None = None,
    before_epoch: Callable[[], None] | None = None,
    on_epoch: EpochCallback | None = None,
) -> list[float]:
    """The one SGD loop: Adam, step schedule, shuffled mini-batches; returns the mean loss per epoch.

    Stops with TrainingDiverged as soon as an epoch's loss is not finite: a NaN model is never kept.
    """
    if n < 2:
        raise InputError(f"training needs at least 2 samples, got {n}: batch normalisation cannot learn from one image")
    opt = torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(optim.lr_milestones), gamma=optim.lr_gamma)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.to(memory_format=torch.channels_last)  # measured ~1.2-1.9x faster for these convs on CPU
    model.train()
    # Under torchrun (`ssd train`), every rank draws the same permutation and computes its share of
    # each mini-batch; its loss is weighted by its share, and the gradients are summed over the
    # ranks, so the step is the one a single process would take on the whole mini-batch.
    together = distributed.training_together()
    r = ranks() if together else Ranks()
    if optim.batch_size < r.world_size:
        raise InputError(f"the batch size ({optim.batch_size}) must be at least the number of ranks ({r.world_size})")
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(optim.epochs):
        start, lr = time.perf_counter(), opt.param_groups[0]["lr"]
        if before_epoch is not None:
            before_epoch()
        perm = torch.randperm(n, generator=gen).to(device, non_blocking=True)
        total = torch.zeros((), device=device)  # summed on the device: one sync per epoch, not per batch
        for idx in minibatches(perm, optim.batch_size):
            if together:
                mine = r.mine(idx)
                loss = batch_loss(mine) * (len(mine) / len(idx))
            else:
                loss = batch_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if together:
                distributed.sum_gradients(params)
            opt.step()
            if after_step is not None:
                after_step()
            total += loss.detach() * idx.numel()
        sched.step()
        losses.append((distributed.all_sum(total) if together else total).item() / n)
        check_finite_loss(losses[-1], epoch + 1)
        if on_epoch is not None:
            on_epoch(EpochInfo(epoch + 1, optim.epochs, losses[-1], time.perf_counter() - start, lr))
    return losses


def minibatches(perm: torch.Tensor, batch_size: int, dim: int = 0) -> list[torch.Tensor]:
    """Shuffled indices cut into mini-batches. A last batch of one sample joins the batch before
    it (one batch of batch_size + 1): batch norm over dense units cannot train on a single sample.
    Every sample is still used once per epoch, as with the original code's drop_last=False."""
    chunks = list(perm.split(batch_size, dim=dim))
    if len(chunks) > 1 and chunks[-1].shape[dim] == 1:
        chunks[-2:] = [torch.cat(chunks[-2:], dim=dim)]
    return chunks


def check_finite_loss(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: the loss became {loss} in epoch {epoch}; nothing was written. "
            "Try a lower --lr or autoencoder pretraining (--pretrain-epochs)"
        )


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, averaged over the batch (as the original Deep SVDD code)."""
    return ((recon - x) ** 2).flatten(1).sum(dim=1).mean()


# The view's and the sources' random stream (crop positions, synthetic anomalies), apart from fit's
# permutation stream of the same seed.
_SAMPLE_STREAM = 0x5EED_C40B


def sample_generator(seed: int) -> torch.Generator:
    """The CPU generator of crop positions and synthetic anomalies for `seed` (deterministic)."""
    return torch.Generator().manual_seed(seed + _SAMPLE_STREAM)


def pretrain_autoencoder(
    ae: AutoEncoder, x: torch.Tensor, optim: OptimConfig, *, seed: int, view: View | None = None, on_epoch: EpochCallback | None = None
) -> list[float]:
    """Train the autoencoder on unlabeled data only (Appendix A); its encoder then initialises phi.
    It sees what phi will see: whole images, or the view's crops of them."""
    view = view or WholeView(x.shape[-1])
    view.check(x, ae.encoder)
    n, gen = len(x), sample_generator(seed)
    unlabeled = torch.zeros(n, dtype=torch.int8, device=x.device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        images = idx % n
        batch, _ = view.inputs(Samples(x[images], unlabeled[images]), ae.encoder, None, gen)  # once: for an ImageSet, indexing preprocesses
        return reconstruction_loss(ae(batch), batch)

    return fit(ae, n * view.samples_per_image, batch_loss, optim, seed=seed, device=x.device, on_epoch=on_epoch)


@dataclass
class DeepSVDDResult:
    c: torch.Tensor
    radius: float  # R; 0 for one-class models
    losses: list[float] = field(default_factory=list)


def train_deep_svdd(
    encoder: Encoder,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int,
    c: torch.Tensor | None = None,
    view: View | None = None,
    on_epoch: EpochCallback | None = None,
) -> DeepSVDDResult:
    """Algorithm 1, for every view and sample source. For soft-boundary, R starts at 0 and is
    re-solved on each mini-batch after the step.

    Each step takes a mini-batch of training images (unlabeled, labeled, outlier images), augments
    them (cfg.augment), adds the synthetic anomalies cfg.synthetic makes from its normal images,
    lets the view turn both into network inputs and labels (whole images, or patches), and applies
    one objective. Each epoch visits every image view.samples_per_image times. R is solved from the
    distances of the same forward pass that produced the gradient (as the original code did), which
    saves a second forward pass per batch. Whole images without augmentation or synthetic anomalies
    are the paper's path exactly.
    """
    view = view or WholeView(x.shape[-1])
    soft = cfg.objective is Objective.SOFT_BOUNDARY
    if soft and not isinstance(view, WholeView):
        raise ValueError(
            f"patch-level training supports the one-class objective only, not {cfg.objective.value}: a radius R "
            "fitted on patches would not be a threshold on image scores (the max over patches)"
        )
    view.check(x, encoder)
    if c is None:
        c = view.center(encoder, x, y, cfg.center_eps)
    c = c.to(x.device)
    radius = torch.zeros((), device=x.device)
    loss_fn = LOSSES[cfg.objective]
    n, gen = len(x), sample_generator(seed)
    last: dict[str, torch.Tensor] = {}
    # Where each labeled anomaly (and outlier image) is trained, found once per epoch by the view.
    # Augmented images are searched as they come instead: a mirrored image has its defect elsewhere.
    anomalous = torch.nonzero(y < 0).flatten()
    located: torch.Tensor | None = None  # (n,) each labeled anomaly's patch this epoch, -1 for the others

    def locate() -> None:
        nonlocal located
        found = view.locate(encoder, c, x, anomalous)
        if found is not None:
            located = torch.full((n,), -1, dtype=torch.long, device=found.device)
            located[anomalous] = found

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        images = idx % n
        at = None if located is None else located[images]
        batch = Samples(augment(x[images], cfg.augment, gen), y[images], located=at)  # once: for an ImageSet, indexing preprocesses
        inputs, labels = view.inputs(batch, encoder, c, gen)
        if cfg.synthetic.enabled:
            more, more_labels = view.inputs(synthesize(batch, cfg.synthetic, view.scale, gen), encoder, c, gen)
            inputs, labels = torch.cat([inputs, more]), torch.cat([labels, more_labels])
        dist = squared_distances(encoder(inputs), c)
        last["dist"], last["y"] = dist, labels
        return loss_fn(dist, labels, radius, cfg)

    def solve() -> None:
        if distributed.training_together():  # R from the distances of the whole mini-batch, all ranks
            radius.copy_(solve_radius(distributed.gather_tensor(last["dist"].detach()), distributed.gather_tensor(last["y"]), cfg.nu, cfg.eta, cfg.outlier_weight))
        else:
            radius.copy_(solve_radius(last["dist"], last["y"], cfg.nu, cfg.eta, cfg.outlier_weight))

    before_epoch = locate if len(anomalous) and not cfg.augment else None
    losses = fit(
        encoder, n * view.samples_per_image, batch_loss, cfg.optim, seed=seed, device=x.device,
        after_step=solve if soft else None, before_epoch=before_epoch, on_epoch=on_epoch,
    )  # fmt: skip
    if soft and cfg.optim.epochs > 0:
        # The per-batch R saw training-mode batch norm; scores use eval mode. Solve R once more, on
        # every training sample as scored, so that R is a threshold that means what nu says.
        dist = squared_distances(embed_shared(encoder, x), c)
        radius = solve_radius(dist, y, cfg.nu, cfg.eta, cfg.outlier_weight)
    return DeepSVDDResult(c, float(radius.item()), losses)


def synthesize(batch: Samples, cfg: SyntheticConfig, scale: int, gen: torch.Generator) -> Samples:
    """cfg.ratio synthetic anomalies per normal image of the mini-batch (images drawn with
    replacement), labeled anomalous, with the masks of what was changed."""
    normal = batch.x[batch.y >= 0]
    k = round(cfg.ratio * len(normal))
    if k == 0:
        return Samples(normal[:0], batch.y[:0], torch.zeros((0, *normal.shape[2:]), dtype=torch.bool))
    pick = torch.randint(0, len(normal), (k,), generator=gen).to(normal.device)
    images, masks = make_anomalies(normal[pick], cfg, scale, gen)
    return Samples(images, torch.full((k,), ANOMALY, dtype=torch.int8, device=normal.device), masks)


def train_classifier(
    clf: Classifier, x: torch.Tensor, y: torch.Tensor, optim: OptimConfig, *, seed: int, on_epoch: EpochCallback | None = None
) -> list[float]:
    """The supervised baseline: binary cross-entropy with unlabeled samples taken as normal."""
    target = (y < 0).to(x.dtype)  # 1 = anomalous
    return fit(clf, len(x), lambda idx: F.binary_cross_entropy_with_logits(clf(x[idx]), target[idx]), optim, seed=seed, device=x.device, on_epoch=on_epoch)


@torch.inference_mode()
def distances(encoder: Encoder, c: torch.Tensor, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The anomaly score s(x) = ||phi(x) - c||."""
    return squared_distances(embed(encoder, x, batch_size), c).sqrt()


@torch.inference_mode()
def classifier_scores(clf: Classifier, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    clf.eval()
    return torch.cat([clf(chunk) for chunk in x.split(batch_size or eval_batch_size(x.device))])
