"""Terminal output for the CLI: progress bars, warnings and tables (the engine never prints)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.table import Table

from ssd_cli.core.roles import Role
from ssd_cli.io.files import printable

if TYPE_CHECKING:  # imported lazily: `ssd --help` should not pay for torch, `ssd score` for scikit-learn and torchvision
    from ssd_cli.core.training import EpochInfo
    from ssd_cli.experiments.runs import Run
    from ssd_cli.experiments.benchmark_plan import BenchmarkPlan
    from ssd_cli.core.config import OptimConfig
    from ssd_cli.engine import TrainPlan
    from ssd_cli.data.scan import RoleScan, Spread
    from ssd_cli.data.images import Skipped
    from ssd_cli.metrics import DetectionMetrics, PixelMetrics
    from ssd_cli.experiments.report import Cell, Summary
    from ssd_cli.io.results import Scores
    from ssd_cli.thresholds import OperatingPoint

console = Console()
err_console = Console(stderr=True)  # warnings and progress bars
_errors = Console(stderr=True)  # errors, from every rank


def quiet_unless_main() -> None:
    """Under torchrun only rank 0 prints tables, warnings and progress; every rank prints its errors."""
    from ssd_cli.core.ranks import ranks

    if not ranks().is_main:
        console.quiet = err_console.quiet = True

MAX_NAMED = 20


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {safe(message)}", highlight=False, soft_wrap=True)


def error(message: str) -> None:
    _errors.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)


def safe(text: str) -> str:
    """Text from outside (file names, messages naming them) as printable UTF-8 with rich's markup
    escaped: a file named '[red]x.png' is shown as it is, and never breaks the output."""
    return escape(printable(text))


def warn_skipped(skipped: Sequence[Skipped], what: str) -> None:
    """Name every skipped file (up to MAX_NAMED, then a count), so nothing is dropped silently."""
    from ssd_cli.data.images import name_skipped

    if skipped:
        warn(f"{what}: skipped {len(skipped)} file(s): {name_skipped(skipped, MAX_NAMED)}")


def new_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@contextmanager
def stage_progress() -> Iterator[Callable[[str, EpochInfo], None]]:
    """One progress bar per training stage (pretraining, training), created when the stage starts;
    yields the engine's (stage, epoch info) callback."""
    with new_progress() as progress:
        tasks: dict[str, TaskID] = {}

        def on_epoch(stage: str, info: EpochInfo) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=info.epochs, status="")
            progress.update(tasks[stage], completed=info.epoch, status=f"loss {info.loss:.4g}  lr {info.lr:.0e}")

        yield on_epoch


