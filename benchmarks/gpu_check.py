"""One GPU check, for the session that is lent a GPU: everything the docs lack a GPU figure for, in one run.

A GPU is lent to few sessions, by chance, for about 15 minutes start-up included, so this script is
prepared in advance and run once, inside a wall-time budget (default 420 s; every part checks the
time left and stops cleanly). It prints one markdown report and writes it, with the raw numbers as
JSON, under --out:

1. the machine: device name, torch / CUDA / cuDNN versions, TF32 settings;
2. CUDA against CPU: sample_data/ trained with the same seed on both devices through the public
   API (ssd_cli.api.Detector), the scores compared (largest absolute and relative difference, and
   the relative tolerance that holds), and a second CUDA run against the first (is CUDA repeatable?);
3. training throughput (images/s) of every registered network, with its preset's settings (batch
   200, Adam): one run, and K runs stacked as `ssd benchmark` stacks them (ssd_cli/core/stacked.py);
4. the CIFAR-10 paper preset, scenario (i), one seed, levels 0% and 5%, stacked, one normal class
   after the other in a fixed order, for as long as the budget lasts, through `ssd benchmark`
   itself, into OUT/cifar10; --cifar-from an earlier run's folder copies it there first, so the
   benchmark resumes where the budget stopped it. Each cell is printed beside the paper's figure.

--tiny runs the same code paths on the CPU in seconds (tiny epochs and data, two classes of
sample_data as the benchmark's dataset); tests/test_gpu_check.py runs it.

On a lent machine (docs/performance.md, "GPU check"): copy ../shared/datasets/cifar10-jpeg into a
git-ignored folder of the checkout (55 MiB), name it in `carry`, and run
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --data-root .gpucheck --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the device machine's python3 has torch but not this package installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ssd_cli import __version__  # noqa: E402
from ssd_cli.api import Detector  # noqa: E402
from ssd_cli.core.config import TrainConfig  # noqa: E402
from ssd_cli.core.nets import AutoEncoder, architectures, get_spec  # noqa: E402
from ssd_cli.core.pipeline import initial_encoder, pretrain  # noqa: E402
from ssd_cli.core.presets import schedule_for  # noqa: E402
from ssd_cli.core.stacked import pretrain_autoencoders_stacked, train_deep_svdd_stacked  # noqa: E402
from ssd_cli.core.training import seeded_init, train_deep_svdd  # noqa: E402
from ssd_cli.data.datasets import CIFAR10_JPEG_FOLDER, cifar10_source, get_builtin  # noqa: E402
from ssd_cli.experiments.protocol import Scenario  # noqa: E402
from ssd_cli.experiments.report import read_results, summarize  # noqa: E402
from ssd_cli.metrics import auroc  # noqa: E402

SAMPLE = REPO / "sample_data"
# Classes 1 (automobile) and 8 (ship) first: the ones issue 22 also runs on the CPU, so the two devices
# can be set side by side; then the rest in label order.
CIFAR_ORDER = (1, 8, 0, 2, 3, 4, 5, 6, 7, 9)
LEVELS = "0,5"
STACKS = (3, 30)  # runs `ssd benchmark` trains at once: one seed (3 runs of a setup), ten seeds (30)
RTOLS = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
RESERVE_S = 8.0  # kept back for writing the report
PARITY_SHARE, THROUGHPUT_SHARE = 0.15, 0.50  # parts 2 and 3 end by these fractions of the budget


@dataclass(frozen=True)
class Config:
    """What one run does; --tiny shrinks the sizes, never the code path."""

    device: torch.device
    tiny: bool
    budget: float
    data_root: Path
    out: Path
    cifar_out: Path
    cifar_from: Path | None  # an earlier run's benchmark folder to resume from
    parity_epochs: int
    classes: tuple[int, ...]
    threads: int | None
    batch: int | None  # None: each network's preset batch (200)
    steps: int  # mini-batches per epoch in the throughput part
    epochs: int  # epochs per throughput measurement; the first is a warm-up, left out
    stacks: tuple[int, ...]


@dataclass
class Clock:
    """The wall-time budget every part checks before starting more work."""

    budget: float
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self, share: float | None = None) -> float:
        """Seconds until `share` of the budget is used; by default until the end, less the report's reserve."""
        end = self.budget - RESERVE_S if share is None else share * self.budget
        return end - self.elapsed()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------- machine


