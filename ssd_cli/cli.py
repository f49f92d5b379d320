"""The `ssd` command line: thin wrappers that parse options, call the engine and render results."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import __version__
from .config import Objective, Preprocessing, Resize
from .device import resolve_device
from .errors import ExitCode, SsdError, UsageError
from .files import check_writable
from .render import (
    console,
    describe_runs,
    error,
    render_plan,
    render_summary,
    render_train_plan,
    run_progress,
    stage_progress,
    warn,
    warn_skipped,
)

app = typer.Typer(
    name="ssd",
    help=(
        "Find anomalies in folders of images with Semi-Supervised Deep SVDD (Ruff et al.). "
        "Train on unlabeled images (plus a few labeled normal or anomalous ones), then score new images "
        "by their distance to the center of the learned hypersphere."
    ),
    epilog="Exit codes: 0 ok, 1 internal error, 2 bad option, 3 bad input data, 4 bad model file, 5 output exists (use --force), 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.print(f"ssd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", help="CPU threads for torch (default: torch's, one per core). On a machine busy with other work, 1 can be several times faster."),
    ] = None,
) -> None:
    """Semi-Supervised Deep SVDD anomaly detection."""
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--threads")
        import torch

        torch.set_num_threads(threads)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one red line and a documented exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SsdError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted: no half-written file was left behind (a benchmark keeps every finished run; rerun it to resume)")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
            if os.environ.get("SSD_DEBUG"):
                raise
            error(f"internal error: {type(exc).__name__}: {exc} (set SSD_DEBUG=1 to see the traceback)")
            raise typer.Exit(ExitCode.FAILURE) from None

    return wrapper


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated integers, got '{text}'") from None


# Options shared by several commands.
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for weights and shuffling; same seed + same input = same model on the CPU.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="Network: the paper's mnist, fashion-mnist (28 px) or cifar10 (32 px), or lenet-64, lenet-128, lenet-256 for larger photos. Default: chosen from the images' size.")]
ChannelsOpt = Annotated[Optional[int], typer.Option("--channels", help="1 (grayscale) or 3 (colour). Default: colour when at least 10% of the sampled images are colour.")]
SizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="Square input side in pixels. Default: the --arch's own, else the largest of 28 (grayscale only)/32/64/128/256 not above the images' median short side.")]
ResizeOpt = Annotated[Optional[Resize], typer.Option("--resize", help="Fitting images to the square input: squash (default; keeps all content, ignores aspect), crop (centre square) or pad (black bars).")]
PatchOpt = Annotated[Optional[int], typer.Option("--patch-size", help="Patch-level model: phi sees patches of this side of the images at their input size, an image scores as its worst patch, and each gets an anomaly map; 0 = whole images. Default: a quarter of the input side for inputs of 128 px and more (unless --arch is given), else whole images.")]
PatchStrideOpt = Annotated[Optional[int], typer.Option("--patch-stride", help="Step of the scoring grid of patches (default: half the patch).")]
PatchesPerImageOpt = Annotated[int, typer.Option("--patches-per-image", help="Random patches of each image per epoch in patch-level training.")]
PreOpt = Annotated[Optional[Preprocessing], typer.Option("--preprocessing", help="gcn (default, the paper's): global contrast normalisation (l1) + min-max scaling fitted on the unlabeled data; scale: pixels to [0,1].")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Mini-batch size (default: the preset's, 200).")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", envvar="SSD_DATA_ROOT", help="Folder holding the built-in datasets in torchvision's layout (MNIST/raw, FashionMNIST/raw, cifar-10-batches-py or cifar10-jpeg). Default: ~/.cache/ssd/datasets.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Let torchvision download missing built-in datasets into --data-root (needs internet).")]


def _milestones(text: str | None, option: str) -> tuple[int, ...] | None:
    return None if text is None else parse_ints(text, option)


def _request(**kw: Any):
    from .engine import TrainRequest

    return TrainRequest(**kw)


def _plan_and_show(request, *, pretrain_only: bool = False):
    """Scan and plan, then show the plan and its warnings before any long work starts."""
    from .engine import plan_training

    with console.status("looking at the images and timing a few training steps"):
        plan = plan_training(request, pretrain_only=pretrain_only)
    render_train_plan(plan, pretrain_only=pretrain_only)
    for role, scan in plan.scan.roles.items():
        warn_skipped(scan.skipped, role)
    for message in plan.warnings:
        warn(message)
    return plan


@app.command()
@handle_errors
def pretrain(
    unlabeled: Annotated[list[Path], typer.Option("--unlabeled", "-u", help="Folder (or file) of unlabeled training images, read recursively; repeatable.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Autoencoder file to write (safetensors).")] = Path("ae.safetensors"),
    arch: ArchOpt = None,
    channels: ChannelsOpt = None,
    image_size: SizeOpt = None,
    resize: ResizeOpt = None,
    patch_size: PatchOpt = None,
    patch_stride: PatchStrideOpt = None,
    patches_per_image: PatchesPerImageOpt = 4,
    preprocessing: PreOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Pretraining epochs (default: the network's preset, e.g. 150 for mnist; the learning-rate drop moves with it).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the preset's, 1e-4).")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option(help="Epochs at which the learning rate drops 10x, comma-separated (default: the preset's, moved with --epochs).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Adam weight decay (default: the preset's, e.g. 0.5e-3 for the grayscale networks).")] = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Pretrain the convolutional autoencoder whose encoder initialises phi (use with `ssd train --pretrained`)."""
    from . import modelfile
    from .engine import OptimOverrides, run_pretraining

    check_writable(out, force)
    overrides = OptimOverrides(epochs, lr, _milestones(lr_milestones, "--lr-milestones"), weight_decay, batch_size)
    request = _request(
        unlabeled=tuple(unlabeled), arch=arch, channels=channels, image_size=image_size, resize=resize,
        patch_size=patch_size, patch_stride=patch_stride, patches_per_image=patches_per_image,
        preprocessing=preprocessing, train=overrides, seed=seed, device=device,
    )  # fmt: skip
    plan = _plan_and_show(request, pretrain_only=True)
    with stage_progress() as on_epoch:
        saved, skipped = run_pretraining(plan, on_epoch=on_epoch)
    warn_skipped(skipped, "pretrain")
    modelfile.save_autoencoder(out, saved, force=force)
    t = saved.training
    console.print(f"wrote autoencoder [bold]{out}[/] ({plan.spec.name}, {t['n_unlabeled']} images, {t['epochs']} epochs in {t['seconds']} s, final loss {_num(t['final_loss'])})")