def render_train_plan(plan: TrainPlan, *, pretrain_only: bool = False) -> None:
    """The plan, before any long work: what was found, what was chosen and why, and what it costs."""
    from ssd_cli.io.info import tile_words

    lines = [f"[bold]plan[/]: {_what(plan, pretrain_only)} on {plan.device}"]
    for role, scan in plan.scan.roles.items():
        used = len(plan.files.get(role, scan.files))
        lines.append(f"  {role}: {used} image file(s){_skipped(scan)}; {_looks(scan)}")
    spec, side = plan.spec, plan.input_size
    why = f" ({safe('; '.join(plan.choice.reasons))})" if plan.choice.reasons else " (as given)"
    shape = f"{spec.channels}x{side}x{side}"
    tiles = plan.tiles
    if plan.patches is not None:
        shape = f"{spec.channels}x{spec.image_size}x{spec.image_size} patches of {shape} {'tiles' if tiles.spec else 'images'}"
    lines.append(f"  network: {spec.name}, {shape}{why}")
    if tiles.spec is not None:
        lines.append(
            f"  tiles: {tile_words(tiles.spec)}, about {tiles.typical} per image; at most {tiles.per_image} random ones of each "
            f"image trained on (seeded), every one scored; an image scores as its worst tile ({safe(tiles.reason)})"
        )
    elif tiles.reason:
        lines.append(f"  tiles: none; {safe(tiles.reason)}")
    if plan.patches is not None:
        p = plan.patches.spec
        unit, one = ("tile", "a tile") if tiles.spec else ("image", "an image")
        worst = "the worst" if p.top_k == 1 else f"the mean of the {p.top_k} worst"
        lines.append(
            f"  patches: phi sees {p.patch_size} px patches ({plan.patches.samples_per_image} random ones per {unit} "
            f"and epoch); {one} scores as {worst} of its {p.grid}x{p.grid} grid patches, {p.stride} px apart"
        )
    fitted = "tiles (the images keep their shape)" if tiles.spec else f"--resize {plan.resize.value}"
    lines.append(f"  input: {fitted}, preprocessing {plan.preprocessing.value}")
    if plan.pretrained is not None:
        lines.append(f"  pretraining: none, phi starts from {safe(str(plan.request.pretrained))}")
    elif plan.pretrain is not None:
        lines.append(f"  pretraining: {_optim(plan.pretrain)}")
    elif plan.patches is not None and plan.request.pretrain.epochs is None:
        lines.append("  pretraining: none (patch-level models start from random weights: pretraining measured no gain; --pretrain-epochs N adds it)")
    else:
        lines.append("  pretraining: none (phi starts from random weights)")
    if not pretrain_only:
        augmented = f"; images augmented each step: {', '.join(plan.cfg.augment)}" if plan.cfg.augment else ""
        whitened = "; then phi's output whitened: scores are Mahalanobis distances" if plan.cfg.whiten else ""
        raised = f" ({plan.epochs_reason})" if plan.epochs_reason else ""
        lines.append(f"  training: {plan.cfg.objective.value}, {_optim(plan.cfg.optim)}{raised}{augmented}{whitened}")
        lines.append(f"  anomalies: {_anomalies(plan)}")
        lines.append(f"  threshold: {_threshold(plan)}")
    if plan.estimate_seconds is not None:
        lines.append(f"  estimate: about {duration(plan.estimate_seconds)} of training here (from a few timed steps), plus decoding the images")
    console.print("\n".join(lines), highlight=False)


def _anomalies(plan: TrainPlan) -> str:
    """Where the anomalous samples of the objective come from, and what they pay."""
    from ssd_cli.core.config import AnomalyLoss

    cfg = plan.cfg
    parts = [f"{len(plan.files.get(Role.ANOMALIES, []))} labeled"]
    if plan.tiles.spec is not None and plan.files.get(Role.ANOMALIES):
        parts[0] += " (scored after training, not trained on: which tile holds a photo's defect is unknown)"
    if plan.files.get(Role.OUTLIERS):
        own = ""
        if plan.builtin_outliers:
            own = ", ssd's own outlier photos among them" if plan.request.outliers else ": ssd's own outlier photos"
        parts.append(f"{len(plan.files[Role.OUTLIERS])} outlier images (weight {cfg.outlier_weight:g}{own})")
    s = cfg.synthetic
    if s.enabled:
        parts.append(f"synthetic {'/'.join(s.kinds)}, {s.ratio:g} per normal sample, made each step")
    else:
        parts.append("no synthetic ones")
    loss = "(d+eps)^-1" if cfg.anomaly_loss is AnomalyLoss.INVERSE else "-log(1-exp(-d))"
    return f"{', '.join(parts)}; each pays {loss} ({safe(plan.anomalies_reason)})"


def _threshold(plan: TrainPlan) -> str:
    """How the stored threshold will be set."""
    from ssd_cli.core.calibration import HOLDOUT_FRACTION, MIN_HOLDOUT
    from ssd_cli.core.config import Objective, ThresholdSource

    if plan.cfg.objective is Objective.SOFT_BOUNDARY:
        return "the radius R"
    if plan.threshold_from is ThresholdSource.SYNTHETIC:
        anomalies = plan.held_out[1]
        check = (f"; {anomalies} of the {len(plan.files.get(Role.ANOMALIES, []))} labeled anomalies are held out too, to check the model on real defects it has not seen"
                 if anomalies else "")  # fmt: skip
        return (f"F1-best between {HOLDOUT_FRACTION:.0%} of the unlabeled images, held out of training, and synthetic anomalies made from them "
                f"(the {plan.request.threshold_quantile:g}-quantile of the training scores if fewer than {round(MIN_HOLDOUT / HOLDOUT_FRACTION)} images){check}")  # fmt: skip
    if plan.tiles.spec is not None:
        return f"the {plan.request.threshold_quantile:g}-quantile of the training images' scores, each scored over all its tiles after training"
    return f"the {plan.request.threshold_quantile:g}-quantile of the training scores"


