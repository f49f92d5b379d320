"""`ssd benchmark`: a smoke run on MNIST, resume after a stop, and the plan/settings logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssd_cli.experiments import benchmark as bench
from ssd_cli.experiments.autoencoders import AUTOENCODER_DIR, saved_autoencoders
from ssd_cli.experiments.benchmark_plan import estimate_seconds
from ssd_cli.experiments.data import load_benchmark_data
from ssd_cli.experiments.results import RESULTS_FILE
from ssd_cli.experiments.runs import group_runs, plan_runs
from ssd_cli.experiments.settings import PAPER_NUS, Preset, preset_settings, with_epochs
from ssd_cli.cli import app
from ssd_cli.core.nets import get_spec
from ssd_cli.experiments.protocol import Method, Scenario

from conftest import folder_dataset

runner = CliRunner()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plan_matches_the_papers_table_layout() -> None:
    runs = plan_runs([Scenario.LABELED], [0, 1], 2, list(Method), PAPER_NUS)
    # level 0: soft (2 nus) + one-class; levels 1, 5, 10, 20: soft SS (2 nus) + one-class SS + supervised
    assert len(runs) == 2 * 2 * (3 + 4 * 4)
    assert {r.method for r in runs if r.level == 0} == {Method.SOFT_DSVDD, Method.ONE_CLASS_DSVDD}
    assert {r.nu for r in runs if r.method is Method.SOFT_SS_DSVDD} == {0.01, 0.1}
    assert all(r.nu is None for r in runs if not r.method.is_soft_boundary)
    # runs that share a training set are adjacent, so they share data and pretraining
    sets = [(r.scenario, r.level, r.normal_class, r.seed) for r in runs]
    assert sets == sorted(sets, key=sets.index)


def test_presets_follow_the_paper() -> None:
    paper = preset_settings(Preset.PAPER, get_spec("mnist"))
    assert (paper.train.epochs, paper.train.lr, paper.train.lr_milestones, paper.train.batch_size) == (150, 1e-4, (50,), 200)
    assert paper.train.weight_decay == 1e-6 and paper.seeds == 10 and paper.nus == (0.01, 0.1)
    assert (paper.pretrain.epochs, paper.pretrain.lr_milestones, paper.pretrain.weight_decay) == (150, (50,), 0.5e-3)
    colour = preset_settings(Preset.PAPER, get_spec("cifar10"))
    assert (colour.pretrain.epochs, colour.pretrain.lr_milestones, colour.pretrain.weight_decay) == (350, (250,), 0.5e-6)
    custom = with_epochs(paper, 15, 30)
    assert custom.train.lr_milestones == (5,) and custom.pretrain.lr_milestones == (10,)
    assert custom.label != paper.label  # resume never mixes runs of other settings


@pytest.mark.slow
def test_smoke_run_on_mnist(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "mnist", "--data-root", str(data_root), "--preset", "quick", "--epochs", "1",
            "--pretrain-epochs", "1", "--classes", "0,1", "--levels", "0,5", "--methods", "one_class_dsvdd,one_class_ss_dsvdd,supervised",
            "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    records = _lines(out / "results.jsonl")
    assert sorted((r["normal_class"], r["level"], r["method"]) for r in records) == [
        (c, lvl, m) for c in (0, 1) for lvl, m in [(0, "one_class_dsvdd"), (5, "one_class_ss_dsvdd"), (5, "supervised")]
    ]
    for r in records:
        assert 0.5 < r["auc"] <= 1.0, r  # even one epoch separates MNIST digits far better than chance
        assert r["tool_version"] and r["preset"] == "quick(epochs=1,pretrain=1)" and r["preprocessing"] == "gcn"
    ss = [r for r in records if r["method"] == "one_class_ss_dsvdd"]
    assert all(r["n_labeled"] == round(0.05 * r["n_unlabeled"] / 0.95) and len(r["known_classes"]) == 1 for r in ss)
    assert "One-Class SS-DSVDD" in result.output and "paper 96.8" in result.output
    assert {"summary.csv", "summary.md"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow
def test_resume_skips_finished_runs_and_redoes_a_cut_one(tmp_path: Path, data_root: Path) -> None:
    dataset = folder_dataset(tmp_path / "digits", data_root)
    out = tmp_path / "bench"
    args = ["benchmark", str(dataset), "--scenario", "labeled", "--levels", "0,5", "--epochs", "1", "--pretrain-epochs", "1",
            "--preset", "quick", "--out", str(out), "--device", "cpu", "--nus", "0.1", "--seeds", "1"]
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    results = out / "results.jsonl"
    records = _lines(results)
    assert len(records) == 3 * 5  # 3 classes x (2 unsupervised at 0% + 3 runs at 5%: one nu)
    assert records[0]["dataset"] == "digits" and "image folders" in records[0]["data_source"]

    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 to do" in again.output
    assert _lines(results) == records  # nothing rerun, nothing lost

    # A stop mid-write leaves a cut line: that run is redone, the others are kept.
    text = results.read_text().splitlines()
    results.write_text("\n".join(text[:-1]) + "\n" + text[-1][:25])
    resumed = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert resumed.exit_code == 0, resumed.output
    assert "1 to do" in resumed.output
    lines = results.read_text().splitlines()
    assert lines[len(records) - 1] == text[-1][:25]  # the cut line stays, closed, and is ignored
    final = [json.loads(line) for i, line in enumerate(lines) if i != len(records) - 1]
    assert len(final) == len(records)
    assert {(r["normal_class"], r["level"], r["method"], r["nu"]) for r in final} == {
        (r["normal_class"], r["level"], r["method"], r["nu"]) for r in records
    }
    report = runner.invoke(app, ["benchmark", "report", str(out)], env={"COLUMNS": "200"})
    assert report.exit_code == 0 and "skipped 1 unreadable line" in report.output


def test_report_of_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["benchmark", "report", str(tmp_path / "nothing")])
    assert result.exit_code == 3 and "no results" in result.output and "Traceback" not in result.output


def test_unknown_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["benchmark", "imagenet", "--out", str(tmp_path)])
    assert result.exit_code == 3 and "neither a built-in dataset" in result.output


@pytest.mark.slow
def test_stacked_runs_give_the_same_results_as_one_by_one(tmp_path: Path, data_root: Path) -> None:
    """The GPU path (several seeds and methods trained at once) must not change the numbers."""
    import torch

    dataset = folder_dataset(tmp_path / "digits", data_root)
    data = load_benchmark_data(str(dataset), data_root, False, None)
    settings = with_epochs(preset_settings(Preset.QUICK, data.spec), 2, 2)
    runs = plan_runs([Scenario.POLLUTION], [0], 2, list(Method), (0.01, 0.1), levels=[10])
    assert len(group_runs(runs, stack=True)) == 3  # unsupervised, SS and supervised groups
    alone = list(bench.run_benchmark(data, runs, settings, tmp_path / "a", torch.device("cpu"), stack=False))
    stacked = list(bench.run_benchmark(data, runs, settings, tmp_path / "b", torch.device("cpu"), stack=True))
    assert [r.run for r in alone] == runs and {r.run for r in stacked} == set(runs)
    by_run = {r.run: r for r in stacked}
    for a in alone:
        b = by_run[a.run]
        assert b.record["stacked_runs"] > 1
        assert a.record["auc"] == pytest.approx(b.record["auc"], abs=0.01), a.run


@pytest.mark.slow
def test_the_decoder_is_part_of_a_runs_identity(tmp_path: Path, data_root: Path) -> None:
    """Runs pretrained with another decoder, or of another network, are other runs; records from
    before these were recorded were pretrained with the upsample one and still count as such."""
    dataset = folder_dataset(tmp_path / "digits", data_root)
    out = tmp_path / "bench"
    args = ["benchmark", str(dataset), "--levels", "0", "--methods", "one_class_dsvdd", "--epochs", "1",
            "--pretrain-epochs", "1", "--preset", "quick", "--out", str(out), "--device", "cpu"]
    first = runner.invoke(app, [*args, "--decoder", "transposed"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "(transposed decoder)" in first.output
    results = out / "results.jsonl"
    assert [r["decoder"] for r in _lines(results)] == ["transposed"] * 3

    default = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert default.exit_code == 0 and "3 to do" in default.output, default.output
    records = _lines(results)
    assert sorted(r["decoder"] for r in records) == ["transposed"] * 3 + ["upsample"] * 3
    summary = (out / "summary.md").read_text()
    assert "autoencoder decoder: transposed, upsample" in summary
    assert summary.count("decoder transposed): ") == 1 and summary.count("decoder upsample): ") == 1  # never pooled

    other_net = runner.invoke(app, [*args, "--arch", "fashion-mnist"], env={"COLUMNS": "200"})
    assert other_net.exit_code == 0 and "3 to do" in other_net.output, other_net.output
    assert sorted(r["network"] for r in _lines(results)) == ["fashion-mnist"] * 3 + ["mnist"] * 6

    legacy = [{k: v for k, v in r.items() if k not in ("decoder", "network")} for r in records if r["decoder"] == "upsample"]
    results.write_text("".join(json.dumps(r) + "\n" for r in legacy))
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 to do" in again.output, again.output

    bad = runner.invoke(app, [*args, "--decoder", "deconv"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "decoder must be one of" in bad.output


@pytest.mark.slow
def test_a_resumed_benchmark_takes_up_its_saved_autoencoders(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop after hours of pretraining loses no pretraining: the autoencoders are saved as they
    finish, a resumed run reads them instead of pretraining (with the same results), the plan's
    estimate leaves them out, and they are removed once the whole plan is done."""
    import torch

    from ssd_cli.experiments.benchmark_plan import BenchmarkRequest, plan_benchmark
    from ssd_cli.io.modelfile import load_autoencoder

    dataset = folder_dataset(tmp_path / "digits", data_root)
    out = tmp_path / "bench"
    data = load_benchmark_data(str(dataset), data_root, False, None)
    settings = with_epochs(preset_settings(Preset.QUICK, data.spec), 1, 2)
    runs = plan_runs([Scenario.LABELED], [0, 1], 1, [Method.ONE_CLASS_DSVDD, Method.ONE_CLASS_SS_DSVDD], (0.1,), levels=[0, 5])
    first = list(bench.run_benchmark(data, runs[:1], settings, out, torch.device("cpu")))  # class 0 at 0%, then a stop
    saved = sorted((out / AUTOENCODER_DIR).iterdir())
    assert [p.name.split("-")[:2] for p in saved] == [["class0", "seed0"]]
    record = load_autoencoder(saved[0]).training  # the record `ssd pretrain` writes, for `ssd info`
    assert record["n_unlabeled"] == 60 and record["epochs"] == 2 and record["seed"] == 0 and record["final_loss"] > 0

    req = BenchmarkRequest(str(dataset), out, levels=(0, 5), methods=("one_class_dsvdd", "one_class_ss_dsvdd"), preset="quick",
                           epochs=1, pretrain_epochs=2, data_root=data_root, device="cpu", seeds=1)
    plan = plan_benchmark(req)
    assert len(plan.todo) == 5 and saved_autoencoders(out, data, settings, plan.todo) != {}
    assert plan.estimate_seconds < estimate_seconds(plan.todo, data, settings, plan.device, plan.cost)

    (out / RESULTS_FILE).unlink()  # class 0 at 0% again: from the saved autoencoder, not pretrained
    pretrained: list[int] = []
    real_pretrain = bench.pretrain
    monkeypatch.setattr(bench, "pretrain", lambda spec, x, *a, **k: pretrained.append(len(x)) or real_pretrain(spec, x, *a, **k))
    again = list(bench.run_benchmark(data, runs, settings, out, torch.device("cpu")))
    assert again[0].record["auc"] == first[0].record["auc"]
    assert len(pretrained) == 1  # class 1 only: class 0's levels 0 and 5 share the saved one
    assert len(list((out / AUTOENCODER_DIR).iterdir())) == 2

    (out / AUTOENCODER_DIR / "notes.txt").write_text("not ours")
    args = ["benchmark", str(dataset), "--levels", "0,5", "--methods", "one_class_dsvdd,one_class_ss_dsvdd", "--epochs", "1",
            "--pretrain-epochs", "2", "--preset", "quick", "--out", str(out), "--device", "cpu", "--seeds", "1"]
    done = runner.invoke(app, args, env={"COLUMNS": "200"})  # the plan has a third class (digit 7): pretrained, then all removed
    assert done.exit_code == 0 and "2 to do" in done.output, done.output
    assert [p.name for p in (out / AUTOENCODER_DIR).iterdir()] == ["notes.txt"]