@app.command()
@handle_errors
def train(
    unlabeled: Annotated[list[Path], typer.Option("--unlabeled", "-u", help="Folder (or file) of unlabeled images, mostly normal; read recursively; repeatable.")],
    normals: Annotated[Optional[list[Path]], typer.Option("--normals", help="Folder of images known to be normal (labeled, y=+1); repeatable.")] = None,
    anomalies: Annotated[Optional[list[Path]], typer.Option("--anomalies", help="Folder of images known to be anomalous (labeled, y=-1); repeatable.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (safetensors).")] = Path("model.safetensors"),
    objective: Annotated[Objective, typer.Option(help="one-class: objective (2)/(4); soft-boundary: objective (1)/(3) with radius R.")] = Objective.ONE_CLASS,
    nu: Annotated[float, typer.Option(help="Soft-boundary trade-off nu in (0, 1]: roughly the fraction of training data allowed outside the sphere.")] = 0.1,
    eta: Annotated[float, typer.Option(help="Weight eta > 0 of the labeled samples against the unlabeled ones.")] = 1.0,
    arch: ArchOpt = None,
    channels: ChannelsOpt = None,
    image_size: SizeOpt = None,
    resize: ResizeOpt = None,
    patch_size: PatchOpt = None,
    patch_stride: PatchStrideOpt = None,
    patches_per_image: PatchesPerImageOpt = 4,
    preprocessing: PreOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the network's preset; paper networks 150). The learning-rate drop moves with it.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the preset's; paper 1e-4, then 1e-5).")] = None,
    lr_milestones: Annotated[Optional[str], typer.Option(help="Epochs at which the learning rate drops 10x, comma-separated (default: the preset's, paper 50, moved with --epochs).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Adam weight decay lambda (default: the preset's; paper 1e-6).")] = None,
    batch_size: BatchOpt = None,
    pretrained: Annotated[Optional[Path], typer.Option("--pretrained", help="Autoencoder file from `ssd pretrain` to initialise phi (skips pretraining; its network, input and preprocessing are used).")] = None,
    pretrain_epochs: Annotated[Optional[int], typer.Option(help="Autoencoder pretraining epochs when --pretrained is not given (default: the network's preset, e.g. 150 for mnist, 350 for cifar10); 0 = no pretraining.")] = None,
    pretrain_lr: Annotated[Optional[float], typer.Option(help="Learning rate of the pretraining (default: the preset's; not taken from --lr).")] = None,
    pretrain_lr_milestones: Annotated[Optional[str], typer.Option(help="Learning-rate drops of the pretraining, comma-separated (default: the preset's, moved with --pretrain-epochs).")] = None,
    pretrain_weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay of the pretraining (default: the preset's, e.g. 0.5e-3 for grayscale, 0.5e-6 for cifar10).")] = None,
    threshold_quantile: Annotated[float, typer.Option(help="One-class models: the stored threshold is this quantile of the training scores (soft-boundary models use R).")] = 0.95,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Train a detector. Without --normals/--anomalies this is unsupervised Deep SVDD; with them, SS-DSVDD.

    Unless --arch, --channels or --image-size say otherwise, the network, colour and input size are
    chosen from the images; the plan is printed before any training starts.
    """
    from . import modelfile
    from .engine import OptimOverrides, run_training

    check_writable(out, force)
    request = _request(
        unlabeled=tuple(unlabeled), normals=tuple(normals or ()), anomalies=tuple(anomalies or ()),
        arch=arch, channels=channels, image_size=image_size, resize=resize, preprocessing=preprocessing,
        patch_size=patch_size, patch_stride=patch_stride, patches_per_image=patches_per_image, objective=objective, nu=nu, eta=eta,
        train=OptimOverrides(epochs, lr, _milestones(lr_milestones, "--lr-milestones"), weight_decay, batch_size),
        pretrain=OptimOverrides(pretrain_epochs, pretrain_lr, _milestones(pretrain_lr_milestones, "--pretrain-lr-milestones"), pretrain_weight_decay, batch_size),
        pretrained=pretrained, threshold_quantile=threshold_quantile, seed=seed, device=device,
    )  # fmt: skip
    plan = _plan_and_show(request)
    with stage_progress() as on_epoch:
        outcome = run_training(plan, on_epoch=on_epoch)
    warn_skipped(outcome.skipped, "train")
    saved = outcome.model
    modelfile.save_model(out, saved, force=force)
    t, spec = saved.training, saved.spec
    kind = "SS-DSVDD" if t["n_labeled_normal"] + t["n_labeled_anomalous"] else "Deep SVDD"
    side = saved.input_size
    patches = f" on {spec.image_size} px patches" if saved.patch else ""
    console.print(
        f"wrote [bold]{out}[/]: {kind} {objective.value}, {spec.name} {spec.channels}x{side}x{side}{patches}, "
        f"{t['n_unlabeled']} unlabeled / {t['n_labeled_normal']} normal / {t['n_labeled_anomalous']} anomalous, "
        f"{t['epochs']} epochs in {t['seconds']} s (+ {t['pretrain_seconds']} s pretraining) on {plan.device}, final loss {_num(t['final_loss'])}, "
        f"threshold {saved.threshold:.4g} ({saved.threshold_rule})"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@app.command()
@handle_errors
def score(
    model: Annotated[Path, typer.Argument(help="Model file written by `ssd train`.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (read recursively).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write all scores to this .csv or .json file.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Flag images with score above this (default: the model's stored threshold).")] = None,
    top: Annotated[int, typer.Option(help="Rows of the ranked table to print (0 = all).")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded per batch (memory is bounded by about two batches).")] = 512,
    workers: Annotated[Optional[int], typer.Option(help="Image decoding threads (default: half the cores, at most 8; the rest run the network).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Score images: the distance ||phi(x) - c|| to the hypersphere center; higher is more anomalous."""
    from . import modelfile
    from .detector import Detector
    from .images import list_images
    from .scores import ScoreRow, ranked_table, write_scores

    if output is not None:
        if output.suffix.lower() not in (".csv", ".json"):
            raise UsageError(f"--output must end in .csv or .json, got '{output.name}'")
        check_writable(output, force)
    saved = modelfile.load_model(model)
    detector = Detector(saved, resolve_device(device), threshold)
    listing = list_images(paths, what="score")
    paths, scores, skipped = detector.score_all(listing.files, batch_size, workers)
    warn_skipped(listing.skipped + skipped, "score")
    rows = [ScoreRow(str(p), s, s > detector.threshold) for p, s in zip(paths, scores.tolist())]
    if not rows:
        raise SsdError("score: none of the image files could be read", ExitCode.BAD_INPUT)
    rows.sort(key=lambda r: r.score, reverse=True)
    console.print(ranked_table(rows, detector.threshold, top))
    if output is not None:
        write_scores(output, rows, model=model, threshold=detector.threshold, force=force)
        console.print(f"wrote {len(rows)} scores to [bold]{output}[/]")


def _read_labels_csv(path: Path) -> tuple[list[Path], list[bool]]:
    """path,label rows (label normal/anomaly, or 0/1); relative paths are relative to the CSV file."""
    import csv

    if not path.is_file():
        raise SsdError(f"--labels: '{path}' does not exist", ExitCode.BAD_INPUT)
    names = {"normal": False, "0": False, "anomaly": True, "anomalous": True, "1": True}
    files, flags = [], []
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and rows[0][:2] == ["path", "label"]:
        rows = rows[1:]
    for i, row in enumerate(rows, 1):
        if len(row) < 2 or row[1].strip().lower() not in names:
            raise SsdError(f"--labels {path}: row {i} is not 'path,label' with label normal or anomaly: {row}", ExitCode.BAD_INPUT)
        files.append((path.parent / row[0]).resolve() if not Path(row[0]).is_absolute() else Path(row[0]))
        flags.append(names[row[1].strip().lower()])
    if not files:
        raise SsdError(f"--labels {path}: no rows", ExitCode.BAD_INPUT)
    return files, flags


@app.command()
@handle_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model file written by `ssd train`.")],
    normal: Annotated[Optional[list[Path]], typer.Option("--normal", help="Folder of normal test images; repeatable.")] = None,
    anomalous: Annotated[Optional[list[Path]], typer.Option("--anomalous", help="Folder of anomalous test images; repeatable.")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="CSV of path,label (label: normal or anomaly); paths relative to the CSV.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Built-in dataset whose test split to use: mnist, fashion-mnist or cifar10.")] = None,
    normal_class: Annotated[Optional[int], typer.Option("--normal-class", help="With --dataset: the class that is normal; all others are anomalous.")] = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold for precision/recall/F1 (default: the model's).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the metrics to this JSON file.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded per batch (memory is bounded by about two batches).")] = 512,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Measure a model on labeled data: AUROC, AUPRC, and precision/recall/F1 at the threshold."""
    import json

    import numpy as np

    from . import modelfile
    from .detector import Detector
    from .files import write_text_atomic
    from .images import list_images
    from .metrics import compute_metrics
    from .render import metrics_table

    sources = sum([bool(normal or anomalous), labels is not None, dataset is not None])
    if sources != 1:
        raise UsageError("give exactly one of: --normal and --anomalous folders, --labels CSV, or --dataset with --normal-class")
    if output is not None:
        if output.suffix.lower() != ".json":
            raise UsageError(f"--output must end in .json, got '{output.name}'")
        check_writable(output, force)
    saved = modelfile.load_model(model)
    detector = Detector(saved, resolve_device(device), threshold)
    spec = saved.spec
    if dataset is not None:
        from .datasets import get_builtin, load_builtin, resolve_data_root

        b = get_builtin(dataset)
        if normal_class is None or not 0 <= normal_class < b.num_classes:
            raise UsageError(f"--dataset needs --normal-class between 0 and {b.num_classes - 1}")
        if (b.channels, b.image_size) != (spec.channels, saved.input_size):
            raise SsdError(
                f"model expects {spec.channels}x{saved.input_size}x{saved.input_size} images; {dataset} has {b.channels}x{b.image_size}x{b.image_size}",
                ExitCode.BAD_MODEL,
            )
        test = load_builtin(dataset, resolve_data_root(data_root), train=False, download=download)
        scores = detector.score(test.images).numpy()
        is_anomaly = test.labels.numpy() != normal_class
        source = f"{dataset} test split, normal class {normal_class} ({test.source})"
    else:
        if labels is not None:
            files, flags = _read_labels_csv(labels)
            source = f"labels file {labels}"
        else:
            if not normal or not anomalous:
                raise UsageError("--normal and --anomalous must both be given")
            n_files = list_images(normal, what="--normal")
            a_files = list_images(anomalous, what="--anomalous")
            warn_skipped(n_files.skipped + a_files.skipped, "evaluate")
            files = n_files.files + a_files.files
            flags = [False] * len(n_files.files) + [True] * len(a_files.files)
            source = f"folders normal={', '.join(map(str, normal))}; anomalous={', '.join(map(str, anomalous))}"
        truth = dict(zip(files, flags))
        paths, score_tensor, skipped = detector.score_all(files, batch_size)
        warn_skipped(skipped, "evaluate")
        scores, is_anomaly = score_tensor.numpy(), np.asarray([truth[p] for p in paths])
    metrics = compute_metrics(scores, is_anomaly, detector.threshold)
    console.print(metrics_table(metrics, title=f"{model.name} on {source}"))
    if output is not None:
        doc = {"tool": "ssd", "tool_version": __version__, "model": str(model), "data": source, "metrics": metrics.to_dict()}
        write_text_atomic(output, json.dumps(doc, indent=1) + "\n", force)
        console.print(f"wrote [bold]{output}[/]")


@app.command()
@handle_errors
def benchmark(
    dataset: Annotated[str, typer.Argument(help="mnist, fashion-mnist, cifar10, a folder with train/<class>/ and test/<class>/ image folders, or 'report' to summarise an existing --out folder.")],
    report_dir: Annotated[Optional[Path], typer.Argument(metavar="[DIR]", help="With 'report': the results folder (same as --out).")] = None,
    scenario: Annotated[str, typer.Option(help="labeled (i), pollution (ii), classes (iii), or all.")] = "labeled",
    classes: Annotated[Optional[str], typer.Option(help="Normal classes to run, comma-separated (default: all).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per setup (default: the preset's, 10 for paper, 1 for quick).")] = None,
    levels: Annotated[Optional[str], typer.Option(help="Levels to run, comma-separated (default: the paper's, e.g. 0,1,5,10,20).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Methods, comma-separated, from: soft_dsvdd, one_class_dsvdd, soft_ss_dsvdd, one_class_ss_dsvdd, supervised (default: all).")] = None,
    preset: Annotated[str, typer.Option(help="paper: Appendix C epochs (150 train, 150/350 autoencoder), 10 seeds; quick: 6+6 epochs, 1 seed.")] = "paper",
    epochs: Annotated[Optional[int], typer.Option(help="Override the preset's training epochs (the lr drop keeps its relative place).")] = None,
    pretrain_epochs: Annotated[Optional[int], typer.Option(help="Override the preset's autoencoder pretraining epochs.")] = None,
    nus: Annotated[str, typer.Option(help="nu values for the soft-boundary methods; the better is reported, as in the paper.")] = "0.01,0.1",
    preprocessing: Annotated[Preprocessing, typer.Option(help="gcn (the paper's: GCN l1 + min-max from the normal class's training data) or scale.")] = Preprocessing.GCN,
    arch: Annotated[Optional[str], typer.Option(help="Network (default: the dataset's own; for image folders chosen from the training images as `ssd train` does).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder: results.jsonl (resumable), summary.csv/.md and figures.")] = Path("benchmark-results"),
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    device: DeviceOpt = "auto",
    stack: Annotated[str, typer.Option(help="Train the runs of one setup at once (seeds, methods): auto = on CUDA only, where it pays; on; off. Same results up to rounding.")] = "auto",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before a plan estimated to take over an hour.")] = False,
) -> None:
    """Rerun the paper's experiments (Tables 1-3) with this engine and print them beside the paper's.

    Each finished run is appended to OUT/results.jsonl; rerunning the same command resumes. At the end
    (or with `ssd benchmark report DIR`) a table per scenario is printed and written to OUT.
    """
    from . import benchmark as bench
    from .protocol import Method, Scenario
    from .stacked import stack_is_faster

    if dataset == "report":
        _report(report_dir or out)
        return
    if report_dir is not None:
        raise UsageError("a second argument is only taken after 'report'")
    try:
        chosen = list(Scenario) if scenario == "all" else [Scenario(scenario)]
        chosen_methods = list(Method) if methods is None else [Method(m) for m in methods.replace(" ", "").split(",") if m]
        the_preset = bench.Preset(preset)
        nu_values = tuple(float(v) for v in nus.split(",") if v)
        level_values = None if levels is None else [float(v) for v in levels.split(",") if v]
        if stack not in ("auto", "on", "off"):
            raise ValueError(f"--stack must be auto, on or off, got '{stack}'")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .datasets import resolve_data_root

    dev = resolve_device(device)
    with console.status("loading data"):
        data = bench.load_benchmark_data(dataset, resolve_data_root(data_root), download, arch)
    class_list = list(range(data.n_classes)) if classes is None else list(parse_ints(classes, "--classes"))
    if any(not 0 <= c < data.n_classes for c in class_list):
        raise UsageError(f"--classes must be between 0 and {data.n_classes - 1}")
    settings = bench.with_epochs(bench.preset_settings(the_preset, data.spec), epochs, pretrain_epochs)
    settings = replace(settings, preprocessing=preprocessing, nus=nu_values, seeds=seeds or settings.seeds)
    runs = bench.plan_runs(chosen, class_list, settings.seeds, chosen_methods, settings.nus, level_values)
    done = bench.completed_keys(out, data.name, settings)
    todo = [r for r in runs if r.key() not in done]
    with console.status("timing a few training steps for the estimate"):
        estimate = bench.estimate_seconds(todo, data, settings, dev)
    use_stack = stack == "on" or (stack == "auto" and stack_is_faster(dev))
    render_plan(data, settings, runs, todo, estimate, dev, out, use_stack)
    if estimate > 3600 and not yes and sys.stdin.isatty() and not typer.confirm("Start?", default=True):
        raise typer.Exit(ExitCode.OK)
    if todo:
        with run_progress(len(todo)) as (progress, task):
            on_start = lambda group: progress.update(task, status=describe_runs(group))  # noqa: E731
            for _ in bench.run_benchmark(data, todo, settings, out, dev, stack=use_stack, on_start=on_start):
                progress.advance(task)
    _report(out)


def _report(out: Path) -> None:
    from .report import read_results, summarize, write_summary

    path = out / "results.jsonl"
    if not path.is_file():
        raise SsdError(f"no results in '{out}' (expected {path})", ExitCode.BAD_INPUT)
    results = read_results(path)
    if results.skipped_lines:
        warn(f"{path}: skipped {results.skipped_lines} unreadable line(s) (a run cut short is redone on resume)")
    summary = summarize(results.records)
    render_summary(summary)
    written = write_summary(summary, out)
    console.print("wrote " + ", ".join(str(p) for p in written))


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(run())