def _what(plan: TrainPlan, pretrain_only: bool) -> str:
    if pretrain_only:
        return "pretrain the autoencoder"
    labeled = sum(len(plan.files.get(role, [])) for role in (Role.NORMALS, Role.ANOMALIES, Role.OUTLIERS))
    return f"train {'SS-DSVDD' if labeled or plan.cfg.synthetic.enabled else 'Deep SVDD'}"


def _skipped(scan: RoleScan) -> str:
    return f" ({len(scan.skipped)} other file(s) skipped)" if scan.skipped else ""


def _looks(scan: RoleScan) -> str:
    """What the sample showed, in a few words."""
    if not scan.readable:
        return f"none of {scan.sampled} sampled files readable"
    short, aspect = scan.short_side, scan.aspect
    colour = f"{100 * (scan.colour_fraction or 0):.0f}% colour"
    width, height = scan.width, scan.height
    sizes = f"{_span(width)} x {_span(height)} px (median short side {short.median:g})"
    formats = ", ".join(f"{k} {v}" for k, v in scan.formats.items())
    return f"sample of {scan.sampled}: {colour}, {sizes}, aspect {aspect.min:.2f}-{aspect.max:.2f}, {formats}"


def _span(s: Spread) -> str:
    return f"{s.min:g}" if s.min == s.max else f"{s.min:g}-{s.max:g}"


def _optim(o: OptimConfig) -> str:
    drops = f", x0.1 at epoch {', '.join(map(str, o.lr_milestones))}" if o.lr_milestones else ""
    return f"{o.epochs} epochs, Adam lr {o.lr:g}{drops}, weight decay {o.weight_decay:g}, batch {o.batch_size}"


def metrics_table(m: DetectionMetrics, title: str, rule: str, pixel: PixelMetrics | None = None) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("AUROC", f"{m.auroc:.4f}"),
        ("AUPRC", f"{m.auprc:.4f}"),
        ("threshold", f"{m.threshold:.5g} ({rule})"),
        ("precision", f"{m.precision:.4f}"),
        ("recall", f"{m.recall:.4f}"),
        ("F1", f"{m.f1:.4f}"),
        ("normal / anomalous", f"{m.n_normal} / {m.n_anomalous}"),
        ("TP / FP / TN / FN", f"{m.tp} / {m.fp} / {m.tn} / {m.fn}"),
    ]
    if pixel is not None:
        rows += [
            ("pixel AUROC", f"{pixel.auroc:.4f}"),
            (f"pixel AUPRO (FPR <= {pixel.fpr_limit:g})", f"{pixel.aupro:.4f}"),
            ("anomalous with / without mask", f"{pixel.n_masked} / {pixel.n_anomalous_without_mask}"),
        ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def points_table(points: Sequence[OperatingPoint]) -> Table:
    """Thresholds to choose from; each value can be passed to `ssd score --threshold`."""
    table = Table(title="thresholds to choose from (pass one to `ssd score --threshold`)")
    for name in ("", "threshold", "precision", "recall", "F1", "flagged", "TP / FP / TN / FN"):
        table.add_column(name, justify="left" if not name else "right")
    for p in points:
        m = p.metrics
        table.add_row(p.name, repr(round(m.threshold, 6)), f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.tp + m.fp), f"{m.tp} / {m.fp} / {m.tn} / {m.fn}")
    return table


