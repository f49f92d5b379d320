"""Which native-resolution network? A study of candidate LeNet-type networks on the surface-defects set.

    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets
    .venv/bin/python studies/2026-12-03_network_choice.py --sets /work/runs/photo-sets --out /work/runs/network_choice.md \\
        --runs S128-w8-c128-r128 S128-w16-c128-r128 ... [--pretrain-epochs 15 --epochs 15] [--seeds 0]

Every run is one-class SS-DSVDD (objective (4), eta = 1) on surface-defects/: train/normal/ (500 crops) as
unlabeled data plus the 20 labeled anomalies of train/bad/, preprocessing `scale`, grayscale (1 channel),
scored on test/normal/ (100) and test/anomalous/ (100), all through the engine: ssd_cli.data.images.load_folder,
Preprocessor, pipeline.training_tensors / pretrain / train_model, scoring.Scorer and ssd_cli.metrics.

Schedules: autoencoder Adam lr 1e-4 (`--lr`), weight decay 0.5e-3 (PAPER_PRETRAIN_GRAYSCALE) and SS-DSVDD Adam
lr 1e-4, weight decay 1e-6, each with a 10x lr drop two thirds in (`--lr-drop`), batch 200.

Run names (`--runs`):
  S{side}-w{first}-c{cap}-r{rep}   LeNetSpec by the paper's rules: log2(side/4) conv modules (so the net ends on
                                   4x4), first module `first` filters, doubling per module up to `cap`,
                                   a bias-free dense layer to `rep` units.
  cifar10@{side}                   the `cifar10` network (32, 64, 128 filters, rep 128) on side x side
                                   grayscale input: 3 modules, a (side/8)^2 feature map.
  A run may add `:P:T` to override the pretraining/training epochs for it, e.g. cifar10@128:40:40.

Reported per run: AUROC and AUPRC on the test set (all defects, and AUROC per defect kind), mean seconds per
epoch of pretraining and of training (1 torch thread; epoch 1 included), parameter count of phi and of the
autoencoder, and the test AUROC at every `--checkpoint-every` training epochs (from the network being
trained, with the same c; the final value is the Scorer's). Rows are appended to --out as runs finish,
with os.getloadavg() beside the timings (the machine is shared), and raw records to --out with .jsonl.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core import pipeline, training
from ssd_cli.core.config import PAPER_PRETRAIN_GRAYSCALE, OptimConfig, Preprocessing, TrainConfig
from ssd_cli.core.scoring import Scorer
from ssd_cli.data.images import load_folder
from ssd_cli.metrics import auroc, compute_metrics
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec
from ssd_cli.core.preprocess import Preprocessor

SET = "surface-defects"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    name: str
    spec: LeNetSpec
    pretrain_epochs: int
    epochs: int
    seed: int


def parse_spec(name: str) -> LeNetSpec:
    m = re.fullmatch(r"S(\d+)-w(\d+)-c(\d+)-r(\d+)", name)
    if m:
        side, first, cap, rep = map(int, m.groups())
        modules = int(round(np.log2(side / 4)))
        if 4 * 2**modules != side:
            raise SystemExit(f"{name}: side must be 4 * 2^k")
        filters = tuple(min(first * 2**i, cap) for i in range(modules))
        return LeNetSpec(name, channels=1, image_size=side, conv_filters=filters, dense_units=(rep,))
    m = re.fullmatch(r"cifar10@(\d+)", name)
    if m:
        return LeNetSpec(name, channels=1, image_size=int(m.group(1)), conv_filters=(32, 64, 128), dense_units=(128,))
    raise SystemExit(f"unknown run name '{name}' (see --help)")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def schedule(epochs: int, weight_decay: float, drop: float, lr: float = 1e-4) -> OptimConfig:
    milestone = max(1, int(round(epochs * drop)))
    return OptimConfig(epochs=epochs, lr=lr, lr_milestones=(milestone,) if milestone < epochs else (), weight_decay=weight_decay)


class Data:
    """The set's images at one side length, loaded once."""

    def __init__(self, root: Path, side: int) -> None:
        def load(sub: str):
            return load_folder([root / sub], side, 1, what=sub)

        self.unlabeled = load("train/normal").images
        self.anomalies = load("train/bad").images
        normal, anomalous = load("test/normal"), load("test/anomalous")
        self.test = torch.cat([normal.images, anomalous.images])
        self.truth = np.r_[np.zeros(len(normal.paths), bool), np.ones(len(anomalous.paths), bool)]
        manifest = {m["file"]: m for m in json.loads((root.parent / "manifest.json").read_text())} if (root.parent / "manifest.json").is_file() else {}
        kinds = []
        for p in normal.paths + anomalous.paths:
            rel = f"{root.name}/{p.relative_to(root).as_posix()}"
            d = manifest.get(rel, {}).get("defect")
            kinds.append(d["kind"] if d else None)
        self.kinds = np.array(kinds, dtype=object)


