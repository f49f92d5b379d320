"""How a trained patch-level model's image score is made, compared on held-out photos (issue 18, item 8).

    .venv/bin/python benchmarks/score_study.py --model M.safetensors --set SET [--train-patches 20000]

For a model written by `ssd train` and a set with train/normal, test/normal and test/anomalous, prints
the test AUROC of four image scores built from the same network:
  max       the largest patch distance to c (what `ssd score` uses)
  top3/top5 the mean of the 3 / 5 largest patch distances
  knn       the largest, over the image's grid patches, distance of phi(patch) to its nearest
            neighbour among phi of the training images' grid patches (up to --train-patches of them)
No training happens here; it reads the model and the images. The patch scores come from the public
`Detector` (`Scores.maps`, as `ssd score` computes them); the knn score needs phi of every patch,
which nothing public gives, so it takes the network from ssd_cli.core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ssd_cli import Detector
from ssd_cli.core.embedding import embed
from ssd_cli.core.patches import grid_patches
from ssd_cli.core.scoring import Scorer
from ssd_cli.data.images import load_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--train-patches", type=int, default=20000)
    args = ap.parse_args()
    detector = Detector.load(args.model, device="cpu")
    saved = detector.model_
    assert saved is not None and saved.patch is not None and saved.tile is None, "a patch-level model (not tiled) is needed"
    normal, anomalous = detector.score(args.set / "test/normal"), detector.score(args.set / "test/anomalous")
    truth = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    maps = torch.from_numpy(np.concatenate([normal.maps, anomalous.maps])).flatten(1)
    top = maps.sort(dim=1, descending=True).values
    results = {"max": top[:, 0], "top3": top[:, :3].mean(1), "top5": top[:, :5].mean(1)}
    scorer = Scorer(saved, torch.device("cpu"))

    def images(sub: str) -> torch.Tensor:
        """The folder's images in the order `Detector.score` lists them (sorted paths)."""
        return load_folder([args.set / sub], saved.input_size, saved.spec.channels, what=sub, resize=saved.resize).images

    def patch_embeddings(u8: torch.Tensor) -> torch.Tensor:
        x = scorer._input(u8)
        return embed(scorer.encoder, grid_patches(x, saved.patch).flatten(0, 1))

    train = patch_embeddings(images("train/normal"))
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.train_patches]
    bank = train[keep]
    per_image = saved.patch.grid**2
    test = torch.cat([patch_embeddings(images("test/normal")), patch_embeddings(images("test/anomalous"))])
    nearest = torch.cat([torch.cdist(chunk, bank).amin(dim=1) for chunk in test.split(4096)])
    results["knn"] = nearest.view(-1, per_image).amax(dim=1)
    out = {name: round(float(roc_auc_score(truth, s.numpy())), 4) for name, s in results.items()}
    print(json.dumps({"model": str(args.model), "set": str(args.set), "auroc": out}))


if __name__ == "__main__":
    main()
