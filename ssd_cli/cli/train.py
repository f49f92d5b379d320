"""`ssd pretrain` and `ssd train`: build the engine's typed TrainRequest (as `Detector.fit` does), show
the plan, train with a progress bar, then say what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.core.config import AnomalyLoss, Objective, ThresholdSource, Tiling, parse_kinds, parse_names
from ssd_cli.io.files import check_writable
from ssd_cli.cli.app import app, handle_errors
from ssd_cli.cli.options import (
    ArchOpt,
    BatchOpt,
    CacheOpt,
    ChannelsOpt,
    DecoderOpt,
    DeviceOpt,
    ForceOpt,
    PatchesPerImageOpt,
    PatchOpt,
    PatchStrideOpt,
    PreOpt,
    ResizeOpt,
    SeedOpt,
    SizeOpt,
    TileScaleOpt,
    TilesOpt,
    TilesPerImageOpt,
    milestones,
)
from ssd_cli.cli.render import console, held_out_check, render_train_plan, safe, separation, stage_progress, warn, warn_skipped


def show_plan(plan, *, pretrain_only: bool = False) -> None:
    """The plan and its warnings, before any long work starts."""
    render_train_plan(plan, pretrain_only=pretrain_only)
    for role, scan in plan.scan.roles.items():
        warn_skipped(scan.skipped, role)
    for message in plan.warnings:
        warn(message)


@app.command()
@handle_errors
def pretrain(
    unlabeled: Annotated[list[Path], typer.Option("--unlabeled", "-u", help="Folder (or file) of unlabeled training images, read recursively; repeatable.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Autoencoder file to write (safetensors).")] = Path("ae.safetensors"),
    arch: ArchOpt = None,
    decoder: DecoderOpt = None,
    channels: ChannelsOpt = None,
    image_size: SizeOpt = None,
    resize: ResizeOpt = None,
    patch_size: PatchOpt = None,
    patch_stride: PatchStrideOpt = None,
    patches_per_image: PatchesPerImageOpt = 4,
    tiles: TilesOpt = Tiling.AUTO,
    tile_scale: TileScaleOpt = None,
    tiles_per_image: TilesPerImageOpt = 8,
    preprocessing: PreOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Pretraining epochs (default: the network's preset, e.g. 150 for mnist; the learning-rate drop moves with it).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the preset's, 1e-4).")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option(help="Epochs at which the learning rate drops 10x, comma-separated (default: the preset's, moved with --epochs).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Adam weight decay (default: the preset's, e.g. 0.5e-3 for the grayscale networks).")] = None,
    batch_size: BatchOpt = None,
    cache: CacheOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Pretrain the convolutional autoencoder whose encoder initialises phi (use with `ssd train --pretrained`)."""
    from ssd_cli.core.ranks import ranks
    from ssd_cli.engine import OptimOverrides, TrainRequest, plan_training, run_pretraining
    from ssd_cli.io import modelfile

    check_writable(out, force)
    request = TrainRequest(
        unlabeled=tuple(unlabeled), arch=arch, decoder=decoder, channels=channels, image_size=image_size, resize=resize,
        patch_size=patch_size, patch_stride=patch_stride, patches_per_image=patches_per_image, preprocessing=preprocessing,
        tiles=tiles, tile_scale=tile_scale, tiles_per_image=tiles_per_image, seed=seed, device=device, cache=cache,
        train=OptimOverrides(batch_size=batch_size),
        pretrain=OptimOverrides(epochs=epochs, lr=lr, lr_milestones=milestones(lr_milestones, "--lr-milestones"), weight_decay=weight_decay, batch_size=batch_size),
    )  # fmt: skip
    with console.status("looking at the images and timing a few training steps"):
        plan = plan_training(request, pretrain_only=True)
    show_plan(plan, pretrain_only=True)
    with stage_progress() as on_epoch:
        saved, skipped = run_pretraining(plan, on_epoch=on_epoch)
    warn_skipped(skipped, "pretrain")
    if not ranks().is_main:  # under torchrun every rank holds the same autoencoder; rank 0 writes it
        return
    modelfile.save_autoencoder(out, saved, force=force)
    t = saved.training
    console.print(f"wrote autoencoder [bold]{safe(str(out))}[/] ({plan.spec.name}, {t['n_unlabeled']} images, {t['epochs']} epochs in {t['seconds']} s, final loss {_num(t['final_loss'])})")


