"""Summaries of benchmark runs, laid out like the paper's Tables 1-3 and Figures 2-4.

The benchmark appends one JSON object per finished run to results.jsonl. Here they are pooled per
(dataset, scenario, level, method) into mean ± std AUC over all runs (normal classes x seeds, as
the paper does) and set beside the paper's numbers. Runs of other settings (network, preset,
preprocessing, decoder) in the same folder are never pooled: each setting gets its own tables.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ssd_cli.errors import InputError
from ssd_cli.io.files import write_atomic, write_text_atomic
from ssd_cli.experiments.paper import paper_result
from ssd_cli.experiments.protocol import Method, Scenario, methods_for_level

# PNG figures need the optional matplotlib; without it write_summary skips them.
MATPLOTLIB_AVAILABLE = importlib.util.find_spec("matplotlib") is not None

_REQUIRED_KEYS = (
    "dataset",
    "data_source",
    "scenario",
    "level",
    "normal_class",
    "seed",
    "method",
    "auc",
    "tool_version",
    "preset",
    "preprocessing",
)

LEGACY_DECODER = "upsample"  # the decoder of records written before ssd 0.4, which did not name it


def record_decoder(record: Mapping[str, Any]) -> str:
    """The autoencoder decoder a run was pretrained with."""
    return record.get("decoder", LEGACY_DECODER)


_CSV_COLUMNS = (
    "dataset",
    "scenario",
    "level",
    "method",
    "nu_chosen",
    "by_nu",
    "n",
    "ours_mean",
    "ours_std",
    "paper_mean",
    "paper_std",
    "diff",
    "filled_from",
    "setting",  # empty when every run shares one setting
)


@dataclass(frozen=True)
class ResultsFile:
    records: list[dict[str, Any]]
    skipped_lines: int  # lines that were not a JSON object, e.g. one cut short by a crash


@dataclass(frozen=True)
class Cell:
    """One (level, method) cell; AUC values in %."""

    level: float
    method: Method
    n: int  # runs pooled; 0 when only the paper has this cell
    mean: float | None
    std: float | None  # over all runs (numpy's default, ddof=0)
    nu: float | None  # for soft-boundary methods, the nu whose runs had the better mean
    paper_mean: float | None
    paper_std: float | None
    filled_from: Method | None = None  # set when an SS cell repeats unsupervised runs (m = 0)
    by_nu: tuple[tuple[float, float, float, int], ...] = ()  # soft-boundary: (nu, mean, std, n) of every nu run

    @property
    def diff(self) -> float | None:
        """Ours minus paper, in AUC percentage points."""
        if self.mean is None or self.paper_mean is None:
            return None
        return self.mean - self.paper_mean


@dataclass(frozen=True)
class ScenarioTable:
    """One paper table block: rows are levels, columns are methods."""

    dataset: str
    scenario: Scenario
    levels: tuple[float, ...]
    methods: tuple[Method, ...]
    cells: dict[tuple[float, Method], Cell]  # missing where neither we nor the paper have a value
    setting: str = ""  # network, preset, preprocessing, decoder: set when a summary has several

    @property
    def title(self) -> str:
        return f"{self.dataset} ({self.setting}): {self.scenario.heading}" if self.setting else f"{self.dataset}: {self.scenario.heading}"


@dataclass(frozen=True)
class Summary:
    tables: list[ScenarioTable]
    n_runs: int
    duplicates_dropped: int  # repeated (run, nu) records; the last one is kept
    data_sources: tuple[str, ...]
    presets: tuple[str, ...]
    preprocessings: tuple[str, ...]
    tool_versions: tuple[str, ...]
    decoders: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Run:
    dataset: str
    scenario: Scenario
    level: float
    method: Method
    nu: float | None
    normal_class: int
    seed: int
    auc: float
    data_source: str
    preset: str
    preprocessing: str
    tool_version: str
    decoder: str
    network: str  # "" in records from before ssd 0.4, which did not name it

    @property
    def setting(self) -> str:
        """Runs of one setting may be pooled into a cell; runs of different ones never are."""
        network = self.network or "not recorded"
        return f"network {network}, preset {self.preset}, preprocessing {self.preprocessing}, decoder {self.decoder}"

    @property
    def identity(self) -> tuple[object, ...]:
        """What makes two records the same run (so a repeated one is not counted twice)."""
        return (
            self.dataset,
            self.data_source,
            self.preset,
            self.preprocessing,
            self.decoder,
            self.network,
            self.scenario,
            self.level,
            self.normal_class,
            self.seed,
            self.method,
            self.nu,
        )


def read_results(path: Path | str) -> ResultsFile:
    """Records of a results.jsonl; lines that do not parse as a JSON object are skipped and counted."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read results file {path}: {error.strerror or error}") from None
    records: list[dict[str, Any]] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return ResultsFile(records, skipped)


