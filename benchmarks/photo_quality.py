"""Detection quality on realistic photo folders, measured through the real CLI as a user runs it.

    .venv/bin/python benchmarks/make_photo_sets.py --out /work/runs/photo-sets --sets colour-objects,surface-defects
    .venv/bin/python benchmarks/photo_quality.py --sets /work/runs/photo-sets --out /work/runs/photo_quality.json \\
        [--configs 'lenet128=--arch lenet-128 --channels 1' ...] [--common '--epochs 1 --pretrain-epochs 1'] \\
        [--seeds 0,1] [--no-anomalies]

For every set (a folder with train/normal, train/bad, test/normal, test/anomalous, e.g. the sets of
make_photo_sets.py), every named configuration and every seed this runs

    ssd [--threads N] train --unlabeled SET/train/normal --anomalies SET/train/bad --out M --force --seed S OPTIONS
    ssd [--threads N] evaluate M --normal SET/test/normal --anomalous SET/test/anomalous [--masks SET/test/masks] \\
        --output M.json --force

and reports AUROC, AUPRC, precision/recall at the model's threshold, the pixel-level AUROC and AUPRO
where the set has defect masks (SET/test/masks, passed as `--masks`; None where it has none or the ssd
has no `--masks`), the wall time of `ssd train` (pretraining + training + loading) and the network the
model file says it holds. Each result records its set, configuration and seed (`key` = set/config/sS).
`--no-anomalies` leaves out `--anomalies SET/train/bad` (the unlabeled setting: what the model finds
without the 20 labeled defects); its models are named with `-unlabeled`.

Configurations: `old-default` = `--arch mnist --channels 1 --image-size 28` (what ssd 0.1 did with
`--arch mnist`), `new-default` = no network options at all (the CLI's automatic choice), plus any
`name=options` given with --configs (`--no-defaults` drops the first two). `--common` options are added
to every configuration (e.g. fewer epochs for a smoke test).
The JSON is rewritten after every run, so a stopped study keeps what it finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SSD = REPO / ".venv" / "bin" / "ssd"
# ssd 0.1 used the architecture's own channels and size: `--arch mnist` alone now adapts the channels to
# the data (3x28x28 for colour photos), so the old default is pinned to 1x28x28 here.
DEFAULT_CONFIGS = {"old-default": "--arch mnist --channels 1 --image-size 28", "new-default": ""}
SUBFOLDERS = ("train/normal", "train/bad", "test/normal", "test/anomalous")


def parse_config(text: str) -> tuple[str, str]:
    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected name=options, got '{text}'")
    return name.strip(), options.strip()


def find_sets(root: Path, only: list[str] | None) -> list[Path]:
    if not root.is_dir():
        raise SystemExit(f"--sets: {root} is not a folder (make it with benchmarks/make_photo_sets.py)")
    if all((root / s).is_dir() for s in SUBFOLDERS):
        candidates = [root]  # --sets points at one set
    else:
        candidates = sorted(p for p in root.iterdir() if p.is_dir() and all((p / s).is_dir() for s in SUBFOLDERS))
    if only:
        candidates = [p for p in candidates if p.name in only]
    if not candidates:
        raise SystemExit(f"no set folder with {', '.join(SUBFOLDERS)} under {root}")
    return candidates


def model_network(path: Path) -> dict[str, str]:
    """What the model file says about its network (safetensors metadata; nothing is unpickled)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    out: dict = {k: meta[k] for k in ("architecture", "channels", "image_size", "resize") if k in meta}
    for key in ("network", "preprocessing"):  # JSON in the metadata (network: since format changes of 0.2)
        if key in meta:
            try:
                out[key] = json.loads(meta[key])
            except ValueError:
                out[key] = meta[key]
    return out


def run_cli(cmd: list[str], log: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "160"}).returncode
    return rc, time.perf_counter() - start


def tail(path: Path, n: int = 3) -> str:
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    return " | ".join(lines[-n:])


