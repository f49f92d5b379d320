"""Issue 11, item 2: does the autoencoder loss scale matter? Summed over pixels (the Deep SVDD code,
ssd's default) against the mean over pixels (the Deep SAD code), with weight decay 0.5e-3 in both,
so the balance between reconstruction and decay differs by a factor of C*H*W (784 for MNIST).

    .venv/bin/python studies/2026-12-03_ae_loss_scale.py --data-root ../shared/datasets --classes 0,1,2 --epochs 30

For each normal class of MNIST (train split, GCN fitted on it): pretrain the autoencoder with each
loss, then train One-Class Deep SVDD (unsupervised) from it with the same seed and schedule, and
report the test AUC. Both schedules are the paper preset's shape at --epochs (lr drop at 1/3).
Run it alone; it prints the load average.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core import pipeline, training
from ssd_cli.core.config import Preprocessing, TrainConfig
from ssd_cli.core.nets import AutoEncoder, get_spec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.presets import schedule_for, with_epochs
from ssd_cli.data.datasets import load_builtin
from ssd_cli.experiments.protocol import test_targets
from ssd_cli.metrics import auroc


def mean_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((recon - x) ** 2).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--classes", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("load before:", " ".join(Path("/proc/loadavg").read_text().split()[:3]), flush=True)
    train, test = load_builtin("mnist", args.data_root, True), load_builtin("mnist", args.data_root, False)
    spec = get_spec("mnist")
    schedule = schedule_for("mnist")
    pre_cfg, train_cfg = with_epochs(schedule.pretrain, args.epochs), with_epochs(schedule.train, args.epochs)
    rows = []
    for c in (int(v) for v in args.classes.split(",")):
        images = train.images[train.labels == c]
        pre = Preprocessor.fit(Preprocessing.GCN, images)
        x = pre(images).contiguous(memory_format=torch.channels_last)
        y = torch.zeros(len(x), dtype=torch.int8)
        x_test = pre(test.images).contiguous(memory_format=torch.channels_last)
        is_anomaly = test_targets(test.labels.numpy(), c)
        for name, loss in (("sum over pixels (default)", training.reconstruction_loss), ("mean over pixels", mean_loss)):
            start = time.perf_counter()
            ae = training.seeded_init(lambda: AutoEncoder(spec), args.seed)
            training.fit(ae, len(x), lambda idx: loss(ae(x[idx]), x[idx]), pre_cfg, seed=args.seed, device=x.device)
            encoder = pipeline.initial_encoder(spec, ae, args.seed, x.device)
            result = training.train_deep_svdd(encoder, x, y, TrainConfig(optim=train_cfg), seed=args.seed)
            auc = auroc(training.distances(encoder, result.c, x_test).numpy(), is_anomaly)
            rows.append({"class": c, "loss": name, "auc": round(100 * auc, 2), "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    for name in ("sum over pixels (default)", "mean over pixels"):
        aucs = [r["auc"] for r in rows if r["loss"] == name]
        print(f"{name}: mean AUC {np.mean(aucs):.2f} over classes {args.classes}")
    print("load after:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    main()
