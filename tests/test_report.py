import csv
import json
from pathlib import Path
from typing import Any

import pytest

from ssd_cli.experiments import report
from ssd_cli.errors import InputError
from ssd_cli.experiments.protocol import Method, Scenario
from ssd_cli.experiments.report import read_results, summarize, write_summary


def record(
    scenario: str, level: float, method: str, auc: float, *, seed: int = 0, nu: float | None = None
) -> dict[str, Any]:
    return {
        "dataset": "mnist",
        "data_source": "synthetic",
        "scenario": scenario,
        "level": level,
        "normal_class": 0,
        "known_classes": [1],
        "seed": seed,
        "method": method,
        "nu": nu,
        "auc": auc,
        "seconds": 1.5,
        "tool_version": "0.1.0",
        "preset": "quick",
        "preprocessing": "gcn-minmax",
    }


@pytest.fixture()
def records() -> list[dict[str, Any]]:
    rows = []
    for seed, (a, b) in enumerate([(0.90, 0.94), (0.92, 0.96)]):
        rows.append(record("labeled", 0, "soft_dsvdd", a, seed=seed, nu=0.01))
        rows.append(record("labeled", 0, "soft_dsvdd", b, seed=seed, nu=0.1))
        rows.append(record("labeled", 0, "one_class_dsvdd", 0.95, seed=seed))
        rows.append(record("labeled", 5, "soft_ss_dsvdd", 0.95, seed=seed, nu=0.01))
        rows.append(record("labeled", 5, "soft_ss_dsvdd", 0.90, seed=seed, nu=0.1))
        rows.append(record("labeled", 5, "supervised", [0.90, 0.92][seed], seed=seed))
        rows.append(record("labeled", 5, "one_class_ss_dsvdd", [0.96, 0.98][seed], seed=seed))
        rows.append(record("pollution", 10, "one_class_dsvdd", 0.88, seed=seed))
    return rows


def test_chosen_nu_mean_std_and_paper_difference(records: list[dict[str, Any]]) -> None:
    (labeled, pollution) = summarize(records).tables
    assert (labeled.scenario, pollution.scenario) == (Scenario.LABELED, Scenario.POLLUTION)
    assert labeled.levels == (0.0, 5.0)
    assert labeled.methods == tuple(Method)

    soft = labeled.cells[(0.0, Method.SOFT_DSVDD)]
    assert soft.nu == 0.1  # nu=0.1 had mean 95.0 against 91.0 for nu=0.01
    assert (soft.n, soft.mean, soft.std) == (2, pytest.approx(95.0), pytest.approx(2.0 / 2))
    assert soft.diff == pytest.approx(95.0 - 94.1)

    soft_ss = labeled.cells[(5.0, Method.SOFT_SS_DSVDD)]
    assert (soft_ss.nu, soft_ss.mean, soft_ss.std) == (0.01, pytest.approx(95.0), pytest.approx(0.0))

    ss = labeled.cells[(5.0, Method.ONE_CLASS_SS_DSVDD)]
    assert (ss.n, ss.nu, ss.mean, ss.std) == (2, None, pytest.approx(97.0), pytest.approx(1.0))
    assert (ss.paper_mean, ss.paper_std) == (96.8, 0.9)
    assert ss.diff == pytest.approx(0.2)
    assert report.format_cell(ss) == "97.0±1.0 (paper 96.8±0.9, +0.2)"

    assert (5.0, Method.SOFT_DSVDD) not in labeled.cells  # neither run nor in the paper
    assert (0.0, Method.SUPERVISED) not in labeled.cells


def test_level_zero_ss_cells_repeat_unsupervised_runs(records: list[dict[str, Any]]) -> None:
    labeled, pollution = summarize(records).tables
    filled = labeled.cells[(0.0, Method.SOFT_SS_DSVDD)]
    assert filled.filled_from is Method.SOFT_DSVDD
    assert (filled.n, filled.nu, filled.mean) == (2, 0.1, pytest.approx(95.0))
    assert filled.paper_mean == 94.1
    assert report.format_cell(filled) == "95.0±1.0† (paper 94.1±1.0, +0.9)"
    assert labeled.cells[(0.0, Method.ONE_CLASS_SS_DSVDD)].filled_from is Method.ONE_CLASS_DSVDD
    assert labeled.cells[(0.0, Method.ONE_CLASS_DSVDD)].filled_from is None
    # scenario (ii) has labels at every level, so nothing is filled: the cell shows the paper only
    paper_only = pollution.cells[(10.0, Method.ONE_CLASS_SS_DSVDD)]
    assert (paper_only.n, paper_only.mean, paper_only.filled_from) == (0, None, None)
    assert report.format_cell(paper_only) == "— (paper 92.4±1.4)"


