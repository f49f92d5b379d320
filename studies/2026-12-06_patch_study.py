"""Patch-level against whole-image SS-DSVDD on the surface-defects set (small local defects on 128 px photos).

    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets
    .venv/bin/python studies/2026-12-06_patch_study.py --sets /work/runs/photo-sets --out /work/runs/patch_study.md \\
        --runs whole p32-s16-k4 p64-s32-k4 [--pretrain-epochs 20 --epochs 20] [--seeds 0]

Every run is one-class SS-DSVDD (objective (4), eta = 1) on surface-defects/: train/normal/ (500 crops,
128x128 grayscale) unlabeled plus the 20 labeled anomalies of train/bad/, preprocessing `scale`, scored on
test/normal/ (100) and test/anomalous/ (100). Schedules: autoencoder Adam lr 1e-4, weight decay 0.5e-3;
SS-DSVDD Adam lr 1e-4, weight decay 1e-6; each with a 10x lr drop two thirds in; batch 200.

Run names (`--runs`), each optionally followed by `:P:T` to override the pretraining/training epochs:
  whole           lenet-128 on the whole image (pipeline.pretrain + pipeline.train_model + Scorer).
  p{P}-s{S}-k{K}  ssd_cli.core.patches: P px patches (32: the cifar10 net at 1 channel, 64: lenet-64), scoring grid
                  stride S, K random crops per image per epoch; score = max over the patch map.

Reported: AUROC / AUPRC (sklearn, via ssd_cli.metrics), AUROC per defect kind, seconds of pretraining +
training (c included) and of scoring the 200 test images, os.getloadavg() (the machine is shared), and for
patch runs the share of test anomalies whose worst patch contains the defect's centre (manifest.json). Rows
are appended to --out as runs finish, raw records to --out with .jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core import patches as P
from ssd_cli.core import pipeline, training
from ssd_cli.core.config import PAPER_PRETRAIN_GRAYSCALE, OptimConfig, Preprocessing, TrainConfig
from ssd_cli.core.scoring import Scorer
from ssd_cli.data.images import load_folder
from ssd_cli.metrics import auroc, compute_metrics
from ssd_cli.core.nets import AutoEncoder, get_spec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.views import PatchView

SET = "surface-defects"
SIDE = 128
PATCH_NETS = {32: "cifar10", 64: "lenet-64"}


def schedule(epochs: int, weight_decay: float, drop: float, lr: float) -> OptimConfig:
    milestone = max(1, round(epochs * drop))
    return OptimConfig(epochs=epochs, lr=lr, lr_milestones=(milestone,) if milestone < epochs else (), weight_decay=weight_decay)


class Data:
    """The set at 128 px, loaded once, with each test image's defect kind and centre (row, col)."""

    def __init__(self, root: Path) -> None:
        def load(sub: str):
            return load_folder([root / sub], SIDE, 1, what=sub)

        self.unlabeled = load("train/normal").images
        self.anomalies = load("train/bad").images
        normal, anomalous = load("test/normal"), load("test/anomalous")
        self.test = torch.cat([normal.images, anomalous.images])
        self.truth = np.r_[np.zeros(len(normal.paths), bool), np.ones(len(anomalous.paths), bool)]
        manifest = {m["file"]: m for m in json.loads((root.parent / "manifest.json").read_text())}
        defects = [manifest[f"{root.name}/{p.relative_to(root).as_posix()}"].get("defect") for p in normal.paths + anomalous.paths]
        self.kinds = np.array([d["kind"] if d else None for d in defects], dtype=object)
        self.centres = [tuple(d["center"]) if d else None for d in defects]


def per_kind_auroc(scores: np.ndarray, data: Data) -> dict[str, float]:
    return {k: auroc(scores[~data.truth | (data.kinds == k)], data.truth[~data.truth | (data.kinds == k)]) for k in ("scratch", "foreign", "chip")}


