"""torchrun: scoring and the benchmark split across 2 CPU processes (gloo) give exactly what one
process gives; resume works with another number of ranks. Without torchrun nothing changes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ssd_cli.core.ranks import Ranks, ranks
from ssd_cli.experiments.results import append_record, merge_rank_files, rank_file, record_identity, results_files
from ssd_cli.experiments.runs import plan_runs
from ssd_cli.experiments.settings import PAPER_NUS
from ssd_cli.experiments.benchmark_plan import shard
from ssd_cli.experiments.protocol import Method, Scenario

from conftest import folder_dataset, ok, ssd


def torchrun(n: int, *args: object, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node n -m ssd_cli ARGS`, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "ssd_cli", *map(str, args)]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_without_torchrun_there_is_one_rank(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ranks() == Ranks() and not ranks().active and ranks().is_main


@pytest.mark.parametrize("n", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shares_cover_the_items_in_order(n: int, world: int) -> None:
    shares = [Ranks(rank, world).share(n) for rank in range(world)]
    assert [i for s in shares for i in s] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_benchmark_shards_keep_setups_together_and_balance_cost() -> None:
    runs = plan_runs([Scenario.LABELED], list(range(10)), 3, list(Method), PAPER_NUS)
    labels = torch.arange(10).repeat_interleave(torch.tensor([100 + 50 * c for c in range(10)]))
    plan = SimpleNamespace(data=SimpleNamespace(train=SimpleNamespace(labels=labels)), settings=SimpleNamespace(train=SimpleNamespace(epochs=6), pretrain=SimpleNamespace(epochs=6)))
    shares = [shard(runs, plan, Ranks(rank, 4)) for rank in range(4)]
    assert sorted((r.key() for s in shares for r in s)) == sorted(r.key() for r in runs)  # each run exactly once
    owner = {(r.normal_class, r.seed): i for i, s in enumerate(shares) for r in s}
    assert all(owner[(r.normal_class, r.seed)] == i for i, s in enumerate(shares) for r in s)  # setups not split
    cost = [sum(100 + 50 * r.normal_class for r in s) for s in shares]
    assert max(cost) / min(cost) < 1.3
    assert shares == [shard(runs, plan, Ranks(rank, 4)) for rank in range(4)]  # deterministic


def test_merge_rank_files_adds_each_run_once(tmp_path: Path) -> None:
    record = {"dataset": "d", "preset": "p", "preprocessing": "gcn", "scenario": "labeled", "level": 0.0, "normal_class": 0, "seed": 0, "method": "m", "nu": None, "auc": 0.9}
    other = {**record, "normal_class": 1}
    append_record(tmp_path / "results.jsonl", record)
    append_record(tmp_path / rank_file(0), record)  # a duplicate, e.g. after a stop mid-merge
    append_record(tmp_path / rank_file(1), other)
    assert merge_rank_files(tmp_path) == 1
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["normal_class"] for line in lines] == [0, 1]
    assert results_files(tmp_path) == [tmp_path / "results.jsonl"]
    assert merge_rank_files(tmp_path) == 0


@pytest.mark.slow
@pytest.mark.distributed
def test_scoring_on_two_ranks_equals_one_process(sample_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    ok(ssd("train", "-u", sample_dir / "normal", "--epochs", 2, "--pretrain-epochs", 2, "--out", model, "--device", "cpu"))
    ok(ssd("score", model, sample_dir / "incoming", sample_dir / "anomalies", "--output", tmp_path / "one.csv", "--top-k", 9, "--device", "cpu"))
    torchrun(2, "score", model, sample_dir / "incoming", sample_dir / "anomalies", "--output", tmp_path / "two.csv", "--top-k", 9, "--device", "cpu", cwd=tmp_path)
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    with open(tmp_path / "two.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 145


@pytest.mark.slow
@pytest.mark.distributed
def test_benchmark_on_two_ranks_equals_one_process_and_resumes_with_any_number(tmp_path: Path, data_root: Path) -> None:
    dataset = folder_dataset(tmp_path / "digits", data_root)
    common = ["--scenario", "labeled", "--levels", "0,5", "--epochs", 1, "--pretrain-epochs", 1, "--preset", "quick",
              "--device", "cpu", "--nus", "0.1", "--seeds", 1, "--methods", "one_class_dsvdd,one_class_ss_dsvdd"]  # fmt: skip
    ok(ssd("benchmark", dataset, "--out", tmp_path / "one", *common))
    torchrun(2, "benchmark", dataset, "--out", tmp_path / "two", *common, cwd=tmp_path)

    def aucs(folder: Path) -> dict:
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        assert len(records) == len({record_identity(r) for r in records})  # nothing twice
        return {(r["normal_class"], r["level"], r["method"]): r["auc"] for r in records}

    assert aucs(tmp_path / "two") == aucs(tmp_path / "one") and len(aucs(tmp_path / "one")) == 6
    assert not list((tmp_path / "two").glob("results.rank*"))  # merged by rank 0
    # resume with another number of ranks: a 3-rank run of more seeds does only the new runs
    torchrun(3, "benchmark", dataset, "--out", tmp_path / "two", *common[:-4], "--seeds", 2, "--methods", "one_class_dsvdd,one_class_ss_dsvdd", cwd=tmp_path)
    records = [json.loads(line) for line in (tmp_path / "two" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 12 and len({record_identity(r) for r in records}) == 12


@pytest.mark.slow
@pytest.mark.distributed
def test_one_step_on_ranks_together_equals_one_process() -> None:
    """The gradient of a mini-batch split over 2 and 3 ranks (batch norm synchronised, gradients
    summed) equals one process's, to float rounding; so do the batch-norm running statistics."""
    for n in (2, 3):
        result = torchrun_script(n, Path(__file__).with_name("dist_gradients.py"))
        assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr


def torchrun_script(n: int, script: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", str(script)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.distributed
def test_training_on_two_ranks_gives_the_one_process_model(sample_dir: Path, tmp_path: Path) -> None:
    """`torchrun ... ssd train` with 2 gloo processes: the same model as one process with the same
    global batch, up to float rounding (which Adam's first steps can turn into differences of
    about the learning rate on weights whose gradient is near zero), written once, by rank 0."""
    from safetensors.torch import load_file

    from ssd_cli.io.modelfile import load_model

    # no synthetic anomalies (ranks draw their own) and the paper's lr, which the tolerance assumes
    args = ["train", "-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies", "--epochs", 2, "--pretrain-epochs", 2, "--batch-size", 64, "--synthetic", "none", "--lr", "1e-4", "--device", "cpu"]
    ok(ssd(*args, "--out", tmp_path / "one.safetensors"))
    run = torchrun(2, *args, "--out", tmp_path / "two.safetensors", cwd=tmp_path)
    assert "Warning" not in run.stderr, run.stderr  # torch's deprecated all_reduce warned on every rank
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys()
    steps = 2 * 2 * 7  # (pretraining + training) x 2 epochs x 7 mini-batches
    for name in one:
        if one[name].is_floating_point():
            assert (one[name] - two[name]).abs().max().item() <= 3 * 1e-4 * steps, name
    a, b = load_model(tmp_path / "one.safetensors"), load_model(tmp_path / "two.safetensors")
    assert b.threshold == pytest.approx(a.threshold, rel=2e-3)
    assert (a.training["world_size"], b.training["world_size"]) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "two.safetensors"]


def test_synced_batch_norm_is_batch_norm_on_one_rank_and_warns_nothing(monkeypatch) -> None:
    """In a process group of one, the synced batch norm and its gradient are F.batch_norm's; and no
    FutureWarning (torch.distributed.nn.functional.all_reduce printed one per rank and call site)."""
    import warnings

    import torch.distributed as dist
    import torch.nn.functional as F

    from ssd_cli.core.distributed import synced_batch_norm

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        x = torch.randn(6, 3, 4, 4, dtype=torch.float64, requires_grad=True)
        bn = torch.nn.BatchNorm2d(3, affine=False).double()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = synced_batch_norm(bn, x)
            (grad,) = torch.autograd.grad((y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum(), x)
    finally:
        dist.destroy_process_group()
    x2 = x.detach().clone().requires_grad_(True)
    y2 = F.batch_norm(x2, None, None, training=True, eps=bn.eps)
    (grad2,) = torch.autograd.grad((y2 * torch.arange(y2.numel(), dtype=y2.dtype).view_as(y2)).sum(), x2)
    assert torch.allclose(y, y2) and torch.allclose(grad, grad2)
