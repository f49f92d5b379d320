"""The benchmark's results store: results.jsonl, one JSON line per finished run, appended and
flushed before the next run starts, so a stopped benchmark resumes where it left off. Under
torchrun each rank appends to its own results.rankN.jsonl, merged into results.jsonl at the end.
A benchmark holds the folder's lock while it writes (`results_lock`)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ssd_cli import __version__
from ssd_cli.errors import OutputExistsError
from ssd_cli.experiments.data import BenchmarkData
from ssd_cli.experiments.protocol import TrainingSet
from ssd_cli.experiments.report import record_decoder
from ssd_cli.experiments.runs import Run
from ssd_cli.experiments.settings import BenchmarkSettings

RESULTS_FILE = "results.jsonl"
RANK_FILES = "results.rank*.jsonl"  # what each rank of a torchrun benchmark appends to


def rank_file(rank: int) -> str:
    return f"results.rank{rank}.jsonl"


def results_files(out_dir: Path) -> list[Path]:
    """results.jsonl and the per-rank files of a distributed run not merged yet (resume reads all)."""
    main = out_dir / RESULTS_FILE
    return ([main] if main.exists() else []) + sorted(out_dir.glob(RANK_FILES))


def run_record(data: BenchmarkData, run: Run, ts: TrainingSet, auc: float, seconds: float, s: BenchmarkSettings, device: torch.device, stacked: int) -> dict:
    """One finished run as results.jsonl holds it: what was run, on what, with which settings, and its test AUC."""
    return {
        "dataset": data.name,
        "data_source": data.source,
        "scenario": run.scenario.value,
        "level": run.level,
        "normal_class": run.normal_class,
        "known_classes": list(ts.known_classes) if run.method.uses_labels else [],
        "seed": run.seed,
        "method": run.method.value,
        "nu": run.nu,
        "auc": auc,
        "seconds": round(seconds, 3),
        "tool_version": __version__,
        "preset": s.label,
        "preprocessing": s.preprocessing.value,
        "network": data.spec.name,
        "decoder": data.spec.decoder,
        "n_unlabeled": len(ts.unlabeled_idx),
        "n_polluted": len(ts.polluted_idx),
        "n_labeled": len(ts.labeled_idx) if run.method.uses_labels else 0,
        "train_epochs": s.train.epochs,
        "pretrain_epochs": s.pretrain.epochs if run.method.is_deep_svdd else 0,
        "device": str(device),
        "stacked_runs": stacked,
    }


def record_identity(r: dict) -> tuple:
    """What makes a run the same run: dataset, network and settings (the pretraining decoder too) and
    the run's key. Records from before ssd 0.4 name no network (None)."""
    return (r["dataset"], r.get("network"), r["preset"], r["preprocessing"], record_decoder(r), r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"])


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
            record_identity(r)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a stop; that run is simply redone
        yield line, r


def completed_keys(out_dir: Path, data: BenchmarkData, settings: BenchmarkSettings) -> set[tuple]:
    """Keys of the runs the results files already hold for this dataset, network and settings (resume)."""
    done: set[tuple] = set()
    for path in results_files(out_dir):
        for _, r in _records(path):
            same_settings = r["preset"] == settings.label and r["preprocessing"] == settings.preprocessing.value
            same_network = r.get("network", data.spec.name) == data.spec.name and record_decoder(r) == data.spec.decoder
            if r["dataset"] == data.name and same_settings and same_network:
                done.add((r["scenario"], float(r["level"]), r["normal_class"], r["seed"], r["method"], r["nu"]))
    return done


def merge_rank_files(out_dir: Path) -> int:
    """Append the runs of the per-rank files that results.jsonl lacks, then remove those files;
    returns how many runs were added. Safe to repeat after a stop: a run is never added twice."""
    main = out_dir / RESULTS_FILE
    known = {record_identity(r) for _, r in _records(main)} if main.exists() else set()
    added = 0
    for path in sorted(out_dir.glob(RANK_FILES)):
        for _, r in _records(path):
            if record_identity(r) not in known:
                append_record(main, r)
                known.add(record_identity(r))
                added += 1
        path.unlink()
    return added


def append_record(path: Path, record: dict) -> None:
    """One line per finished run, flushed to disk before the next run starts.

    A line cut short by an earlier stop is closed first, so it cannot swallow this record.
    """
    cut = path.exists() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if cut else "") + json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


LOCK_FILE = ".ssd-benchmark.lock"


@contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the results folder, held while this process writes to it. It is an
    flock, which the system drops when the process ends however it ends, so a lock left by a dead
    process never blocks the next run; the file only says who holds it."""
    path = out / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OutputExistsError(f"another ssd benchmark ({holder}) is writing to '{out}'; wait for it to finish, or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