def summarize(records: Iterable[Mapping[str, Any]]) -> Summary:
    """Pool runs into paper-style tables; raises InputError for a record that is not a valid run."""
    parsed = _with_networks([_parse(record, position) for position, record in enumerate(records, start=1)])
    runs = list({run.identity: run for run in parsed}.values())
    several = len({run.setting for run in runs}) > 1
    groups: dict[tuple[str, str, Scenario, float, Method], list[_Run]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.setting, run.scenario, run.level, run.method), []).append(run)

    scenario_order = list(Scenario)
    blocks = sorted({(run.dataset, run.setting, run.scenario) for run in runs}, key=lambda b: (b[0], b[1], scenario_order.index(b[2])))
    tables = [_table(dataset, setting, scenario, groups, several) for dataset, setting, scenario in blocks]
    return Summary(
        tables=tables,
        n_runs=len(runs),
        duplicates_dropped=len(parsed) - len(runs),
        data_sources=_distinct(run.data_source for run in runs),
        presets=_distinct(run.preset for run in runs),
        preprocessings=_distinct(run.preprocessing for run in runs),
        tool_versions=_distinct(run.tool_version for run in runs),
        decoders=_distinct(run.decoder for run in runs),
    )


def _with_networks(runs: list[_Run]) -> list[_Run]:
    """Records from before ssd 0.4 name no network; where the other records of their dataset name
    exactly one, they ran on it (resume has treated them so), and they join its tables."""
    named: dict[str, set[str]] = {}
    for run in runs:
        if run.network:
            named.setdefault(run.dataset, set()).add(run.network)
    only = {dataset: next(iter(networks)) for dataset, networks in named.items() if len(networks) == 1}
    return [replace(run, network=only.get(run.dataset, "")) if not run.network else run for run in runs]


