"""What a model or autoencoder file holds, as one JSON-ready description (`ssd info`).

Everything comes from the loaded file (which checks it fully), never from guesses: the network's
full specification, the input it takes, preprocessing, objective and hyperparameters, the threshold
and its rule, the training record (counts, epochs, time, device, seed) and the geometry |c| and R.
"""

from __future__ import annotations

from pathlib import Path

from ssd_cli.io import modelfile
from ssd_cli.core.tiles import TileSpec
from ssd_cli.core.model import SavedAutoencoder, SavedModel


def tile_words(tile: TileSpec) -> str:
    """A tile geometry in a few words, for the plan, the summary and the facts of a report."""
    scale = "native resolution" if tile.scale == 1 else f"scale {tile.scale:g}"
    return f"{tile.tile_size} px tiles at {scale}, overlapping by at least {tile.overlap} px"


def _input(saved: SavedModel | SavedAutoencoder) -> dict:
    side = saved.input_size
    return {
        "channels": saved.spec.channels,
        "size": side,
        "resize": saved.resize.value,
        "patch": saved.patch.to_dict() if saved.patch else None,
        "tile": saved.tile.to_dict() if saved.tile else None,
    }


def _preprocessing(saved: SavedModel | SavedAutoencoder) -> dict:
    pre = saved.preprocessor
    return {"kind": pre.kind.value, "low": pre.low, "high": pre.high}


def _common(kind: str, saved: SavedModel | SavedAutoencoder) -> dict:
    return {
        "kind": kind,
        "tool_version": saved.tool_version,
        "network": saved.spec.to_dict(),
        "input": _input(saved),
        "preprocessing": _preprocessing(saved),
    }


def _number(value: object) -> float | int | None:
    """A number from the free-form training record, else None: a file may carry anything there."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_SEPARATION_KEYS = ("n_anomalous", "anomalous_above", "n_normal", "normal_below")


def _separation(value: object) -> dict | None:
    """The labeled separation at the threshold, only if the record holds it whole."""
    if isinstance(value, dict) and all(type(value.get(k)) is int for k in _SEPARATION_KEYS):
        return {k: value[k] for k in _SEPARATION_KEYS}
    return None


_CHECK_KEYS = ("n_normal", "n_anomalous", "normal_above", "anomalous_above")


def _held_out_check(calibration: object) -> dict | None:
    """The check on held-out labeled anomalies (core/calibration.py), only if the record holds it whole."""
    check = calibration.get("held_out_anomalies") if isinstance(calibration, dict) else None
    if isinstance(check, dict) and all(type(check.get(k)) is int for k in _CHECK_KEYS) and type(check.get("auroc")) is float:
        return {k: check[k] for k in (*_CHECK_KEYS, "auroc")}
    return None


def _config_text(config: object, key: str) -> str | None:
    value = config.get(key) if isinstance(config, dict) else None
    return value if isinstance(value, str) else None


def _names(value: object) -> list[str] | None:
    """A list of names from the training record ([] for none; None where the record is older than
    the setting or malformed)."""
    return [k for k in value if isinstance(k, str)] if isinstance(value, list) else None


def _synthetic(config: object) -> list[str] | None:
    """The synthetic anomaly kinds the model trained with."""
    synthetic = config.get("synthetic") if isinstance(config, dict) else None
    return _names(synthetic.get("kinds") if isinstance(synthetic, dict) else None)


def _whitened(config: dict, whitening: object) -> bool | None:
    """Whether the scores are Mahalanobis distances (None: a file from before whitening existed).
    Asked for but skipped (embeddings that did not vary) is False: phi was left as trained."""
    asked = config.get("whiten")
    if not isinstance(asked, bool):
        return None
    return asked and isinstance(whitening, dict)


def describe_model(saved: SavedModel) -> dict:
    t = saved.training
    config = t.get("config") if isinstance(t.get("config"), dict) else {}
    builtin = t.get("builtin_outliers")
    return {
        **_common("model", saved),
        "objective": saved.objective.value,
        "nu": saved.nu,
        "eta": saved.eta,
        "threshold": saved.threshold,
        "threshold_rule": saved.threshold_rule,
        "center_norm": float(saved.c.double().norm()),
        "radius": saved.radius,
        "training": {
            "n_unlabeled": t.get("n_unlabeled"),
            "n_labeled_normal": t.get("n_labeled_normal"),
            "n_labeled_anomalous": t.get("n_labeled_anomalous"),
            "epochs": t.get("epochs"),
            "pretrain_epochs": t.get("pretrain_epochs"),
            "seconds": t.get("seconds"),
            "pretrain_seconds": t.get("pretrain_seconds"),
            "device": t.get("device"),
            "seed": t.get("seed"),
            "final_loss": _number(t.get("final_loss")),
            "labeled_at_threshold": _separation(t.get("labeled_at_threshold")),
            "held_out_check": _held_out_check(t.get("calibration")),
            "world_size": t.get("world_size", 1),
            "n_outliers": _number(t.get("n_outliers")),
            "builtin_outliers": builtin if isinstance(builtin, bool) else None,
            "synthetic": _synthetic(config),
            "augment": _names(config.get("augment")),
            "anomaly_loss": _config_text(config, "anomaly_loss"),
            "whitened": _whitened(config, t.get("whitening")),
        },
        "training_record": t,
    }


def describe_autoencoder(saved: SavedAutoencoder) -> dict:
    t = saved.training
    return {
        **_common("autoencoder", saved),
        "training": {
            "n_unlabeled": t.get("n_unlabeled"),
            "epochs": t.get("epochs"),
            "seconds": t.get("seconds"),
            "device": t.get("device"),
            "seed": t.get("seed"),
            "final_loss": _number(t.get("final_loss")),
        },
        "training_record": t,
    }


def describe_file(path: Path) -> dict:
    """The description of a model or autoencoder file (ModelFileError if it is neither)."""
    saved = modelfile.load_any(path)
    info = describe_model(saved) if isinstance(saved, SavedModel) else describe_autoencoder(saved)
    return {"file": str(path), **info}


def facts(saved: SavedModel | None, path: Path | None = None) -> list[tuple[str, str]]:
    """The few lines about a model that a report or a scores file should carry."""
    if saved is None:
        return []
    t, side = saved.training, saved.input_size
    patch = f", {saved.spec.image_size} px patches" if saved.patch else ""
    if saved.tile is not None:
        patch += f" of {tile_words(saved.tile)}"
    out = [("model", str(path))] if path is not None else []
    out += [
        ("network", f"{saved.spec.name}, input {saved.spec.channels}x{side}x{side} ({saved.resize.value}{patch})"),
        ("objective", f"{saved.objective.value}, nu {saved.nu:g}, eta {saved.eta:g}, preprocessing {saved.preprocessor.kind.value}"),
        ("trained on", f"{t.get('n_unlabeled')} unlabeled, {t.get('n_labeled_normal')} labeled normal, {t.get('n_labeled_anomalous')} labeled anomalous images"),
        ("written by", f"ssd {saved.tool_version}"),
    ]
    return out
