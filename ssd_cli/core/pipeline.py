"""From uint8 images to a saved-model description: the steps `ssd train`, `ssd pretrain` and
`ssd benchmark` share, so there is exactly one way a model gets trained."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from ssd_cli.core.calibration import holdout, synthetic_threshold
from ssd_cli.core.config import Objective, OptimConfig, Resize, ThresholdSource, TrainConfig
from ssd_cli.core.model import SavedModel
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.roles import ANOMALY, NORMAL, OUTLIER, UNLABELED
from ssd_cli.core.tiles import TileSpec
from ssd_cli.core.training import (
    EpochCallback,
    pretrain_autoencoder,
    seeded_init,
    train_deep_svdd,
)
from ssd_cli.core.views import PatchView, View, WholeView
from ssd_cli.core.whitening import IMAGES_AT_ONCE, whiten


def view_for(spec: LeNetSpec, patches: PatchView | None) -> View:
    """Patches when the model is patch-level, else the whole image the network was built for."""
    return patches if patches is not None else WholeView(spec.image_size)


def training_tensors(
    pre: Preprocessor,
    device: torch.device,
    unlabeled: torch.Tensor,
    normals: torch.Tensor | None = None,
    anomalies: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the three kinds of sample into one preprocessed tensor x and label vector y on `device`."""
    parts = [(unlabeled, UNLABELED), (normals, NORMAL), (anomalies, ANOMALY)]
    parts = [(t, label) for t, label in parts if t is not None and len(t)]
    x = torch.cat([pre(t.to(device)) for t, _ in parts])
    y = torch.cat([torch.full((len(t),), label, dtype=torch.int8, device=device) for t, label in parts])
    return x.contiguous(memory_format=torch.channels_last), y


def pretrain(
    spec: LeNetSpec,
    x_unlabeled: torch.Tensor,
    optim: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
    patches: PatchView | None = None,
) -> tuple[AutoEncoder, list[float]]:
    """The autoencoder on whole images, or on random crops of them for a patch-level model."""
    ae = seeded_init(lambda: AutoEncoder(spec), seed).to(x_unlabeled.device)
    return ae, pretrain_autoencoder(ae, x_unlabeled, optim, seed=seed, view=view_for(spec, patches), on_epoch=on_epoch)


def initial_encoder(spec: LeNetSpec, autoencoder: AutoEncoder | None, seed: int, device: torch.device) -> Encoder:
    """phi starts from the pretrained encoder weights when there are some (Appendix A)."""
    encoder = seeded_init(lambda: Encoder(spec), seed)
    if autoencoder is not None:
        encoder.load_state_dict(autoencoder.encoder.state_dict())
    return encoder.to(device)