@app.command()
@handle_errors
def train(
    unlabeled: Annotated[list[Path], typer.Option("--unlabeled", "-u", help="Folder (or file) of unlabeled images, mostly normal; read recursively; repeatable.")],
    normals: Annotated[Optional[list[Path]], typer.Option("--normals", help="Folder of images known to be normal (labeled, y=+1); repeatable.")] = None,
    anomalies: Annotated[Optional[list[Path]], typer.Option("--anomalies", help="Folder of images known to be anomalous (labeled, y=-1); repeatable.")] = None,
    outliers: Annotated[Optional[list[Path]], typer.Option("--outliers", help="Folder of unrelated images (e.g. natural photos of other things) used as anomalies with their own weight (outlier exposure); repeatable.")] = None,
    outlier_weight: Annotated[float, typer.Option(help="Weight of the --outliers images in the objective (eta for the labeled ones).")] = 1.0,
    builtin_outliers: Annotated[Optional[bool], typer.Option("--builtin-outliers/--no-builtin-outliers", help="Use the outlier photos ssd ships (a few hundred small colour crops of public-domain and CC0 photos) as outlier images too. Default: on for whole-image one-class models of colour images up to 32 px (small photos) when no --outliers is given, off otherwise.")] = None,
    synthetic: Annotated[Optional[str], typer.Option("--synthetic", help="Synthetic anomalies made each step from the normal images and used as labeled anomalies: comma-separated cutpaste, scar, confetti, perlin (local defects), rotate (the whole image turned); all (the four local kinds); or none. Default: all for patch-level models, rotate for one-class models of whole images up to 32 px (grayscale ones only when no --anomalies are given), none otherwise (the paper's).")] = None,
    synthetic_ratio: Annotated[Optional[float], typer.Option(help="Synthetic anomalies per normal sample of a mini-batch (default 0.5).")] = None,
    augment: Annotated[Optional[str], typer.Option("--augment", help="Augmentation of the training images, each step: hflip (mirrored left to right at random: for photos of objects, not for digits or text) or none. Default: hflip for whole-image one-class models of colour images up to 32 px (small photos), none otherwise.")] = None,
    whiten: Annotated[Optional[bool], typer.Option("--whiten/--no-whiten", help="One-class models: score the Mahalanobis distance instead of the distance to c. After training, phi's output layer is whitened by the covariance of the training images' embeddings (their grid patches, for patch-level models) and c moves to their whitened mean. Default: on for patch-level models, off for whole images (measured worse there).")] = None,
    anomaly_loss: Annotated[Optional[AnomalyLoss], typer.Option("--anomaly-loss", help="What an anomalous sample pays at squared distance d (one-class): inverse, the paper's 1/(d+eps); or hsc, -log(1-exp(-d)). Default: inverse.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (safetensors).")] = Path("model.safetensors"),
    objective: Annotated[Objective, typer.Option(help="one-class: objective (2)/(4); soft-boundary: objective (1)/(3) with radius R.")] = Objective.ONE_CLASS,
    nu: Annotated[float, typer.Option(help="Soft-boundary trade-off nu in (0, 1]: roughly the fraction of training data allowed outside the sphere.")] = 0.1,
    eta: Annotated[float, typer.Option(help="Weight eta > 0 of the labeled samples against the unlabeled ones.")] = 1.0,
    arch: ArchOpt = None,
    decoder: DecoderOpt = None,
    channels: ChannelsOpt = None,
    image_size: SizeOpt = None,
    resize: ResizeOpt = None,
    patch_size: PatchOpt = None,
    patch_stride: PatchStrideOpt = None,
    patch_top_k: Annotated[Optional[int], typer.Option("--patch-top-k", help="Patch-level models: an image scores as the mean of its K largest patch distances. Default: (patch / stride)^2, the patches that hold any one point (4 at the default stride).")] = None,
    patches_per_image: PatchesPerImageOpt = 4,
    tiles: TilesOpt = Tiling.AUTO,
    tile_scale: TileScaleOpt = None,
    tiles_per_image: TilesPerImageOpt = 8,
    preprocessing: PreOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the model's schedule: 20 for patch-level models, more in a small folder so that they take at least 1,150 steps, unless --lr-milestones is given; 100 for one-class models of whole images up to 32 px, else the network's preset, paper networks 150). The learning-rate drop moves with it. The pretraining keeps its own schedule: shorten it with --pretrain-epochs (0 = none).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the model's schedule: 1e-3 for patch-level models and one-class models of whole images up to 32 px, else the preset's, paper 1e-4; dropped 10x at the milestones).")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option(help="Epochs at which the learning rate drops 10x, comma-separated (default: the schedule's, e.g. 70 of 100, paper 50 of 150, moved with --epochs).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Adam weight decay lambda (default: the preset's; paper 1e-6).")] = None,
    batch_size: BatchOpt = None,
    pretrained: Annotated[Optional[Path], typer.Option("--pretrained", help="Autoencoder file from `ssd pretrain` to initialise phi (skips pretraining; its network, input and preprocessing are used).")] = None,
    pretrain_epochs: Annotated[Optional[int], typer.Option(help="Autoencoder pretraining epochs when --pretrained is not given: patch-level models and one-class models of whole images up to 32 px pretrain only when this asks (with the network's preset otherwise, e.g. 150 epochs for mnist, 350 for cifar10); 0 = no pretraining.")] = None,
    pretrain_lr: Annotated[Optional[float], typer.Option(help="Learning rate of the pretraining (default: the preset's; not taken from --lr).")] = None,
    pretrain_lr_milestones: Annotated[Optional[str], typer.Option(help="Learning-rate drops of the pretraining, comma-separated (default: the preset's, moved with --pretrain-epochs).")] = None,
    pretrain_weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay of the pretraining (default: the preset's, e.g. 0.5e-3 for grayscale, 0.5e-6 for cifar10).")] = None,
    threshold_quantile: Annotated[float, typer.Option(help="One-class models: the stored threshold is this quantile of the training scores (soft-boundary models use R).")] = 0.95,
    threshold_from: Annotated[Optional[ThresholdSource], typer.Option("--threshold-from", help="One-class models: quantile (--threshold-quantile of the training scores) or synthetic (10% of the unlabeled images are held out of training; the threshold is the F1-best between them and synthetic anomalies made from them). Default: synthetic for patch-level models, quantile otherwise.")] = None,
    cache: CacheOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Train a detector. Without --normals/--anomalies this is unsupervised Deep SVDD; with them, SS-DSVDD.

    Unless --arch, --channels or --image-size say otherwise, the network, colour and input size are
    chosen from the images; the plan is printed before any training starts.
    """
    from ssd_cli.core.ranks import ranks
    from ssd_cli.engine import OptimOverrides, TrainRequest, plan_training, run_training
    from ssd_cli.io import modelfile
    from ssd_cli.io.info import tile_words

    check_writable(out, force)
    request = TrainRequest(
        unlabeled=tuple(unlabeled), normals=tuple(normals or ()), anomalies=tuple(anomalies or ()), outliers=tuple(outliers or ()),
        arch=arch, decoder=decoder, channels=channels, image_size=image_size, resize=resize, preprocessing=preprocessing,
        objective=objective, nu=nu, eta=eta, synthetic=None if synthetic is None else parse_kinds(synthetic), synthetic_ratio=synthetic_ratio,
        augment=None if augment is None else parse_names(augment),
        anomaly_loss=anomaly_loss, outlier_weight=outlier_weight, builtin_outliers=builtin_outliers, whiten=whiten, pretrained=pretrained,
        patch_size=patch_size, patch_stride=patch_stride, patch_top_k=patch_top_k, patches_per_image=patches_per_image,
        tiles=tiles, tile_scale=tile_scale, tiles_per_image=tiles_per_image,
        threshold_quantile=threshold_quantile, threshold_from=threshold_from, seed=seed, device=device, cache=cache,
        train=OptimOverrides(epochs=epochs, lr=lr, lr_milestones=milestones(lr_milestones, "--lr-milestones"), weight_decay=weight_decay, batch_size=batch_size),
        pretrain=OptimOverrides(
            epochs=pretrain_epochs, lr=pretrain_lr, lr_milestones=milestones(pretrain_lr_milestones, "--pretrain-lr-milestones"),
            weight_decay=pretrain_weight_decay, batch_size=batch_size,
        ),
    )  # fmt: skip
    with console.status("looking at the images and timing a few training steps"):
        plan = plan_training(request)
    show_plan(plan)
    with stage_progress() as on_epoch:
        outcome = run_training(plan, on_epoch=on_epoch)
    warn_skipped(outcome.skipped, "train")  # the listing's were named with the plan
    if not ranks().is_main:  # under torchrun every rank holds the same model; rank 0 writes it
        return
    saved = outcome.model
    modelfile.save_model(out, saved, force=force)
    t, spec = saved.training, saved.spec
    kind = "SS-DSVDD" if t["n_labeled_normal"] + t["n_labeled_anomalous"] + t["n_outliers"] or plan.cfg.synthetic.enabled else "Deep SVDD"
    side = saved.input_size
    outliers = f" / {t['n_outliers']} outliers" if t["n_outliers"] else ""
    shape = f"{spec.channels}x{side}x{side}" + (f" on {spec.image_size} px patches" if saved.patch else "")
    if saved.tile is not None:
        shape = f"{spec.channels}x{spec.image_size}x{spec.image_size} patches of {tile_words(saved.tile)}"
    console.print(
        f"wrote [bold]{safe(str(out))}[/]: {kind} {objective.value}, {spec.name} {shape}, "
        f"{t['n_unlabeled']} unlabeled / {t['n_labeled_normal']} normal / {t['n_labeled_anomalous']} anomalous"
        f"{outliers}, "
        f"{t['epochs']} epochs in {t['seconds']} s (+ {t['pretrain_seconds']} s pretraining) on {plan.device}, final loss {_num(t['final_loss'])}, "
        f"threshold {saved.threshold:.4g} ({saved.threshold_rule})"
    )
    labeled = t.get("labeled_at_threshold")
    if labeled and saved.tile is not None and labeled["n_anomalous"]:
        console.print(f"at this threshold, on the labeled images (anomalies were not trained on, tiled; normals were): {separation(labeled)}")
    elif labeled:
        console.print(f"at this threshold, on the labeled training images (seen in training, so an optimistic view): {separation(labeled)}")
    check = (t.get("calibration") or {}).get("held_out_anomalies")
    if check:
        from ssd_cli.core.calibration import CHANCE_AUROC  # here: `ssd --help` need not load torch
        console.print(f"check on images kept out of training: {held_out_check(check)}")
        if check["auroc"] <= CHANCE_AUROC:
            warn(f"the {check['n_anomalous']} held-out labeled anomalies score about as normal images do (AUROC {check['auroc']:.2f}): "
                 "this model may not see that kind of defect; docs/photos.md lists what ssd finds and what it misses")  # fmt: skip


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
