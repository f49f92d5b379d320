"""F1 on a photo set's test images at the thresholds a trained model offers (issue 18, item 9).

    .venv/bin/python benchmarks/threshold_check.py --set SET --model M.safetensors --evaluation M.json [--seed S]

For a model that `ssd train` wrote with `--threshold-from synthetic` and the JSON that
`ssd evaluate --output` wrote for it, prints F1 at: the stored threshold; the 0.95-quantile of the
training scores (recorded beside it); and the synthetic rule as the current code computes it,
replayed on the same held-out images (the training folder is listed and split exactly as
`ssd train` did, so a changed rule can be checked on an existing model without training again);
where labeled anomalies were held out too, the check on them, and F1 at two rules measured and not
used by ssd: the F1-best threshold between them and the held-out images, weighed equally, and the
0.95-quantile of the held-out images' scores; and, for every model, the threshold of the largest
Youden's J (TPR - FPR) between the held-out images and the synthetic anomalies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ssd_cli.core.calibration import holdout, pooled, synthetic_scores, synthetic_threshold
from ssd_cli.core.roles import ANOMALY, UNLABELED, Role
from ssd_cli.core.synthetic import SyntheticConfig
from ssd_cli.core.views import PatchView
from ssd_cli.data.images import load_images
from ssd_cli.engine import TrainRequest, plan_training
from ssd_cli.io.modelfile import load_model
from ssd_cli.core.scoring import Scorer
from ssd_cli.metrics import compute_metrics
from ssd_cli.thresholds import f1_best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--evaluation", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    saved = load_model(args.model)
    rows = json.loads(args.evaluation.read_text())["scores"]
    scores = np.array([r["score"] for r in rows])
    truth = np.array([r["is_anomaly"] for r in rows], dtype=bool)
    record = saved.training.get("calibration") or {}
    plan = plan_training(TrainRequest(unlabeled=(args.set / "train/normal",), anomalies=(args.set / "train/bad",), device="cpu"), estimate=False)
    files = plan.files[Role.UNLABELED] + plan.files[Role.ANOMALIES]  # the order ssd train loads them in
    images = load_images(files, saved.input_size, saved.spec.channels, resize=saved.resize).images
    y = torch.full((len(images),), UNLABELED, dtype=torch.int8)
    y[len(plan.files[Role.UNLABELED]):] = ANOMALY
    held = holdout(y, args.seed)
    held_y = y[held]
    scorer = Scorer(saved, torch.device("cpu"))
    x_held = saved.preprocessor(images[held]).contiguous(memory_format=torch.channels_last)
    kinds = tuple(saved.training["config"]["synthetic"]["kinds"])
    view = PatchView(saved.patch)
    now = synthetic_threshold(view, scorer.encoder, scorer.c, x_held, held_y, SyntheticConfig(kinds=kinds), args.seed)  # the rule itself, replayed

    def f1(s: np.ndarray, t: np.ndarray, threshold: float) -> float:
        return compute_metrics(s, t, threshold).f1

    out = {
        "stored": {"threshold": saved.threshold, "f1": f1(scores, truth, saved.threshold)},
        "quantile": {"threshold": record.get("quantile_threshold"), "f1": f1(scores, truth, record["quantile_threshold"]) if record else None},
        "synthetic_now": {"threshold": now.threshold, "f1": f1(scores, truth, now.threshold)},
    }
    normal, synthetic = (t.double().numpy() for t in synthetic_scores(view, scorer.encoder, scorer.c, x_held[held_y == UNLABELED], SyntheticConfig(kinds=kinds), args.seed))
    if now.check is not None:  # held-out labeled anomalies: F1-best against the held-out images, the two weighed equally
        real = view.scores(scorer.encoder, scorer.c, x_held[held_y == ANOMALY]).double().numpy()
        balanced = f1_best(*pooled(torch.from_numpy(normal), torch.from_numpy(np.repeat(real, round(len(normal) / len(real))))))
        out["held_out_real"] = {"threshold": balanced, "f1": f1(scores, truth, balanced)}
        held_q = float(np.quantile(normal, 0.95))  # the held-out images' own quantile: unseen, not pulled to c
        out["held_out_quantile"] = {"threshold": held_q, "f1": f1(scores, truth, held_q)}
        out["check"] = now.check.to_dict()
    # Youden's J (TPR - FPR) instead of F1 between the held-out images and the same synthetic anomalies
    cand = np.unique(np.r_[normal, synthetic])
    j = [(synthetic >= t).mean() - (normal >= t).mean() for t in cand]
    youden = float(cand[int(np.argmax(j))]) - 1e-9
    out["synthetic_youden"] = {"threshold": youden, "f1": f1(scores, truth, youden)}
    print(json.dumps({"model": str(args.model), **{k: {kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()} for k, v in out.items()}}))


if __name__ == "__main__":
    main()