def per_kind_auroc(scores: np.ndarray, truth: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    out = {}
    for kind in sorted({k for k in kinds if k}):
        keep = ~truth | (kinds == kind)
        out[kind] = auroc(scores[keep], truth[keep])
    return out


def run_one(run: Run, data: Data, args: argparse.Namespace) -> dict:
    torch.manual_seed(run.seed)
    device = torch.device("cpu")
    spec = run.spec
    pre = Preprocessor.fit(Preprocessing.SCALE, data.unlabeled)
    x, y = pipeline.training_tensors(pre, device, data.unlabeled, None, data.anomalies)
    x_test = pre(data.test).contiguous(memory_format=torch.channels_last)
    pre_cfg = schedule(run.pretrain_epochs, PAPER_PRETRAIN_GRAYSCALE.weight_decay, args.lr_drop, args.lr)
    cfg = TrainConfig(optim=schedule(run.epochs, 1e-6, args.lr_drop, args.lr))

    load0 = os.getloadavg()
    pre_secs: list[float] = []
    t0 = time.perf_counter()
    ae = None
    if run.pretrain_epochs:
        ae, _ = pipeline.pretrain(spec, x[y == pipeline.UNLABELED], pre_cfg, seed=run.seed, on_epoch=lambda e: pre_secs.append(e.seconds))
    t_pre = time.perf_counter() - t0

    # The encoder train_model builds, captured so the curve can be read during training; c is
    # computed exactly as train_deep_svdd does (same seeded init + pretrained weights + data).
    c = training.init_center(pipeline.initial_encoder(spec, ae, run.seed, device), x, y, cfg.center_eps)
    captured: dict[str, Encoder] = {}
    original = pipeline.initial_encoder

    def capture(*a, **k):
        captured["encoder"] = enc = original(*a, **k)
        return enc

    curve: dict[int, float] = {}
    train_secs: list[float] = []

    def on_epoch(info: training.EpochInfo) -> None:
        train_secs.append(info.seconds)
        if info.epoch % args.checkpoint_every == 0 and info.epoch < info.epochs:
            s = training.distances(captured["encoder"], c, x_test).numpy()
            curve[info.epoch] = round(auroc(s, data.truth), 4)

    t1 = time.perf_counter()
    pipeline.initial_encoder = capture
    try:
        saved = pipeline.train_model(spec, x, y, cfg, pre, seed=run.seed, autoencoder=ae, on_epoch=on_epoch)
    finally:
        pipeline.initial_encoder = original
    t_train = time.perf_counter() - t1
    assert torch.equal(saved.c, c), "c differs from the one used for the curve"

    detector = Scorer(saved, device)
    scores = detector.score(data.test).numpy()
    # How well the training data are separated (fit), beside the test AUROC (generalisation).
    train_scores = detector.score(torch.cat([data.unlabeled, data.anomalies])).numpy()
    train_truth = np.r_[np.zeros(len(data.unlabeled), bool), np.ones(len(data.anomalies), bool)]
    m = compute_metrics(scores, data.truth, saved.threshold)
    curve[run.epochs] = round(m.auroc, 4)
    load1 = os.getloadavg()
    return {
        "run": run.name,
        "side": spec.image_size,
        "conv_filters": list(spec.conv_filters),
        "rep_dim": spec.rep_dim,
        "feature_map": spec.feature_size,
        "pretrain_epochs": run.pretrain_epochs,
        "epochs": run.epochs,
        "seed": run.seed,
        "lr": args.lr,
        "auroc": round(m.auroc, 4),
        "auprc": round(m.auprc, 4),
        "auroc_train": round(auroc(train_scores, train_truth), 4),
        "auroc_by_kind": {k: round(v, 4) for k, v in per_kind_auroc(scores, data.truth, data.kinds).items()},
        "recall_at_threshold": round(m.recall, 3),
        "precision_at_threshold": round(m.precision, 3),
        "s_per_pretrain_epoch": round(float(np.mean(pre_secs)), 2) if pre_secs else 0.0,
        "s_per_train_epoch": round(float(np.mean(train_secs)), 2) if train_secs else 0.0,
        "pretrain_seconds": round(t_pre, 1),
        "train_seconds": round(t_train, 1),
        "params_phi": n_params(Encoder(spec)),
        "params_ae": n_params(AutoEncoder(spec)),
        "curve": curve,
        "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in load1],
        "threads": torch.get_num_threads(),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
    }


HEADER = (
    "| run | filters | rep | P+T epochs | seed | lr | AUROC | AUPRC | train AUROC | AUROC scratch/foreign/chip | s/epoch AE | s/epoch SVDD "
    "| params phi / AE | AUROC curve (train epoch: AUROC) | load avg (1 min, start-end) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def row(r: dict) -> str:
    k = r["auroc_by_kind"]
    kinds = "/".join(f"{k.get(n, float('nan')):.3f}" for n in ("scratch", "foreign", "chip"))
    curve = ", ".join(f"{e}: {a:.3f}" for e, a in sorted(r["curve"].items(), key=lambda t: int(t[0])))
    return (
        f"| {r['run']} | {'-'.join(map(str, r['conv_filters']))} | {r['rep_dim']} | {r['pretrain_epochs']}+{r['epochs']} | {r['seed']} "
        f"| {r.get('lr', 1e-4):g} | {r['auroc']:.3f} | {r['auprc']:.3f} | {r.get('auroc_train', float('nan')):.3f} | {kinds} | {r['s_per_pretrain_epoch']:.2f} | {r['s_per_train_epoch']:.2f} "
        f"| {r['params_phi']:,} / {r['params_ae']:,} | {curve} | {r['loadavg_start'][0]:.2f}-{r['loadavg_end'][0]:.2f} |\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sets", type=Path, required=True, help="the --out folder of make_photo_sets.py")
    ap.add_argument("--out", type=Path, default=Path("/work/runs/network_choice.md"))
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lr", type=float, default=1e-4, help="initial Adam lr of both phases")
    ap.add_argument("--lr-drop", type=float, default=2 / 3, help="lr drops 10x at this fraction of the epochs")
    ap.add_argument("--checkpoint-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--title", default="", help="a heading for this batch of runs in --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    root = args.sets / SET
    runs = []
    for text in args.runs:
        name, *epochs = text.split(":")
        p, t = (int(epochs[0]), int(epochs[1])) if epochs else (args.pretrain_epochs, args.epochs)
        runs += [Run(name, parse_spec(name), p, t, seed) for seed in args.seeds]

    import ssd_cli

    engine = Path(ssd_cli.__file__).resolve().parent
    prefix = "" if engine == REPO / "ssd_cli" else f"PYTHONPATH={engine.parent} "  # a snapshot of the engine
    command = f"cd {REPO} && {prefix}.venv/bin/python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    new = not args.out.exists()
    with open(args.out, "a") as f:
        if new:
            f.write("# Network choice for the native-resolution LeNets (surface-defects, one-class SS-DSVDD, 20 labeled anomalies)\n\n")
        f.write(f"\n## {args.title or 'Runs'} ({dt.datetime.now().isoformat(timespec='minutes')})\n\n")
        f.write(f"`{command}`\n\n{torch.get_num_threads()} torch thread(s); lr {args.lr:g} dropped 10x at {args.lr_drop:.2f} of the epochs; "
                f"AE weight decay {PAPER_PRETRAIN_GRAYSCALE.weight_decay:g}, SVDD 1e-6; batch 200; preprocessing scale.\n\n")
        f.write(HEADER)

    cache: dict[int, Data] = {}
    for run in runs:
        side = run.spec.image_size
        if side not in cache:
            cache[side] = Data(root, side)
        print(f"[{dt.datetime.now():%H:%M:%S}] {run.name} seed {run.seed} {run.pretrain_epochs}+{run.epochs} epochs, load {os.getloadavg()[0]:.2f}", flush=True)
        r = run_one(run, cache[side], args)
        print("   " + row(r).strip(), flush=True)
        with open(args.out, "a") as f:
            f.write(row(r))
        with open(args.out.with_suffix(".jsonl"), "a") as f:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
