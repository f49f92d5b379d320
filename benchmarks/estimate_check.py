"""Check `ssd benchmark`'s printed estimate against the runs docs/benchmark.md records, without running them.

For each recorded plan this builds the same plan through the engine (plan_benchmark, an empty --out,
the recorded threads), prints the estimate the command would print for it, and sets it beside the
recorded wall time and the sum of the recorded per-run seconds (docs/results/*/results.jsonl).
The estimate times a few training steps here, so run it on a quiet machine with the recorded
threads; the recorded runs shared their machine at times too (docs/benchmark.md says when).

    .venv/bin/python benchmarks/estimate_check.py --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ssd_cli.experiments.benchmark_plan import BenchmarkRequest, plan_benchmark, wall_seconds  # noqa: E402


@dataclass(frozen=True)
class Recorded:
    """One measured plan of docs/benchmark.md: how it ran and how long it took."""

    name: str
    request: dict
    threads: int
    ranks: int
    wall_s: float
    results: str | None  # docs/results folder with its per-run seconds
    done_before: int = 0  # the plan's first runs, finished before the recorded wall time started
    saved_autoencoders: bool = False  # every pretraining was read back from the run folder


RECORDED = (
    Recorded("MNIST paper (i), 50 runs", dict(dataset="mnist", levels=(0.0, 5.0, 20.0), methods=("one_class_dsvdd", "one_class_ss_dsvdd", "supervised"), seeds=1),
             threads=1, ranks=2, wall_s=6580, results="mnist-paper-i"),  # 1 h 49 min 40 s
    Recorded("Fashion-MNIST paper (i), the last 18 runs (20%)", dict(dataset="fashion-mnist", levels=(20.0,), methods=("one_class_ss_dsvdd", "supervised"), seeds=1),
             threads=1, ranks=2, wall_s=2916, results="fashion-mnist-paper-i", done_before=2, saved_autoencoders=True),  # 48 min 36 s
    Recorded("MNIST quick (i), 190 runs", dict(dataset="mnist", preset="quick"), threads=2, ranks=1, wall_s=713, results=None),  # 11 min 53 s
)  # fmt: skip


def check(rec: Recorded, data_root: Path) -> dict:
    """The estimate the command prints for this plan here, beside what was recorded."""
    torch.set_num_threads(rec.threads)
    with tempfile.TemporaryDirectory() as out:
        plan = plan_benchmark(BenchmarkRequest(out=Path(out), data_root=data_root, device="cpu", **rec.request))
    todo = plan.todo[rec.done_before :]
    settings = plan.settings  # autoencoders read back cost nothing: as if pretraining had no epochs
    if rec.saved_autoencoders:
        settings = replace(settings, pretrain=replace(settings.pretrain, epochs=0))
    per_run = None
    if rec.results:
        keys = {r.key() for r in todo}
        records = [json.loads(line) for line in (REPO / "docs" / "results" / rec.results / "results.jsonl").read_text().splitlines()]
        per_run = sum(r["seconds"] for r in records if (r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"]) in keys)
    serial = wall_seconds(todo, plan.data, settings, plan.device, plan.cost, (), 1)
    ranked = wall_seconds(todo, plan.data, settings, plan.device, plan.cost, (), rec.ranks)
    return {"plan": rec.name, "runs": len(todo), "threads": rec.threads, "ranks": rec.ranks, "recorded_wall_s": rec.wall_s, "recorded_per_run_sum_s": per_run,
            "estimate_one_process_s": serial, "estimate_s": ranked, "estimate_over_wall": ranked / rec.wall_s,
            "encoder_us": plan.cost.encoder * 1e6, "autoencoder_us": plan.cost.autoencoder * 1e6}  # fmt: skip


def steady_cost(name: str, threads: int, n: int = 1000, epochs: int = 3) -> tuple[float, float, float, float]:
    """(step_cost phi, AE; training's own phi, AE) in seconds per image and epoch, here: the
    estimate's few timed steps against the median epoch of real training at the preset's batch."""
    import statistics

    from ssd_cli.core.config import TrainConfig
    from ssd_cli.core.estimate import step_cost
    from ssd_cli.core.nets import get_spec
    from ssd_cli.core.pipeline import initial_encoder, pretrain
    from ssd_cli.core.presets import schedule_for
    from ssd_cli.core.training import train_deep_svdd

    torch.set_num_threads(threads)
    spec, schedule, cpu = get_spec(name), schedule_for(name), torch.device("cpu")
    cost = step_cost(spec, cpu, schedule.train.batch_size)
    x = torch.rand(n, spec.channels, spec.image_size, spec.image_size).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(n, dtype=torch.int8)
    phi: list[float] = []
    ae: list[float] = []
    train_deep_svdd(initial_encoder(spec, None, 0, cpu), x, y, TrainConfig(optim=replace(schedule.train, epochs=epochs)), seed=0, on_epoch=lambda i: phi.append(i.seconds))
    pretrain(spec, x, replace(schedule.pretrain, epochs=epochs), seed=0, on_epoch=lambda i: ae.append(i.seconds))
    return cost.encoder, cost.autoencoder, statistics.median(phi[1:]) / n, statistics.median(ae[1:]) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("SSD_DATA_ROOT") or REPO.parent / "shared" / "datasets"))
    p.add_argument("--steps-only", action="store_true", help="only the second table: the estimate's step cost against real training here")
    args = p.parse_args()
    print("| network (1 thread) | step cost phi | training phi | ratio | step cost AE | training AE | ratio |  (us per image and epoch)")
    print("|---|---|---|---|---|---|---|")
    for name in ("mnist", "fashion-mnist", "cifar10"):
        est_phi, est_ae, phi, ae = (v * 1e6 for v in steady_cost(name, 1))
        print(f"| {name} | {est_phi:.0f} | {phi:.0f} | {est_phi / phi:.2f} | {est_ae:.0f} | {ae:.0f} | {est_ae / ae:.2f} |", flush=True)
    if args.steps_only:
        return
    print()
    print("| plan | threads x ranks | recorded wall | recorded per-run sum | estimate (one process) | estimate (the ranks) | estimate / wall | step cost phi, AE (us/image) |")
    print("|---|---|---|---|---|---|---|---|")
    for rec in RECORDED:
        r = check(rec, args.data_root)
        per_run = f"{r['recorded_per_run_sum_s']:,.0f} s" if r["recorded_per_run_sum_s"] else "—"
        print(f"| {r['plan']} | {r['threads']} x {r['ranks']} | {r['recorded_wall_s']:,.0f} s | {per_run} | {r['estimate_one_process_s']:,.0f} s | "
              f"{r['estimate_s']:,.0f} s | {r['estimate_over_wall']:.2f} | {r['encoder_us']:.0f}, {r['autoencoder_us']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