def pixel_metrics(doc: dict) -> dict:
    """Pixel AUROC and AUPRO from evaluate's JSON (`pixel` at the top or inside `metrics`), None if absent."""
    pixel = doc.get("pixel") or doc.get("metrics", {}).get("pixel") or {}
    return {"pixel_auroc": pixel.get("auroc"), "pixel_aupro": pixel.get("aupro")}


def evaluate_one(ssd: list[str], set_dir: Path, name: str, options: str, models: Path, seed: int, anomalies: bool = True, masks: bool = True) -> dict:
    """Train and evaluate one configuration with one seed; masks=False never passes --masks."""
    model = models / f"{set_dir.name}--{name}--s{seed}{'' if anomalies else '-unlabeled'}.safetensors"
    metrics_file = model.with_suffix(".json")
    extra = shlex.split(options)
    labeled = ["--anomalies", str(set_dir / "train/bad")] if anomalies else []
    mask_dir = set_dir / "test" / "masks"
    mask_opt = ["--masks", str(mask_dir)] if masks and mask_dir.is_dir() else []
    train_cmd = [*ssd, "train", "--unlabeled", str(set_dir / "train/normal"), *labeled, "--out", str(model), "--force", "--seed", str(seed), *extra]
    eval_cmd = [*ssd, "evaluate", str(model), "--normal", str(set_dir / "test/normal"), "--anomalous", str(set_dir / "test/anomalous"), *mask_opt, "--output", str(metrics_file), "--force"]
    result: dict = {"key": f"{set_dir.name}/{name}/s{seed}", "set": set_dir.name, "config": name, "seed": seed, "anomalies": anomalies, "masks": str(mask_dir) if mask_opt else None, "options": options, "train_command": shlex.join(train_cmd), "evaluate_command": shlex.join(eval_cmd), "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    rc, seconds = run_cli(train_cmd, model.with_suffix(".train.log"))
    result.update(train_rc=rc, train_seconds=round(seconds, 1), loadavg_after_train=[round(v, 2) for v in os.getloadavg()])
    if rc != 0:
        result["error"] = f"ssd train exited {rc}: {tail(model.with_suffix('.train.log'))}"
        return result
    result["network"] = model_network(model)
    rc, seconds = run_cli(eval_cmd, model.with_suffix(".evaluate.log"))
    result.update(evaluate_rc=rc, evaluate_seconds=round(seconds, 1))
    if rc != 0:
        result["error"] = f"ssd evaluate exited {rc}: {tail(model.with_suffix('.evaluate.log'))}"
        return result
    doc = json.loads(metrics_file.read_text())
    metrics = doc["metrics"]
    result.update({k: metrics[k] for k in ("auroc", "auprc", "precision", "recall", "f1", "n_normal", "n_anomalous")})
    result.update(pixel_metrics(doc))
    return result


def network_text(r: dict) -> str:
    n = r.get("network") or {}
    if not n:
        return "-"
    text = f"{n.get('architecture', '?')} {n.get('channels', '?')}x{n.get('image_size', '?')}x{n.get('image_size', '?')}"
    net = n.get("network")
    if isinstance(net, dict):
        filters = net.get("conv_filters") or net.get("filters")
        dense = net.get("dense_units")
        if filters:
            text += f" conv {'-'.join(map(str, filters))}"
        if dense:
            text += f" dense {'-'.join(map(str, dense))}"
    return text


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: list[dict]) -> str:
    head = f"{'set':<18} {'config':<16} {'seed':>4} {'AUROC':>6} {'AUPRC':>6} {'pxAUROC':>7} {'AUPRO':>6} {'train s':>8}  network"
    lines = [head, "-" * len(head)]
    for r in results:
        start = f"{r['set']:<18} {r['config']:<16} {r.get('seed', '-')!s:>4}"
        if "auroc" in r:
            lines.append(f"{start} {r['auroc']:>6.3f} {r['auprc']:>6.3f} {_num(r.get('pixel_auroc')):>7} {_num(r.get('pixel_aupro')):>6} {r['train_seconds']:>8.1f}  {network_text(r)}")
        else:
            lines.append(f"{start} {'-':>6} {'-':>6} {'-':>7} {'-':>6} {r.get('train_seconds', 0):>8.1f}  {network_text(r)}  ERROR: {r.get('error', '?')}")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given")
    return seeds