def test_summary_metadata_and_duplicates(records: list[dict[str, Any]]) -> None:
    summary = summarize([*records, records[-1]])
    assert summary.n_runs == len(records)
    assert summary.duplicates_dropped == 1
    assert summary.tables[1].cells[(10.0, Method.ONE_CLASS_DSVDD)].n == 2
    assert (summary.data_sources, summary.presets, summary.preprocessings, summary.tool_versions) == (
        ("synthetic",),
        ("quick",),
        ("gcn-minmax",),
        ("0.1.0",),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [({"method": "svm"}, "svm"), ({"auc": 95.0}, r"\[0, 1\]"), ({"level": 2.5, "scenario": "classes"}, "whole")],
)
def test_invalid_records_are_input_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        summarize([record("labeled", 5, "supervised", 0.9) | change])
    broken = record("labeled", 5, "supervised", 0.9)
    del broken["auc"]
    with pytest.raises(InputError, match="record 1 lacks auc"):
        summarize([broken])


def test_read_results_skips_a_truncated_last_line(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "results.jsonl"
    lines = [json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n\n" + lines[0][:40], encoding="utf-8")
    results = read_results(path)
    assert results.records == records
    assert results.skipped_lines == 1
    with pytest.raises(InputError, match="cannot read"):
        read_results(tmp_path / "missing.jsonl")


def test_write_summary_files(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    written = write_summary(summarize(records), tmp_path / "out")
    names = sorted(p.name for p in written)
    expected = ["summary.csv", "summary.md"]
    if report.MATPLOTLIB_AVAILABLE:
        expected += ["summary_mnist_labeled.png", "summary_mnist_pollution.png"]
    assert names == sorted(expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(expected)  # no temp files left
    if report.MATPLOTLIB_AVAILABLE:
        assert (tmp_path / "out" / "summary_mnist_labeled.png").read_bytes().startswith(b"\x89PNG")

    with (tmp_path / "out" / "summary.csv").open(encoding="utf-8") as handle:
        rows = {(r["scenario"], r["level"], r["method"]): r for r in csv.DictReader(handle)}
    row = rows[("labeled", "0", "soft_ss_dsvdd")]
    assert row == {
        "dataset": "mnist",
        "scenario": "labeled",
        "level": "0",
        "method": "soft_ss_dsvdd",
        "nu_chosen": "0.1",
        "by_nu": "0.01: 91.00 +- 1.00 (n=2); 0.1: 95.00 +- 1.00 (n=2)",  # both nus, not only the chosen one
        "n": "2",
        "ours_mean": "95.00",
        "ours_std": "1.00",
        "paper_mean": "94.10",
        "paper_std": "1.00",
        "diff": "0.90",
        "filled_from": "soft_dsvdd",
        "setting": "",  # one setting: the tables are not split
    }
    assert rows[("pollution", "10", "supervised")]["n"] == "0"

    markdown = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "Data source: synthetic; preset: quick; preprocessing: gcn-minmax" in markdown
    assert "16 runs" in markdown and "ν ∈ {0.01, 0.1}" in markdown
    assert "| 5% | " in markdown and "97.0±1.0 (paper 96.8±0.9, +0.2)" in markdown


def test_png_skipped_without_matplotlib(
    tmp_path: Path, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "MATPLOTLIB_AVAILABLE", False)
    written = write_summary(summarize(records), tmp_path)
    assert [p.name for p in written] == ["summary.csv", "summary.md"]


def test_runs_of_other_settings_are_never_pooled(tmp_path: Path) -> None:
    """A folder holding runs of two decoders (or presets, networks) gets one table per setting;
    records from before ssd 0.4 name no network and join the one network the others name."""
    legacy = record("labeled", 0, "one_class_dsvdd", 0.90)  # no network, no decoder: upsample
    new = {**record("labeled", 0, "one_class_dsvdd", 0.94, seed=1), "network": "mnist", "decoder": "upsample"}
    other = {**record("labeled", 0, "one_class_dsvdd", 0.80), "network": "mnist", "decoder": "transposed"}
    one = summarize([legacy, new])
    assert len(one.tables) == 1 and one.tables[0].setting == "" and one.n_runs == 2
    assert one.tables[0].cells[(0.0, Method.ONE_CLASS_DSVDD)].mean == pytest.approx(92.0)

    two = summarize([legacy, new, other])
    assert [(t.setting, t.cells[(0.0, Method.ONE_CLASS_DSVDD)].n) for t in two.tables] == [
        ("network mnist, preset quick, preprocessing gcn-minmax, decoder transposed", 1),
        ("network mnist, preset quick, preprocessing gcn-minmax, decoder upsample", 2),
    ]
    assert two.tables[0].cells[(0.0, Method.ONE_CLASS_DSVDD)].mean == pytest.approx(80.0)
    write_summary(two, tmp_path)
    markdown = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "## mnist (network mnist, preset quick, preprocessing gcn-minmax, decoder transposed): " in markdown
    with (tmp_path / "summary.csv").open(encoding="utf-8") as handle:
        settings = [r["setting"] for r in csv.DictReader(handle) if r["method"] == "one_class_dsvdd"]
    assert sorted(settings) == [two.tables[0].setting, two.tables[1].setting]
    if report.MATPLOTLIB_AVAILABLE:
        assert len(list(tmp_path.glob("summary_mnist_*_labeled.png"))) == 2  # one figure each, none overwritten