def part_machine(cfg: Config, clock: Clock) -> dict[str, Any]:
    """What ran: the numbers below mean little without the device, the versions and TF32."""
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {
        "device": str(cfg.device),
        "device_name": torch.cuda.get_device_name(cfg.device) if cfg.device.type == "cuda" else cpu,
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "python": platform.python_version(),
        "ssd": __version__,
        "commit": _git_commit(),
        "data_root": str(cfg.data_root),
        "cifar10_source": cifar10_source(cfg.data_root),
    }
    if cfg.device.type == "cuda":
        props = torch.cuda.get_device_properties(cfg.device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["capability"] = f"{props.major}.{props.minor}"
    return info


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------- parity


def _sample_inputs(tiny: bool) -> tuple[list[Path], list[Path], list[Path], np.ndarray]:
    """sample_data's normal, anomalies and incoming images with the truth of incoming (True = anomaly)."""
    normal = sorted((SAMPLE / "normal").glob("*.png"))
    anomalies = sorted((SAMPLE / "anomalies").glob("*.png"))
    rows = [line.split(",") for line in (SAMPLE / "incoming_labels.csv").read_text().splitlines()[1:] if line]
    labelled = [(SAMPLE / path, label.strip() == "anomaly") for path, label in rows]
    if tiny:
        normal, anomalies = normal[:16], anomalies[:4]
        labelled = [r for r in labelled if not r[1]][:5] + [r for r in labelled if r[1]][:5]
    return normal, anomalies, [p for p, _ in labelled], np.array([a for _, a in labelled])


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Largest absolute and relative difference of two score vectors and the smallest rtol of RTOLS that holds."""
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    max_rel = float(rel.max()) if len(rel) else 0.0
    holds = next((t for t in RTOLS if max_rel <= t), None)
    return {"max_abs_diff": float(diff.max()) if len(diff) else 0.0, "max_rel_diff": max_rel, "rtol_holds": holds}


def part_parity(cfg: Config, clock: Clock) -> dict[str, Any]:
    """CUDA is not bit-exact (other kernels, TF32 convolutions, atomics): measure how far its
    scores are from the CPU's on the same data and seed, and from a second CUDA run."""
    normal, anomalies, incoming, truth = _sample_inputs(cfg.tiny)
    runs: dict[str, dict[str, Any]] = {}
    scores: dict[str, np.ndarray] = {}
    for name, device in (("cpu", "cpu"), ("device", str(cfg.device)), ("device_again", str(cfg.device))):
        done = [r["seconds"] for r in runs.values() if "seconds" in r]
        if clock.left(PARITY_SHARE) <= (2 * max(done) if done else 0.0):  # a fit cannot be stopped halfway
            runs[name] = {"skipped": "out of time"}
            continue
        start = time.perf_counter()
        det = Detector(device=device, epochs=cfg.parity_epochs, pretrain_epochs=cfg.parity_epochs, seed=0).fit(normal, anomalies=anomalies)
        result = det.score(incoming)
        seconds = time.perf_counter() - start
        scores[name] = result.scores
        runs[name] = {"device": device, "seconds": round(seconds, 2), "auc": auroc(result.scores, truth), "threshold": det.threshold_, "flagged": int(result.anomalous.sum())}
        log(f"  parity: {name} ({device}) AUC {runs[name]['auc']:.4f} in {seconds:.1f} s")
    out: dict[str, Any] = {
        "epochs": cfg.parity_epochs, "n_normal": len(normal), "n_anomalies": len(anomalies), "n_scored": len(incoming), "runs": runs,
    }  # fmt: skip
    for key, (a, b) in (("device_vs_cpu", ("device", "cpu")), ("device_vs_device", ("device_again", "device"))):
        if a in scores and b in scores:
            out[key] = compare(scores[a], scores[b])
    return out


# ------------------------------------------------------------------------------------ throughput


def measure(spec_name: str, phase: str, k: int, cfg: Config) -> dict[str, Any]:
    """Images/s of one phase with the network's preset optimiser, k runs at once (k = 1: the
    single-run path), on random inputs; the median of the epochs after the first (warm-up)."""
    spec = get_spec(spec_name)
    schedule = schedule_for(spec_name)
    base = schedule.pretrain if phase == "autoencoder" else schedule.train
    batch = cfg.batch or base.batch_size
    optim = replace(base, epochs=cfg.epochs, lr_milestones=(), batch_size=batch)
    n, device = batch * cfg.steps, cfg.device
    x = torch.rand(n, spec.channels, spec.image_size, spec.image_size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(n, dtype=torch.int8, device=device)
    seconds: list[float] = []
    record = lambda info: seconds.append((info[0] if isinstance(info, list) else info).seconds)  # noqa: E731
    seeds = list(range(k))
    if phase == "autoencoder" and k == 1:
        pretrain(spec, x, optim, seed=0, on_epoch=record)
    elif phase == "autoencoder":
        aes = [seeded_init(lambda: AutoEncoder(spec), s).to(device) for s in seeds]
        pretrain_autoencoders_stacked(aes, x, optim, seeds, on_epoch=record)
    elif k == 1:
        train_deep_svdd(initial_encoder(spec, None, 0, device), x, y, TrainConfig(optim=optim), seed=0, on_epoch=record)
    else:
        encoders = [initial_encoder(spec, None, s, device) for s in seeds]
        train_deep_svdd_stacked(encoders, x, y, [TrainConfig(optim=optim)] * k, seeds, on_epoch=record)
    _sync(device)
    epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    return {"k": k, "images_per_s": k * n / epoch, "epoch_s": epoch, "n": n, "batch": batch, "epochs_timed": max(1, len(seconds) - 1)}


def part_throughput(cfg: Config, clock: Clock) -> dict[str, Any]:
    """Training speed per registered network and phase, alone and stacked: what a GPU gains from
    stacking the paper's small networks is the open question of docs/benchmark.md ("GPU")."""
    rows: list[dict[str, Any]] = []
    for name in _paper_first(architectures()):
        spec = get_spec(name)
        for phase in ("autoencoder", "deep_svdd"):
            row: dict[str, Any] = {"network": name, "input": f"{spec.channels}x{spec.image_size}x{spec.image_size}", "phase": phase, "runs": []}
            rows.append(row)
            last: dict[str, Any] | None = None
            for k in (1, *cfg.stacks):
                # Stacking is expected to cost at most linearly more than the largest stack measured
                # (plus half again for building K networks and finding their centers).
                need = 1.5 * cfg.epochs * last["epoch_s"] * k / last["k"] if last else 1.0
                if clock.left(THROUGHPUT_SHARE) < need:
                    row["runs"].append({"k": k, "skipped": f"out of time (needs about {need:.0f} s)"})
                    continue
                try:
                    last = measure(name, phase, k, cfg)
                    row["runs"].append(last)
                    log(f"  throughput: {name} {phase} K={k}: {last['images_per_s']:,.0f} img/s")
                except torch.cuda.OutOfMemoryError:
                    row["runs"].append({"k": k, "skipped": "out of GPU memory"})
                if cfg.device.type == "cuda":
                    torch.cuda.empty_cache()  # the benchmark's own processes need the memory after this part
    return {"settings": "each network's preset optimiser (batch 200 unless --batch); random inputs; one data tensor shared by the stacked runs", "rows": rows}


def _paper_first(names: list[str]) -> list[str]:
    """The paper's networks first (the benchmark's), then the others by input size."""
    paper = ("mnist", "fashion-mnist", "cifar10")
    return [n for n in paper if n in names] + sorted((n for n in names if n not in paper), key=lambda n: get_spec(n).image_size)


# ---------------------------------------------------------------------------------------- CIFAR-10


def _tiny_dataset(folder: Path) -> Path:
    """sample_data as a two-class `ssd benchmark` folder (train/<class>/, test/<class>/), a handful each."""
    root = folder / "tiny-digits"
    _, _, incoming, truth = _sample_inputs(tiny=True)
    parts = {
        ("train", "0-zero"): sorted((SAMPLE / "normal").glob("*.png"))[:12], ("train", "1-other"): sorted((SAMPLE / "anomalies").glob("*.png"))[:12],
        ("test", "0-zero"): [p for p, a in zip(incoming, truth) if not a], ("test", "1-other"): [p for p, a in zip(incoming, truth) if a],
    }  # fmt: skip
    for (split, name), files in parts.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, root / split / name / f.name)
    return root


def part_cifar(cfg: Config, clock: Clock) -> dict[str, Any]:
    """`ssd benchmark cifar10` (paper preset, scenario (i), one seed, 0% and 5%, stacked), one normal
    class per call so that each class gets both levels; a call still running when the budget ends is
    stopped, and a later run given this folder (--cifar-from) resumes it (results.jsonl, autoencoders/)."""
    if cfg.cifar_from is not None:
        shutil.copytree(cfg.cifar_from, cfg.cifar_out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        if cfg.tiny:
            dataset, extra = str(_tiny_dataset(Path(tmp))), ["--epochs", "1", "--pretrain-epochs", "1"]
        elif cifar10_source(cfg.data_root) == "missing":
            return {"skipped": f"no CIFAR-10 under {cfg.data_root} (expected {CIFAR10_JPEG_FOLDER}/ or cifar-10-batches-py/)"}
        else:
            dataset, extra = "cifar10", ["--data-root", str(cfg.data_root)]
        results = cfg.cifar_out / "results.jsonl"
        before = len(read_results(results).records) if results.exists() else 0
        calls = [_benchmark_class(dataset, c, extra, cfg, clock) for c in cfg.classes]
    records = read_results(results).records if results.exists() else []
    return {
        "dataset": dataset if not cfg.tiny else "tiny-digits (--tiny: two classes of sample_data stand in for CIFAR-10, 1 + 1 epochs)",
        "out": str(cfg.cifar_out),
        "runs_before": before,
        "runs_now": len(records),
        "calls": calls,
        "records": records,
        "cells": _cells(records),
    }


def _benchmark_class(dataset: str, c: int, extra: list[str], cfg: Config, clock: Clock) -> dict[str, Any]:
    """One `ssd benchmark` call for normal class c, stopped when the budget runs out."""
    left = clock.left()
    if left < (1.0 if cfg.tiny else 20.0):
        return {"class": c, "status": "not started: out of time"}
    threads = ["--threads", str(cfg.threads)] if cfg.threads else []
    cmd = [sys.executable, "-m", "ssd_cli", *threads, "benchmark", dataset, "--scenario", "labeled", "--levels", LEVELS,
           "--classes", str(c), "--seeds", "1", "--preset", "paper", "--stack", "on", "--device", str(cfg.device),
           "--yes", "--out", str(cfg.cifar_out), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "COLUMNS": "200"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=left)
        status = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.terminate()  # each finished run is already in results.jsonl; the rest is redone on resume
        try:
            output, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        status = "stopped at the time budget (a run with --cifar-from this folder resumes it)"
    seconds = time.perf_counter() - start
    plan = re.search(r"plan: (\d+ runs, \d+ already in .*?, \d+ to do); estimated (.+?) here", " ".join((output or "").split()))
    log(f"  cifar: class {c}: {status} in {seconds:.0f} s")
    return {
        "class": c, "status": status, "seconds": round(seconds, 1), "plan": plan.group(1) if plan else None, "cli_estimate": plan.group(2) if plan else None,
        "command": " ".join(cmd[1:]), "output_tail": (output or "")[-1500:],
    }  # fmt: skip


def _cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scenario (i) cells at our levels, each with the paper's figure (the report code's own summary)."""
    out = []
    for table in summarize(records).tables if records else []:
        if table.scenario is not Scenario.LABELED:
            continue
        for (level, method), cell in sorted(table.cells.items(), key=lambda kv: (kv[0][0], table.methods.index(kv[0][1]))):
            if level in (0.0, 5.0):
                out.append({
                    "table": table.title, "level": level, "method": method.display_name, "n": cell.n, "auc": cell.mean, "std": cell.std,
                    "nu": cell.nu, "paper": cell.paper_mean, "paper_std": cell.paper_std, "diff": cell.diff, "repeats_unsupervised": cell.filled_from is not None,
                })  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------- report


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows), ""]


def render(cfg: Config, parts: dict[str, dict[str, Any]]) -> str:
    """The markdown report: every figure with what it was measured on."""
    m = parts["machine"].get("result", {})
    lines = [
        "# ssd GPU check", "",
        f"- Device: **{m.get('device_name')}** ({cfg.device}{', ' + str(m.get('gpu_memory_gib')) + ' GiB' if 'gpu_memory_gib' in m else ''}); "
        f"CPU: {m.get('cpu')}, {m.get('cpu_cores')} cores, {m.get('torch_threads')} torch threads.",
        f"- torch {m.get('torch')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}; TF32 convolutions {m.get('tf32_conv')}, TF32 matmul "
        f"{m.get('tf32_matmul')}; Python {m.get('python')}; ssd {m.get('ssd')} (commit {m.get('commit')}).",
        f"- Mode: {'--tiny (CPU, tiny sizes: a test of the code paths, not a measurement)' if cfg.tiny else 'full'}; budget {cfg.budget:.0f} s; "
        f"data root {cfg.data_root} (CIFAR-10: {m.get('cifar10_source')}"
        f"{', the JPEG copy cifar10-jpeg/: not the official bytes, AUCs close to, not identical with, the official data' if m.get('cifar10_source') == 'jpeg' else ''}).",
        "",
    ]  # fmt: skip
    lines += _table(["part", "status", "wall s"], [[name, p["status"], f"{p['seconds']:.1f}"] for name, p in parts.items()])
    for name, md in (("parity", _parity_md), ("throughput", _throughput_md), ("cifar10", _cifar_md)):
        part = parts[name]
        lines += md(part["result"]) if part["status"] == "ok" else [f"## {name}: failed", "", "```", part["result"]["traceback"].strip(), "```", ""]
    return "\n".join(lines)


def _parity_md(r: dict[str, Any]) -> list[str]:
    lines = [f"## CUDA against CPU (sample_data, {r['epochs']} + {r['epochs']} epochs, seed 0)", "",
             f"{r['n_normal']} normal and {r['n_anomalies']} labeled anomalous images, {r['n_scored']} scored (Detector.fit, Detector.score).", ""]  # fmt: skip
    rows = [[name, run.get("device", "—"), _num(run.get("auc"), ".4f"), _num(run.get("threshold"), ".5g"), str(run.get("flagged", "—")), _num(run.get("seconds"), ".1f") if "seconds" in run else run.get("skipped", "")]
            for name, run in r["runs"].items()]  # fmt: skip
    lines += _table(["run", "device", "AUC", "threshold", "flagged", "seconds"], rows)
    for key, what in (("device_vs_cpu", "device against CPU"), ("device_vs_device", "device against itself (second run)")):
        if key in r:
            c = r[key]
            lines.append(f"- {what}: largest |difference| {c['max_abs_diff']:.3g}, largest relative {c['max_rel_diff']:.3g}; rtol that holds: {c['rtol_holds']}")
    return [*lines, ""]


def _throughput_md(r: dict[str, Any]) -> list[str]:
    ks = sorted({run["k"] for row in r["rows"] for run in row["runs"]})
    lines = ["## Training throughput (images/s; stacked: all K runs together, and x the single run)", "", r["settings"] + ".", ""]
    rows = []
    for row in r["rows"]:
        runs = {run["k"]: run for run in row["runs"]}
        single = runs.get(1, {}).get("images_per_s")
        cells = []
        for k in ks:
            run = runs.get(k, {})
            ips = run.get("images_per_s")
            cells.append(run.get("skipped", "—") if ips is None else f"{ips:,.0f}" + (f" ({ips / single:.1f}x)" if k > 1 and single else ""))
        rows.append([row["network"], row["input"], row["phase"], *cells])
    return lines + _table(["network", "input", "phase", *(f"K={k}" for k in ks)], rows)


def _cifar_md(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["## CIFAR-10, paper preset, scenario (i)", "", r["skipped"], ""]
    names = get_builtin("cifar10").classes if r["dataset"] == "cifar10" else None
    lines = ["## CIFAR-10, paper preset, scenario (i): one seed, 0% and 5%, stacked", "",
             f"Dataset {r['dataset']}; results in `{r['out']}` ({r['runs_before']} runs there before this call, {r['runs_now']} now); "
             "each call: `ssd benchmark` for one normal class.", ""]  # fmt: skip
    rows = [[str(c["class"]) + (f" ({names[c['class']]})" if names else ""), c["status"], _num(c.get("seconds"), ".0f"), c.get("plan") or "—", c.get("cli_estimate") or "—"]
            for c in r["calls"]]  # fmt: skip
    lines += _table(["normal class", "status", "wall s", "the plan", "its estimate"], rows)
    cells = [[_num(c["level"], "g") + "%", c["method"] + (" †" if c["repeats_unsupervised"] else ""), str(c["n"]),
              "—" if c["auc"] is None else f"{c['auc']:.1f}±{c['std']:.1f}" + (f" (nu {c['nu']:g})" if c["nu"] else ""),
              "—" if c["paper"] is None else f"{c['paper']:.1f}±{c['paper_std']:.1f}", _num(c["diff"], "+.1f")] for c in r["cells"]]  # fmt: skip
    if not r["records"]:
        return [*lines, "No run has finished yet.", ""]
    lines += ["AUC % over the classes done (one seed each) beside the paper's Table 1 (10 classes x 10 seeds); † = the SS method without labels, the same runs:", ""]
    lines += _table(["level", "method", "classes", "ours", "paper", "ours − paper"], cells)
    per_class = [[str(x["normal_class"]), _num(x["level"], "g") + "%", x["method"], _num(x["nu"], "g") if x["nu"] else "", f"{100 * x['auc']:.2f}", _num(x["seconds"], ".1f"), str(x.get("stacked_runs"))]
                 for x in r["records"]]  # fmt: skip
    return lines + _table(["class", "level", "method", "nu", "AUC %", "s per run", "stacked"], per_class)


# ------------------------------------------------------------------------------------------- main

PARTS: tuple[tuple[str, Callable[[Config, Clock], dict[str, Any]]], ...] = (
    ("machine", part_machine), ("parity", part_parity), ("throughput", part_throughput), ("cifar10", part_cifar),
)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.md, gpu_check.json and the benchmark's folder")
    p.add_argument("--budget", type=float, default=420.0, help="wall-time budget in seconds that every part respects (default 420)")
    p.add_argument("--tiny", action="store_true", help="the same code paths on the CPU in seconds, for CI")
    p.add_argument("--device", default=None, help="cuda (default), cuda:N or cpu; --tiny: cpu")
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("SSD_DATA_ROOT") or REPO.parent / "shared" / "datasets"),
                   help="folder with cifar10-jpeg/ (or cifar-10-batches-py/); default $SSD_DATA_ROOT, else ../shared/datasets")  # fmt: skip
    p.add_argument("--cifar-from", type=Path, default=None, help="an earlier run's benchmark folder (OUT/cifar10), copied into this one's to resume from it")
    p.add_argument("--classes", default=",".join(map(str, CIFAR_ORDER)), help="normal classes, in the order they are run")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; --tiny: 1)")
    return p.parse_args(argv)


def make_config(a: argparse.Namespace) -> Config:
    device = torch.device(a.device or ("cpu" if a.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; --tiny runs the same code paths on the CPU, --device cpu a full CPU run")
    threads = a.threads or (1 if a.tiny else None)
    classes = tuple(int(c) for c in a.classes.split(",") if c.strip())
    sizes = dict(parity_epochs=2, batch=4, steps=2, epochs=2, stacks=(2,), classes=classes[:2] if a.tiny else classes)
    if not a.tiny:
        sizes = dict(parity_epochs=10, batch=None, steps=10, epochs=4, stacks=STACKS, classes=classes)
    if a.tiny and set(sizes["classes"]) - {0, 1}:
        sizes["classes"] = (0, 1)  # the tiny dataset has two classes
    out = a.out.resolve()  # the benchmark runs in a subprocess from the repository root
    return Config(device=device, tiny=a.tiny, budget=a.budget, data_root=a.data_root.resolve(), out=out, cifar_out=out / "cifar10",
                  cifar_from=a.cifar_from.resolve() if a.cifar_from else None, threads=threads, **sizes)  # fmt: skip


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every part in turn, each timed; a part that fails is reported, and the others still run."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    clock = Clock(cfg.budget)
    parts: dict[str, dict[str, Any]] = {}
    for name, fn in PARTS:
        log(f"{name} ({clock.elapsed():.0f} s of {cfg.budget:.0f} s used)")
        start = time.perf_counter()
        try:
            result, status = fn(cfg, clock), "ok"
        except Exception as exc:  # the report must still be written: it is the only output of a lent GPU
            result, status = {"error": "".join(traceback.format_exception_only(exc)).strip(), "traceback": traceback.format_exc()}, "failed"
            log(traceback.format_exc())
        parts[name] = {"status": status, "seconds": round(time.perf_counter() - start, 2), "result": result}
    parts["total"] = {"status": "ok", "seconds": round(clock.elapsed(), 2), "result": {}}
    return parts


def main(argv: list[str] | None = None) -> int:
    cfg = make_config(parse_args(argv))
    parts = run(cfg)
    report = render(cfg, parts)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "gpu_check.md").write_text(report + "\n", encoding="utf-8")
    (cfg.out / "gpu_check.json").write_text(json.dumps({"config": {k: str(v) for k, v in cfg.__dict__.items()}, "parts": parts}, indent=1, default=str) + "\n", encoding="utf-8")
    print(report, flush=True)
    return 0 if all(p["status"] == "ok" for p in parts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