def write_summary(summary: Summary, out_dir: Path | str) -> list[Path]:
    """Write summary.csv, summary.md and (with matplotlib) one PNG per table; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Summaries are derived from results.jsonl, so they are always rewritten (force=True).
    written = [out / "summary.csv", out / "summary.md"]
    write_text_atomic(written[0], _csv_text(summary), force=True)
    write_text_atomic(written[1], _markdown(summary), force=True)
    if MATPLOTLIB_AVAILABLE:
        for table in summary.tables:
            setting = f"_{_slug(table.setting)}" if table.setting else ""
            path = out / f"summary_{_slug(table.dataset)}{setting}_{table.scenario.value}.png"
            png = io.BytesIO()
            _plot(table, png)
            write_atomic(path, png.getvalue(), force=True)
            written.append(path)
    return written


def format_cell(cell: Cell) -> str:
    """'95.1±0.9 (paper 95.0±0.8, +0.1)'; a trailing † marks SS cells that repeat unsupervised runs."""
    ours = "—" if cell.mean is None else f"{cell.mean:.1f}±{cell.std:.1f}"
    if cell.filled_from is not None:
        ours += "†"
    if cell.paper_mean is None:
        return ours
    paper = f"paper {cell.paper_mean:.1f}±{cell.paper_std:.1f}"
    if cell.diff is not None:
        paper += f", {round(cell.diff, 1) + 0.0:+.1f}"
    return f"{ours} ({paper})"


def _parse(record: Mapping[str, Any], position: int) -> _Run:
    missing = [key for key in _REQUIRED_KEYS if key not in record]
    if missing:
        raise InputError(f"result record {position} lacks {', '.join(missing)}")
    try:
        run = _Run(
            dataset=str(record["dataset"]),
            scenario=Scenario(record["scenario"]),
            level=float(record["level"]),
            method=Method(record["method"]),
            nu=None if record.get("nu") is None else float(record["nu"]),
            normal_class=int(record["normal_class"]),
            seed=int(record["seed"]),
            auc=float(record["auc"]),
            data_source=str(record["data_source"]),
            preset=str(record["preset"]),
            preprocessing=str(record["preprocessing"]),
            tool_version=str(record["tool_version"]),
            decoder=str(record_decoder(record)),
            network=str(record.get("network") or ""),
        )
        run.scenario.settings(run.level)
    except (TypeError, ValueError, InputError) as error:
        raise InputError(f"result record {position}: {error}") from None
    if not 0 <= run.auc <= 1:
        raise InputError(f"result record {position}: auc {run.auc} is not in [0, 1]")
    return run


def _table(
    dataset: str,
    setting: str,
    scenario: Scenario,
    groups: dict[tuple[str, str, Scenario, float, Method], list[_Run]],
    several: bool,
) -> ScenarioTable:
    levels = tuple(sorted({key[3] for key in groups if key[:3] == (dataset, setting, scenario)}))
    cells: dict[tuple[float, Method], Cell] = {}
    for level in levels:
        for method in Method:
            found = groups.get((dataset, setting, scenario, level, method), [])
            filled_from = None
            counterpart = method.unsupervised_counterpart
            if not found and counterpart is not None and _repeats_unsupervised(scenario, level, method):
                found = groups.get((dataset, setting, scenario, level, counterpart), [])
                filled_from = counterpart if found else None
            cell = _cell(dataset, scenario, level, method, found, filled_from)
            if cell.n or cell.paper_mean is not None:
                cells[(level, method)] = cell
    return ScenarioTable(dataset, scenario, levels, tuple(Method), cells, setting if several else "")


def _repeats_unsupervised(scenario: Scenario, level: float, method: Method) -> bool:
    """Whether an SS cell is not run at this level because m = 0 makes it the unsupervised method."""
    ran = methods_for_level(scenario, level)
    return method not in ran and method.unsupervised_counterpart in ran


def _cell(
    dataset: str, scenario: Scenario, level: float, method: Method, runs: list[_Run], filled_from: Method | None
) -> Cell:
    nu, chosen = _better_nu(runs) if method.is_soft_boundary else (None, runs)
    aucs = np.array([run.auc for run in chosen]) * 100
    by_nu = tuple(
        (v, float(np.mean(a)) * 100, float(np.std(a)) * 100, len(a))
        for v in sorted({run.nu for run in runs if run.nu is not None})
        for a in [np.array([run.auc for run in runs if run.nu == v])]
    ) if method.is_soft_boundary else ()
    paper = paper_result(dataset, scenario, level, method)
    return Cell(
        level=level,
        method=method,
        n=len(chosen),
        mean=float(aucs.mean()) if chosen else None,
        std=float(aucs.std()) if chosen else None,
        nu=nu,
        paper_mean=paper[0] if paper else None,
        paper_std=paper[1] if paper else None,
        filled_from=filled_from,
        by_nu=by_nu,
    )


def _better_nu(runs: list[_Run]) -> tuple[float | None, list[_Run]]:
    """The nu with the higher mean test AUC over the cell's runs (classes x seeds), and its runs;
    ties go to the smaller nu. The paper runs nu in {0.01, 0.1} but does not say how it chose
    between them; choosing on the test AUC, as here, is optimistic, so summary.csv lists both."""
    by_nu: dict[float | None, list[_Run]] = {}
    for run in runs:
        by_nu.setdefault(run.nu, []).append(run)
    if not by_nu:
        return None, []
    ordered = sorted(by_nu, key=lambda nu: (nu is None, nu or 0.0))
    best = max(ordered, key=lambda nu: float(np.mean([run.auc for run in by_nu[nu]])))
    return best, by_nu[best]


def _csv_text(summary: Summary) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for table in summary.tables:
        for level in table.levels:
            for method in table.methods:
                cell = table.cells.get((level, method))
                if cell is None:
                    continue
                writer.writerow(
                    [
                        table.dataset,
                        table.scenario.value,
                        f"{level:g}",
                        method.value,
                        "" if cell.nu is None else f"{cell.nu:g}",
                        "; ".join(f"{v:g}: {m:.2f} +- {sd:.2f} (n={k})" for v, m, sd, k in cell.by_nu),
                        cell.n,
                        _number(cell.mean),
                        _number(cell.std),
                        _number(cell.paper_mean),
                        _number(cell.paper_std),
                        _number(cell.diff),
                        "" if cell.filled_from is None else cell.filled_from.value,
                        table.setting,
                    ]
                )
    return buffer.getvalue()


def _markdown(summary: Summary) -> str:
    def listed(values: tuple[str, ...]) -> str:
        return ", ".join(values) or "none"

    lines = [
        "# SS-DSVDD benchmark summary",
        "",
        f"Data source: {listed(summary.data_sources)}; preset: {listed(summary.presets)}; "
        f"preprocessing: {listed(summary.preprocessings)}; autoencoder decoder: {listed(summary.decoders)}; tool version: {listed(summary.tool_versions)}; "
        f"{summary.n_runs} runs. AUC in %, mean±std over all runs (normal classes × seeds). "
        "Soft-boundary cells are the better of ν ∈ {0.01, 0.1} (the chosen ν is in summary.csv). "
        "Paper values: Ruff et al., Appendix D.",
    ]
    if summary.duplicates_dropped:
        lines += ["", f"{summary.duplicates_dropped} repeated run records were counted once (the last one)."]
    if any(cell.filled_from for table in summary.tables for cell in table.cells.values()):
        lines += [
            "",
            "† No labeled samples at this level (m = 0), so SS-DSVDD is Deep SVDD: the cell repeats the "
            "unsupervised runs, as the paper's tables do.",
        ]
    for table in summary.tables:
        lines += [
            "",
            f"## {table.title}",
            "",
            "| " + " | ".join([table.scenario.axis_label, *(m.display_name for m in table.methods)]) + " |",
            "|" + "---|" * (len(table.methods) + 1),
        ]
        for level in table.levels:
            row = [table.scenario.format_level(level)]
            for method in table.methods:
                cell = table.cells.get((level, method))
                row.append("" if cell is None else format_cell(cell))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _plot(table: ScenarioTable, handle: BinaryIO) -> None:
    """AUC against level per method: ours solid with std error bars, the paper's dashed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, method in enumerate(table.methods):
        color = f"C{index}"
        label: str | None = method.display_name
        points = _points(table, method)
        ours = [(x, c.mean, c.std) for x, c in points if c.mean is not None and c.std is not None]
        if ours:
            xs, means, stds = zip(*ours, strict=True)
            axes.errorbar(xs, means, yerr=stds, color=color, marker="o", capsize=3, label=label)
            label = None
        paper = [(x, c.paper_mean) for x, c in points if c.paper_mean is not None]
        if paper:
            xs, means = zip(*paper, strict=True)
            axes.plot(xs, means, color=color, linestyle="--", marker="x", alpha=0.7, label=label)
    style_keys = [
        Line2D([], [], color="grey", label="ours (± std)"),
        Line2D([], [], color="grey", linestyle="--", label="paper"),
    ]
    handles, _ = axes.get_legend_handles_labels()
    axes.legend(handles=handles + style_keys, fontsize="small")
    axes.set_xticks(range(len(table.levels)), [table.scenario.format_level(level) for level in table.levels])
    axes.set_xlabel(table.scenario.axis_label)
    axes.set_ylabel("AUC (%)")
    axes.set_title(table.title)
    figure.savefig(handle, format="png", dpi=120)


def _points(table: ScenarioTable, method: Method) -> list[tuple[int, Cell]]:
    """(x position, cell) for the method's cells; levels sit at evenly spaced positions, like the paper."""
    found = ((x, table.cells.get((level, method))) for x, level in enumerate(table.levels))
    return [(x, cell) for x, cell in found if cell is not None]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