def train_model(
    spec: LeNetSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    pre: Preprocessor,
    *,
    seed: int,
    autoencoder: AutoEncoder | None = None,
    threshold_quantile: float = 0.95,
    threshold_source: ThresholdSource = ThresholdSource.QUANTILE,
    resize: Resize = Resize.SQUASH,
    patches: PatchView | None = None,
    tiles: TileSpec | None = None,
    on_epoch: EpochCallback | None = None,
    summary: dict | None = None,
    score_images: Callable[[SavedModel], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> SavedModel:
    """Train phi on (x, y) and describe the result as a model file would hold it.

    The threshold is R for soft-boundary models; one-class models have no radius, so the threshold
    is the `threshold_quantile` of the scores of the non-anomalous training images, or with
    ThresholdSource.SYNTHETIC the F1-best one between held-out unlabeled images (kept out of
    training) and synthetic anomalies made from them (core/calibration.py; the quantile is recorded
    too); a quarter of the labeled anomalies, also kept out, check the model on real defects. Too
    few unlabeled images to hold out fall back to the quantile, and the record says so.
    The training images' scores are the view's scores of x, or, where the samples are not the
    images (a tiled model trains on some tiles of each), `score_images(model)`: the training
    images' scores and labels under the model (the quantile then, never SYNTHETIC: its held-out
    samples would be tiles). With cfg.whiten, phi's output layer is whitened by the training
    images' embeddings (core/whitening.py) before anything is scored, so the threshold is one of
    Mahalanobis distances; the held-out images take no part in it.
    """
    assert score_images is None or threshold_source is ThresholdSource.QUANTILE, "held-out samples must be images"
    start = time.perf_counter()
    encoder = initial_encoder(spec, autoencoder, seed, x.device)
    view = view_for(spec, patches)
    held = holdout(y, seed) if threshold_source is ThresholdSource.SYNTHETIC and cfg.objective is Objective.ONE_CLASS else None
    if held is not None:
        x_held, y_held, x, y = _rows(x, held), y[held], x[~held], y[~held]
    result = train_deep_svdd(encoder, x, y, cfg, seed=seed, view=view, on_epoch=on_epoch)
    c, whitening = result.c, None
    if cfg.whiten:  # from here on phi's output is whitened and scores are Mahalanobis distances
        normal = torch.nonzero(y >= 0).flatten()
        folded = whiten(encoder, (view.scored_inputs(x[rows]) for rows in normal.split(IMAGES_AT_ONCE)))
        if folded is not None:
            c, whitening = folded
    model = SavedModel(
        spec=spec,
        objective=cfg.objective,
        nu=cfg.nu,
        eta=cfg.eta,
        preprocessor=pre,
        c=c,
        radius=result.radius,
        threshold=math.nan,  # set below, from the scores of the model as it is
        threshold_rule="",
        encoder_state=encoder.state_dict(),
        resize=resize,
        patch=patches.spec if patches else None,
        tile=tiles,
    )
    all_scores, labels = score_images(model) if score_images is not None else (view.scores(encoder, c, x), y)
    train_scores = all_scores[labels >= 0]
    calibration = None
    if cfg.objective is Objective.SOFT_BOUNDARY:
        model.threshold, model.threshold_rule = result.radius, "radius R of the soft-boundary hypersphere"
    else:
        model.threshold = float(torch.quantile(train_scores.double(), threshold_quantile))
        model.threshold_rule = f"{threshold_quantile:g}-quantile of the training scores"
        if held is not None:
            calibration = synthetic_threshold(view, encoder, c, x_held, y_held, cfg.synthetic, seed)
            model.threshold, quantile = calibration.threshold, model.threshold
            model.threshold_rule = f"F1-best between {calibration.n_normal} held-out images and {calibration.n_anomalous} synthetic anomalies made from them"
    model.training = {
        "n_unlabeled": int((labels == UNLABELED).sum()),
        "n_labeled_normal": int((labels == NORMAL).sum()),
        "n_labeled_anomalous": int((labels == ANOMALY).sum()),
        "n_outliers": int((y == OUTLIER).sum()),
        "epochs": cfg.optim.epochs,
        "final_loss": result.losses[-1] if result.losses else None,
        "seconds": round(time.perf_counter() - start, 2),
        "seed": seed,
        "device": str(x.device),
        "config": cfg.to_dict(),
        "pretrained": autoencoder is not None,
        "whitening": whitening.to_dict() if whitening is not None else None,
        "fraction_outside_threshold": float((train_scores > model.threshold).float().mean()),
        "patches_per_image": patches.samples_per_image if patches else None,
        "labeled_at_threshold": _labeled_at(all_scores, labels, model.threshold),
        "threshold_source": threshold_source.value if calibration is not None or threshold_source is ThresholdSource.QUANTILE else "quantile (too few images to hold out)",
        "calibration": calibration.to_dict() | {"quantile_threshold": quantile} if calibration is not None else None,
        **(summary or {}),
    }
    return model


def _rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of x under a boolean mask as a float tensor (an ImageSet preprocesses them)."""
    return x[torch.nonzero(mask.cpu()).flatten().to(x.device)]


def _labeled_at(scores: torch.Tensor, y: torch.Tensor, threshold: float) -> dict | None:
    """How the stored threshold separates the labeled training images (None without labels).
    They were trained on, so this is an optimistic view, not a test."""
    normal, anomalous = scores[y == NORMAL], scores[y == ANOMALY]
    if len(normal) + len(anomalous) == 0:
        return None
    return {
        "n_normal": len(normal),
        "normal_below": int((normal <= threshold).sum()),
        "n_anomalous": len(anomalous),
        "anomalous_above": int((anomalous > threshold).sum()),
    }