def located(maps: torch.Tensor, p: P.PatchSpec, data: Data) -> float:
    """Share of test anomalies whose worst patch contains the defect's centre."""
    hits = []
    for m, centre in zip(maps, data.centres):
        if centre is None:
            continue
        i, j = divmod(int(m.flatten().argmax()), p.grid)
        r, c = centre
        hits.append(i * p.stride <= r < i * p.stride + p.patch_size and j * p.stride <= c < j * p.stride + p.patch_size)
    return float(np.mean(hits))


class Epochs:
    """Seconds per epoch of one phase, from the EpochCallback."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, info: training.EpochInfo) -> None:
        self.seconds.append(info.seconds)

    def mean(self) -> float:
        return round(float(np.mean(self.seconds)), 2) if self.seconds else 0.0


def run_whole(data: Data, x, y, x_test_u8, pre, pre_cfg, cfg, seed: int) -> dict:
    spec = get_spec("lenet-128", 1, SIDE)
    ae_epochs, svdd_epochs = Epochs(), Epochs()
    t0 = time.perf_counter()
    ae, _ = pipeline.pretrain(spec, x[y == pipeline.UNLABELED], pre_cfg, seed=seed, on_epoch=ae_epochs)
    t_pre = time.perf_counter() - t0
    saved = pipeline.train_model(spec, x, y, cfg, pre, seed=seed, autoencoder=ae, on_epoch=svdd_epochs)
    t_train = time.perf_counter() - t0 - t_pre
    t1 = time.perf_counter()
    scores = Scorer(saved, x.device).score(x_test_u8).numpy()
    return {"net": spec.name, "scores": scores, "pretrain_seconds": t_pre, "train_seconds": t_train, "score_seconds": time.perf_counter() - t1, "located": None,
            "s_per_ae_epoch": ae_epochs.mean(), "s_per_svdd_epoch": svdd_epochs.mean()}


def run_patch(name: str, data: Data, x, y, x_test, pre_cfg, cfg, seed: int) -> dict:
    m = re.fullmatch(r"p(\d+)-s(\d+)-k(\d+)", name)
    if not m:
        raise SystemExit(f"unknown run name '{name}' (see --help)")
    size, stride, k = map(int, m.groups())
    p = P.PatchSpec(SIDE, size, stride)
    spec = get_spec(PATCH_NETS[size], 1, size)
    ae_epochs, svdd_epochs = Epochs(), Epochs()
    t0 = time.perf_counter()
    ae = training.seeded_init(lambda: AutoEncoder(spec), seed)
    training.pretrain_autoencoder(ae, x[y == pipeline.UNLABELED], pre_cfg, seed=seed, view=PatchView(p, k), on_epoch=ae_epochs)
    t_pre = time.perf_counter() - t0
    encoder = pipeline.initial_encoder(spec, ae, seed, x.device)
    result = training.train_deep_svdd(encoder, x, y, cfg, seed=seed, view=PatchView(p, k), on_epoch=svdd_epochs)
    t_train = time.perf_counter() - t0 - t_pre
    t1 = time.perf_counter()
    maps = P.patch_distances(encoder, result.c, x_test, p)
    scores = P.image_scores(maps).numpy()
    return {"net": spec.name, "scores": scores, "pretrain_seconds": t_pre, "train_seconds": t_train, "score_seconds": time.perf_counter() - t1, "located": located(maps, p, data),
            "grid": p.grid, "s_per_ae_epoch": ae_epochs.mean(), "s_per_svdd_epoch": svdd_epochs.mean()}


def run_one(text: str, data: Data, args: argparse.Namespace, seed: int) -> dict:
    name, *epochs = text.split(":")
    pe, te = (int(epochs[0]), int(epochs[1])) if epochs else (args.pretrain_epochs, args.epochs)
    torch.manual_seed(seed)
    device = torch.device("cpu")
    pre = Preprocessor.fit(Preprocessing.SCALE, data.unlabeled)
    x, y = pipeline.training_tensors(pre, device, data.unlabeled, None, data.anomalies)
    x_test = pre(data.test).contiguous(memory_format=torch.channels_last)
    pre_cfg = schedule(pe, PAPER_PRETRAIN_GRAYSCALE.weight_decay, args.lr_drop, args.lr)
    cfg = TrainConfig(optim=schedule(te, 1e-6, args.lr_drop, args.lr))
    load0 = os.getloadavg()
    if name == "whole":
        r = run_whole(data, x, y, data.test, pre, pre_cfg, cfg, seed)
    else:
        r = run_patch(name, data, x, y, x_test, pre_cfg, cfg, seed)
    scores = r.pop("scores")
    met = compute_metrics(scores, data.truth, float(np.quantile(scores[~data.truth], 0.95)))
    return {
        "run": name,
        "pretrain_epochs": pe,
        "epochs": te,
        "seed": seed,
        "auroc": round(met.auroc, 4),
        "auprc": round(met.auprc, 4),
        "auroc_by_kind": {k: round(v, 4) for k, v in per_kind_auroc(scores, data).items()},
        **{k: round(v, 1) if isinstance(v, float) and k.endswith("seconds") else v for k, v in r.items()},
        "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "threads": torch.get_num_threads(),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
    }


HEADER = (
    "| run | net | P+T epochs | seed | AUROC | AUPRC | AUROC scratch/foreign/chip | worst patch on defect "
    "| s pretrain + train (s/epoch) | s scoring 200 | load avg 1 min (start-end) |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def row(r: dict) -> str:
    kinds = "/".join(f"{r['auroc_by_kind'][k]:.3f}" for k in ("scratch", "foreign", "chip"))
    loc = "-" if r["located"] is None else f"{r['located']:.2f}"
    return (
        f"| {r['run']} | {r['net']} | {r['pretrain_epochs']}+{r['epochs']} | {r['seed']} | {r['auroc']:.3f} | {r['auprc']:.3f} | {kinds} | {loc} "
        f"| {r['pretrain_seconds']:.0f} + {r['train_seconds']:.0f} ({r['s_per_ae_epoch']:.1f}, {r['s_per_svdd_epoch']:.1f}) | {r['score_seconds']:.1f} | {r['loadavg_start'][0]:.2f}-{r['loadavg_end'][0]:.2f} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sets", type=Path, required=True, help="the --out folder of make_photo_sets.py")
    ap.add_argument("--out", type=Path, default=Path("/work/runs/patch_study.md"))
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lr", type=float, default=1e-4, help="initial Adam lr of both phases")
    ap.add_argument("--lr-drop", type=float, default=2 / 3, help="lr drops 10x at this fraction of the epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--title", default="", help="a heading for this batch of runs in --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    command = "cd /work/main && .venv/bin/python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    new = not args.out.exists()
    with open(args.out, "a") as f:
        if new:
            f.write("# Patch-level vs whole-image SS-DSVDD (surface-defects, one-class, 20 labeled anomalies)\n\n")
        f.write(f"\n## {args.title or 'Runs'} ({dt.datetime.now().isoformat(timespec='minutes')})\n\n`{command}`\n\n")
        f.write(f"{torch.get_num_threads()} torch thread(s); lr {args.lr:g} dropped 10x at {args.lr_drop:.2f} of the epochs; "
                f"AE weight decay {PAPER_PRETRAIN_GRAYSCALE.weight_decay:g}, SVDD 1e-6; batch 200; preprocessing scale.\n\n{HEADER}")

    data = Data(args.sets / SET)
    for seed in args.seeds:
        for text in args.runs:
            print(f"[{dt.datetime.now():%H:%M:%S}] {text} seed {seed}, load {os.getloadavg()[0]:.2f}", flush=True)
            r = run_one(text, data, args, seed)
            print("   " + row(r).strip(), flush=True)
            with open(args.out, "a") as f:
                f.write(row(r))
            with open(args.out.with_suffix(".jsonl"), "a") as f:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
