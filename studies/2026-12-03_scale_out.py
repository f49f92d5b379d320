"""Scale-out figures for docs/scale-out.md: 1 vs 2 CPU processes under torchrun, and the peak memory
of training from memory vs from the disk cache as the number of images grows.

    .venv/bin/python studies/2026-12-03_scale_out.py --data-root ../shared/datasets --work /tmp/scale-out [--only speed|memory]

Run it alone: the figures are wall times and peak resident memory on this machine (the load average
is printed before and after). Every process runs with one thread (`ssd --threads 1`, OMP_NUM_THREADS=1),
so 2 processes use 2 cores.

speed   a. `ssd score` over 20,000 28x28 PNGs (MNIST train digits), 1 process vs `torchrun
           --nproc-per-node 2`; the two CSV files must be byte-identical.
        b. `ssd benchmark` on a folder dataset (4 MNIST digits as train/<class>/, test/<class>/, 600
           train and 200 test images each), quick preset with 30 + 30 epochs, 2 methods x 2 levels,
           1 vs 2 processes; the AUCs must be identical.
        The fixed cost of starting torchrun and its processes is measured on 100 files.
memory  `ssd train` (1 training epoch, no pretraining, lenet-64) on 10,000 and 100,000 64x64 grayscale
        PNGs, from memory and with --cache; peak RSS of the process (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SSD = [sys.executable, "-m", "ssd_cli", "--threads", "1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "ssd_cli", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def log(msg: str) -> None:
    print(msg, flush=True)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(command: list, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, command))}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def peak_rss_mb(command: list, cwd: Path) -> tuple[float, float]:
    """Wall time and peak resident memory (MB) of one child process, from GNU time."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *map(str, command)], cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, command))}\n{result.stderr[-2000:]}")
    kb = next(int(line.split(":")[1]) for line in result.stderr.splitlines() if "Maximum resident set size" in line)
    return seconds, kb / 1024


def mnist(data_root: Path, train: bool):
    sys.path.insert(0, str(REPO))
    from ssd_cli.data.datasets import load_builtin

    return load_builtin("mnist", data_root, train=train)


def write_pngs(images: np.ndarray, folder: Path, size: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        im = Image.fromarray(a)
        if size is not None:
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        im.save(folder / f"{i:06d}.png")


def speed(args: argparse.Namespace, out: dict) -> None:
    work = args.work
    train = mnist(args.data_root, True)
    digits = train.images[:, 0].numpy()
    score_dir = work / "score20k"
    if not score_dir.exists():
        log("writing 20,000 PNGs ...")
        write_pngs(digits[:20000], score_dir)
    model = work / "model.safetensors"
    if not model.exists():
        run([*SSD, "train", "-u", REPO / "sample_data" / "normal", "--epochs", 5, "--pretrain-epochs", 5, "--out", model, "--device", "cpu"], work)
    log(f"load before: {load()}")
    small = REPO / "sample_data" / "incoming"
    fixed1 = run([*SSD, "score", model, small, "--workers", 1, "--device", "cpu"], work)
    fixed2 = run([*TORCHRUN, "score", model, small, "--workers", 1, "--device", "cpu"], work)
    log(f"start-up (score 100 files): 1 process {fixed1:.1f} s, torchrun with 2 processes {fixed2:.1f} s")
    out["startup"] = {"one_process_s": round(fixed1, 1), "two_processes_s": round(fixed2, 1)}
    one = run([*SSD, "score", model, score_dir, "--output", work / "one.csv", "--workers", 1, "--device", "cpu", "--force"], work)
    two = run([*TORCHRUN, "score", model, score_dir, "--output", work / "two.csv", "--workers", 1, "--device", "cpu", "--force"], work)
    same = (work / "one.csv").read_bytes() == (work / "two.csv").read_bytes()
    log(f"score 20,000 PNGs: 1 process {one:.1f} s, 2 processes {two:.1f} s ({one / two:.2f}x); identical CSV: {same}")
    out["score"] = {"files": 20000, "one_process_s": round(one, 1), "two_processes_s": round(two, 1), "speedup": round(one / two, 2), "identical": same}

    dataset = work / "digits4"
    if not dataset.exists():
        test = mnist(args.data_root, False)
        for split, data, n in (("train", train, 600), ("test", test, 200)):
            for d in (0, 1, 7, 9):
                idx = np.flatnonzero(data.labels.numpy() == d)[:n]
                write_pngs(data.images[idx, 0].numpy(), dataset / split / f"digit{d}")
    common = ["benchmark", dataset, "--preset", "quick", "--epochs", 30, "--pretrain-epochs", 30, "--levels", "0,5",
              "--methods", "one_class_dsvdd,one_class_ss_dsvdd", "--nus", "0.1", "--device", "cpu"]  # fmt: skip
    for name in ("b1", "b2"):
        if (work / name).exists():
            for f in (work / name).iterdir():
                f.unlink()
    b1 = run([*SSD, *common, "--out", work / "b1"], work)
    b2 = run([*TORCHRUN, *common, "--out", work / "b2"], work)

    def aucs(folder: Path) -> dict:
        return {(r["normal_class"], r["level"], r["method"]): r["auc"] for r in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}

    same = aucs(work / "b1") == aucs(work / "b2")
    log(f"benchmark (4 classes, {len(aucs(work / 'b1'))} runs): 1 process {b1:.1f} s, 2 processes {b2:.1f} s ({b1 / b2:.2f}x); identical AUCs: {same}")
    out["benchmark"] = {"runs": len(aucs(work / "b1")), "one_process_s": round(b1, 1), "two_processes_s": round(b2, 1), "speedup": round(b1 / b2, 2), "identical": same}
    log(f"load after: {load()}")


def memory(args: argparse.Namespace, out: dict) -> None:
    work = args.work
    train = mnist(args.data_root, True)
    digits = train.images[:, 0].numpy()
    for n in (10_000, 100_000):
        folder = work / f"photos{n}"
        if not folder.exists():
            log(f"writing {n:,} 64x64 PNGs ...")
            reps = [digits[(np.arange(n) % len(digits))]]
            images = reps[0].copy()
            images[len(digits):] = images[len(digits):, :, ::-1]  # past 60,000: mirrored, so no file repeats
            write_pngs(images, folder, size=64)
    log(f"load before: {load()}")
    out["memory"] = []
    for cache in (False, True):
        for n in (10_000, 100_000):
            extra = ["--cache", work / "cache"] if cache else []
            command = [*SSD, "train", "-u", work / f"photos{n}", "--arch", "lenet-64", "--channels", 1, "--epochs", 1, "--pretrain-epochs", 0,
                       "--out", work / f"m{n}.safetensors", "--force", "--device", "cpu", *extra]  # fmt: skip
            seconds, peak = peak_rss_mb(command, work)
            log(f"train {n:>7,} images {'with --cache' if cache else 'from memory '}: peak RSS {peak:,.0f} MB, {seconds:.0f} s")
            out["memory"].append({"images": n, "cache": cache, "peak_rss_mb": round(peak), "seconds": round(seconds)})
    log(f"load after: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale-out"))
    parser.add_argument("--only", choices=("speed", "memory"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict = {"cores": os.cpu_count()}
    if args.only in (None, "speed"):
        speed(args, out)
    if args.only in (None, "memory"):
        memory(args, out)
    (args.work / "scale_out.json").write_text(json.dumps(out, indent=1))
    log(json.dumps(out))


if __name__ == "__main__":
    main()