def evaluate_has_masks(ssd: str) -> bool:
    """Whether this ssd's `evaluate` takes --masks (added after 0.2): older ones would reject the option."""
    text = subprocess.run([ssd, "evaluate", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}).stdout
    return "--masks" in text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sets", type=Path, required=True, help="folder of sets (or one set folder)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--configs", nargs="*", type=parse_config, default=[], metavar="NAME=OPTIONS", help="extra configurations: name=ssd train options")
    ap.add_argument("--no-defaults", action="store_true", help="skip old-default and new-default")
    ap.add_argument("--common", default="", help="options added to every `ssd train` (e.g. '--epochs 1 --pretrain-epochs 1')")
    ap.add_argument("--only", nargs="+", help="set names to run (default: all found)")
    ap.add_argument("--models", type=Path, help="where models and logs go (default: OUT without suffix + '-models/')")
    ap.add_argument("--threads", type=int, help="passed as `ssd --threads N`")
    ap.add_argument("--ssd", default=str(DEFAULT_SSD), help="the ssd executable")
    ap.add_argument("--seeds", type=parse_seeds, default=[0], metavar="S[,S...]", help="run every configuration once per seed (`ssd train --seed S`); default 0, train's own default")
    ap.add_argument("--no-anomalies", action="store_true", help="train without --anomalies SET/train/bad (the unlabeled setting)")
    ap.add_argument("--no-masks", action="store_true", help="never pass --masks to ssd evaluate (no pixel metrics)")
    args = ap.parse_args(argv)

    configs = {} if args.no_defaults else dict(DEFAULT_CONFIGS)
    for name, options in args.configs:
        configs[name] = options
    if not configs:
        raise SystemExit("no configurations to run")
    sets = find_sets(args.sets, args.only)
    models = args.models or args.out.with_name(args.out.stem + "-models")
    models.mkdir(parents=True, exist_ok=True)
    ssd = [args.ssd] + (["--threads", str(args.threads)] if args.threads else [])
    version = subprocess.run([args.ssd, "--version"], capture_output=True, text=True).stdout.strip()
    masks = not args.no_masks and evaluate_has_masks(args.ssd)
    if not args.no_masks and not masks and any((s / "test" / "masks").is_dir() for s in sets):
        print(f"note: {args.ssd} evaluate has no --masks option; pixel metrics are not measured", file=sys.stderr)

    doc = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["photo_quality.py", *argv]),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "ssd_version": version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "common_options": args.common,
        "seeds": args.seeds,
        "anomalies": not args.no_anomalies,
        "pixel_metrics": masks,
        "configs": configs,
        "results": [],
    }
    for set_dir in sets:
        for name, options in configs.items():
            for seed in args.seeds:
                full = " ".join(o for o in (options, args.common) if o)
                print(f"[{dt.datetime.now():%H:%M:%S}] {set_dir.name} / {name} / seed {seed}: ssd train {full}".rstrip(), flush=True)
                r = evaluate_one(ssd, set_dir, name, full, models, seed, anomalies=not args.no_anomalies, masks=masks)
                doc["results"].append(r)
                doc["finished"] = dt.datetime.now().isoformat(timespec="seconds")
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(doc, indent=1) + "\n")
                tmp.replace(args.out)
                print("   " + table([r]).splitlines()[-1], flush=True)
    print()
    print(table(doc["results"]))
    print(f"\nwrote {args.out}")
    return 0 if all("auroc" in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