def ranked_table(scores: Scores, top: int) -> Table:
    rows = scores.ranked()
    shown = rows if top <= 0 else rows[:top]
    t = scores.threshold
    how = f"{t.rule}; threshold {t.value:.4g}" if t.count is not None else f"score > {t.value:.4g}: {t.rule}"  # a count may split a tie
    title = f"{len(rows)} images, {scores.n_flagged} anomalous ({how})"
    if len(shown) < len(rows):
        title += f"; top {len(shown)} shown"
    table = Table(title=title)
    table.add_column("rank", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("normalised", justify="right")
    table.add_column("anomalous")
    for r in shown:
        table.add_row(str(r.rank), escape(r.name), f"{r.score:.5g}", f"{r.normalised:.3f}", "[red]yes[/]" if r.anomalous else "no")
    return table


def info_table(d: dict) -> Table:
    """`ssd info`: the description of a model or autoencoder file as label/value rows."""
    net, inp, pre, t = d["network"], d["input"], d["preprocessing"], d["training"]
    table = Table(title=safe(f"{d['file']}: ssd {d['kind']} written by ssd {d['tool_version']}"), show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    patch = f"; patches {inp['patch']['patch_size']} px, stride {inp['patch']['stride']} ({inp['patch']['grid']}x{inp['patch']['grid']} grid)" if inp["patch"] else ""
    rows = [
        ("network", f"{net['name']}: conv {net['conv_filters']} (kernel {net['kernel_size']}), dense {net['dense_units']}, {len(net['layers'])} layers, no bias; {net['decoder']} decoder in pretraining"),
        ("input", f"{inp['channels']}x{inp['size']}x{inp['size']}" + (" tiles" if inp["tile"] else f", resize {inp['resize']}") + patch),
        ("preprocessing", pre["kind"] + (f" (min-max [{pre['low']:.5g}, {pre['high']:.5g}])" if pre["kind"] == "gcn" else "")),
    ]
    if inp["tile"]:
        tile = inp["tile"]
        rows.insert(2, ("tiles", f"images scaled by {tile['scale']:g} and cut into {tile['tile_size']} px tiles overlapping by at least {tile['overlap']} px; an image scores as its worst tile"))
    if d["kind"] == "model":
        rows += [
            ("objective", f"{d['objective']}, nu {d['nu']:g}, eta {d['eta']:g}"),
            ("threshold", f"{d['threshold']:.6g} ({d['threshold_rule']})"),
            ("|c| / R", f"{d['center_norm']:.6g} / {d['radius']:.6g}"),
            ("training images", f"{_known(t['n_unlabeled'])} unlabeled, {_known(t['n_labeled_normal'])} labeled normal, {_known(t['n_labeled_anomalous'])} labeled anomalous"),
            ("anomalous samples", _anomalous_samples(t)),
            ("epochs", f"{_known(t['epochs'])} training, {_known(t['pretrain_epochs'])} pretraining"),
            ("time", f"{_known(t['seconds'])} s training, {_known(t['pretrain_seconds'])} s pretraining"),
        ]
        if t.get("labeled_at_threshold"):
            rows.append(("labeled at threshold", separation(t["labeled_at_threshold"])))
        if t.get("held_out_check"):
            rows.append(("held-out check", held_out_check(t["held_out_check"])))
    else:
        rows += [("training images", f"{_known(t['n_unlabeled'])} unlabeled"), ("epochs", f"{_known(t['epochs'])} in {_known(t['seconds'])} s")]
    rows += [("device / seed", f"{_known(t['device'])} / {_known(t['seed'])}"), ("final loss", "n/a" if t["final_loss"] is None else f"{t['final_loss']:.5g}")]
    for label, value in rows:
        table.add_row(label, value)
    return table


def separation(labeled: dict) -> str:
    """How the stored threshold separates the labeled training images (the record's labeled_at_threshold)."""
    parts = []
    if labeled["n_anomalous"]:
        parts.append(f"{labeled['anomalous_above']} of {labeled['n_anomalous']} anomalies flagged")
    if labeled["n_normal"]:
        parts.append(f"{labeled['normal_below']} of {labeled['n_normal']} normals not flagged")
    return ", ".join(parts)


def held_out_check(check: dict) -> str:
    """The model on labeled anomalies and normal images kept out of training (core/calibration.py)."""
    return (f"{check['n_anomalous']} labeled anomalies against {check['n_normal']} normal images, none trained on: AUROC {check['auroc']:.3f}; "
            f"at the threshold {check['anomalous_above']} of {check['n_anomalous']} anomalies and {check['normal_above']} of {check['n_normal']} normal images flagged")  # fmt: skip


def _anomalous_samples(t: dict) -> str:
    """Outlier images and synthetic anomalies the model trained with, as `ssd info` shows them."""
    def listed(names: list[str] | None) -> str:
        return "n/a" if names is None else ("/".join(names) or "none")

    own = " (ssd's own among them)" if t["builtin_outliers"] else ""
    scores = "" if t["whitened"] is None else ("; scores: Mahalanobis (phi whitened)" if t["whitened"] else "; scores: distance to c")
    return f"{_known(t['n_outliers'])} outlier images{own}; synthetic: {listed(t['synthetic'])}; augmented: {listed(t['augment'])}; anomaly loss {_known(t['anomaly_loss'])}{scores}"


def _known(value: object) -> object:
    """A training-record entry, or what to show where the file's record lacks it."""
    return "n/a" if value is None else value


@contextmanager
def count_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over images, fed by the API's on_progress(done, total) callback; shown only on a terminal."""
    with new_progress() as progress:
        task = progress.add_task(what, total=None, status="")

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress


def describe_runs(runs: list[Run]) -> str:
    run = runs[0]
    if len(runs) > 1:
        return f"{run.scenario.value} {run.scenario.format_level(run.level)} class {run.normal_class}: {len(runs)} runs stacked"
    nu = f" nu={run.nu:g}" if run.nu is not None else ""
    return f"{run.scenario.value} {run.scenario.format_level(run.level)} class {run.normal_class} seed {run.seed} {run.method.value}{nu}"


def render_plan(plan: BenchmarkPlan) -> None:
    data, s, runs, todo = plan.data, plan.settings, plan.runs, plan.todo
    console.print(
        f"[bold]benchmark[/] {data.name} ({data.source}); network {data.spec.name} "
        f"{data.spec.channels}x{data.spec.image_size}x{data.spec.image_size}{' (' + '; '.join(data.choice) + ')' if data.choice else ''}; device {plan.device}\n"
        f"settings: {s.label}: train {s.train.epochs} epochs (lr {s.train.lr:g}, x0.1 at {list(s.train.lr_milestones)}), "
        f"autoencoder {s.pretrain.epochs} epochs ({data.spec.decoder} decoder), batch {s.train.batch_size}, preprocessing {s.preprocessing.value}, "
        f"soft-boundary nu in {list(s.nus)} (the better reported), {s.seeds} seed(s)\n"
        f"plan: {len(runs)} runs, {len(runs) - len(todo)} already in {plan.request.out}, {len(todo)} to do; "
        f"estimated {duration(plan.estimate_seconds)} here, {'runs of one setup stacked' if plan.stack else 'one run at a time'}",
        highlight=False,
    )


def duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


@contextmanager
def run_progress(total: int) -> Iterator[tuple[Progress, TaskID]]:
    with new_progress() as progress:
        yield progress, progress.add_task("runs", total=total, status="")


def render_summary(summary: Summary) -> None:
    from ssd_cli.experiments.report import format_cell

    for t in summary.tables:
        table = Table(title=f"{t.title} — AUC %, ours (paper, ours − paper)")
        table.add_column(t.scenario.axis_label)
        for m in t.methods:
            table.add_column(m.display_name, overflow="fold")
        for level in t.levels:
            cells = [t.cells.get((level, m)) for m in t.methods]
            table.add_row(t.scenario.format_level(level), *[format_cell(c) + _nu(c) if c else "" for c in cells])
        console.print(table)
    console.print(
        f"{summary.n_runs} runs; data: {'; '.join(summary.data_sources)}; settings: {', '.join(summary.presets)}; "
        f"preprocessing: {', '.join(summary.preprocessings)}; autoencoder decoder: {', '.join(summary.decoders)}. Soft-boundary cells are the better of nu in {{0.01, 0.1}} "
        "(chosen nu shown; chosen on the test AUC, which the paper does not specify: optimistic; summary.csv lists both); † = SS-DSVDD with no labels is the unsupervised method (same runs).",
        highlight=False,
    )


def _nu(cell: Cell) -> str:
    return f" nu={cell.nu:g}" if cell.nu is not None and cell.n else ""
