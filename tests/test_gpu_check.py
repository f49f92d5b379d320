"""benchmarks/gpu_check.py --tiny: the GPU check's code paths on the CPU, so that the one run a lent
GPU gets does not fail on something a CPU could have found."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssd_cli.core.nets import architectures

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
PARTS = ("machine", "parity", "throughput", "cifar10")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """One `gpu_check.py --tiny` run as a user runs it: its JSON, its markdown and its folder."""
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "gpu_check.md").read_text()
    assert proc.stdout.strip() == report.strip()  # what it prints is what it writes
    return json.loads((out / "gpu_check.json").read_text()), report, out


@pytest.mark.slow
def test_every_part_runs_and_is_timed(tiny):
    data, report, _ = tiny
    parts = data["parts"]
    for name in PARTS:
        assert parts[name]["status"] == "ok", parts[name]["result"]
        assert 0 <= parts[name]["seconds"] <= parts["total"]["seconds"]
    assert parts["total"]["seconds"] < 420
    machine = parts["machine"]["result"]
    assert machine["device"] == "cpu" and machine["torch"] and machine["cpu_cores"] >= 1
    for heading in ("# ssd GPU check", "## CUDA against CPU", "## Training throughput", "## CIFAR-10, paper preset, scenario (i)"):
        assert heading in report


@pytest.mark.slow
def test_parity_on_the_cpu_is_exact(tiny):
    """CPU against CPU with one seed must be bit-identical: a difference means training is not seeded."""
    parity = tiny[0]["parts"]["parity"]["result"]
    assert set(parity["runs"]) == {"cpu", "device", "device_again"}
    for run in parity["runs"].values():
        assert 0.5 < run["auc"] <= 1.0  # zeros against other digits: far better than chance after 2 + 2 epochs
        assert run["seconds"] > 0
    for key in ("device_vs_cpu", "device_vs_device"):
        assert parity[key] == {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "rtol_holds": 0.0}
    assert "rtol that holds: 0.0" in tiny[1]


@pytest.mark.slow
def test_throughput_of_every_network_alone_and_stacked(tiny):
    rows = tiny[0]["parts"]["throughput"]["result"]["rows"]
    assert {(r["network"], r["phase"]) for r in rows} == {(n, p) for n in architectures() for p in ("autoencoder", "deep_svdd")}
    for row in rows:
        assert [run["k"] for run in row["runs"]] == [1, 2]
        for run in row["runs"]:
            assert math.isfinite(run["images_per_s"]) and run["images_per_s"] > 0
            assert run["images_per_s"] == pytest.approx(run["k"] * run["n"] / run["epoch_s"])


@pytest.mark.slow
def test_benchmark_part_runs_both_levels_for_two_classes_and_resumes_from_its_folder(tiny):
    data, report, out = tiny
    cifar = data["parts"]["cifar10"]["result"]
    assert [c["class"] for c in cifar["calls"]] == [0, 1]
    assert all(c["status"] == "done" and c["cli_estimate"] for c in cifar["calls"])
    # Per class: 0% soft (2 nu) + one-class, stacked as 3; 5% soft SS (2 nu) + one-class SS stacked, supervised alone.
    records = cifar["records"]
    assert cifar["runs_before"] == 0 and cifar["runs_now"] == len(records) == 14
    assert sorted({(r["normal_class"], r["level"]) for r in records}) == [(0, 0.0), (0, 5.0), (1, 0.0), (1, 5.0)]
    assert {r["stacked_runs"] for r in records if r["method"] != "supervised"} == {3}
    assert all(0 <= r["auc"] <= 1 for r in records)
    cells = {(c["level"], c["method"]): c for c in cifar["cells"]}
    assert cells[(0.0, "One-Class DSVDD")]["n"] == 2 and cells[(5.0, "Supervised Classifier")]["n"] == 2
    assert (out / "cifar10" / "results.jsonl").is_file()  # the benchmark's own folder: a rerun resumes from it


def _module():
    """The script as a module (benchmarks/ is no package); dataclasses need it in sys.modules."""
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


def test_an_exhausted_budget_stops_every_part_before_any_work(tmp_path):
    gpu_check = _module()
    cfg = gpu_check.make_config(gpu_check.parse_args(["--tiny", "--budget", "0", "--out", str(tmp_path)]))
    parts = gpu_check.run(cfg)
    assert all(p["status"] == "ok" for p in parts.values())
    assert all(run == {"skipped": "out of time"} for run in parts["parity"]["result"]["runs"].values())
    assert all("out of time" in run["skipped"] for row in parts["throughput"]["result"]["rows"] for run in row["runs"])
    assert [c["status"] for c in parts["cifar10"]["result"]["calls"]] == ["not started: out of time"] * 2
    assert parts["total"]["seconds"] < 5


@pytest.mark.slow
def test_a_later_run_resumes_the_benchmark_from_an_earlier_folder(tiny, tmp_path):
    """--cifar-from: what a lent GPU could not finish, the next one takes up (finished runs are not redone)."""
    gpu_check = _module()
    earlier = tiny[2] / "cifar10"
    cfg = gpu_check.make_config(gpu_check.parse_args(["--tiny", "--classes", "0", "--cifar-from", str(earlier), "--out", str(tmp_path)]))
    result = gpu_check.part_cifar(cfg, gpu_check.Clock(60))
    assert result["runs_before"] == result["runs_now"] == 14
    [call] = result["calls"]
    assert call["status"] == "done" and call["plan"].startswith("7 runs, 7 already in") and call["plan"].endswith("0 to do")


def test_the_paper_figures_for_cifar10_are_the_ones_beside_the_cells():
    """The tiny dataset has no paper figures, so check the lookup the full run's cells come from."""
    gpu_check = _module()
    record = {"dataset": "cifar10", "data_source": "x", "scenario": "labeled", "level": 5.0, "normal_class": 1, "known_classes": [3], "seed": 0,
              "method": "one_class_ss_dsvdd", "nu": None, "auc": 0.75, "seconds": 1.0, "tool_version": "0.4.0", "preset": "paper",
              "preprocessing": "gcn", "network": "cifar10", "decoder": "upsample", "n_unlabeled": 5000, "n_polluted": 0, "n_labeled": 263,
              "train_epochs": 150, "pretrain_epochs": 350, "device": "cuda", "stacked_runs": 3}  # fmt: skip
    cells = {(c["level"], c["method"]): c for c in gpu_check._cells([record])}
    cell = cells[(5.0, "One-Class SS-DSVDD")]
    assert (cell["auc"], cell["paper"], cell["paper_std"]) == (75.0, 73.6, 4.2)
    assert cell["diff"] == pytest.approx(1.4)
