"""Model and autoencoder files: safetensors tensors plus string metadata, never pickle.

A model file fully describes a detector: weights, c and R as tensors; architecture, objective,
hyperparameters, preprocessing and threshold as metadata. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .config import Objective
from .errors import ModelFileError
from .files import write_atomic
from .nets import AutoEncoder, Encoder, LeNetSpec, get_spec
from .preprocess import Preprocessor

FORMAT_VERSION = 1
MODEL_FORMAT = "ssd-model"
AUTOENCODER_FORMAT = "ssd-autoencoder"


@dataclass
class SavedModel:
    spec: LeNetSpec
    objective: Objective
    nu: float
    eta: float
    preprocessor: Preprocessor
    c: torch.Tensor
    radius: float
    threshold: float
    threshold_rule: str  # how the threshold was chosen, for the user
    encoder_state: dict[str, torch.Tensor]
    training: dict = field(default_factory=dict)
    tool_version: str = __version__

    def encoder(self, device: torch.device | str = "cpu") -> Encoder:
        enc = Encoder(self.spec)
        enc.load_state_dict(self.encoder_state)
        return enc.to(device).eval()


@dataclass
class SavedAutoencoder:
    spec: LeNetSpec
    preprocessor: Preprocessor
    state: dict[str, torch.Tensor]
    training: dict = field(default_factory=dict)
    tool_version: str = __version__

    def autoencoder(self) -> AutoEncoder:
        ae = AutoEncoder(self.spec)
        ae.load_state_dict(self.state)
        return ae


def _common_meta(kind: str, spec: LeNetSpec, pre: Preprocessor, training: dict) -> dict[str, str]:
    return {
        "format": kind,
        "format_version": str(FORMAT_VERSION),
        "tool": "ssd",
        "tool_version": __version__,
        "architecture": spec.name,
        "channels": str(spec.channels),
        "image_size": str(spec.image_size),
        "preprocessing": pre.to_json(),
        "training": json.dumps(training),
    }


def _cpu(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_model(path: Path, m: SavedModel, *, force: bool = False) -> None:
    tensors = _cpu(m.encoder_state, "encoder.")
    tensors["c"] = m.c.detach().to("cpu", torch.float32).contiguous()
    tensors["radius"] = torch.tensor([m.radius], dtype=torch.float32)
    meta = _common_meta(MODEL_FORMAT, m.spec, m.preprocessor, m.training)
    meta.update(objective=m.objective.value, nu=repr(m.nu), eta=repr(m.eta), threshold=repr(m.threshold), threshold_rule=m.threshold_rule)
    write_atomic(path, safetensors_bytes(tensors, metadata=meta), force)


def save_autoencoder(path: Path, a: SavedAutoencoder, *, force: bool = False) -> None:
    meta = _common_meta(AUTOENCODER_FORMAT, a.spec, a.preprocessor, a.training)
    write_atomic(path, safetensors_bytes(_cpu(a.state, "autoencoder."), metadata=meta), force)


def _read(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    label = "model" if kind == MODEL_FORMAT else "autoencoder"
    if not path.is_file():
        raise ModelFileError(f"{label} file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is not an ssd {label} file (not a readable safetensors file: {exc})") from None
    found = meta.get("format")
    if found != kind:
        what = f"an ssd '{found}' file" if found in (MODEL_FORMAT, AUTOENCODER_FORMAT) else "not written by ssd"
        raise ModelFileError(f"'{path}' is not an ssd {label} file ({what})")
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"'{path}' has format version {version or '?'}, this ssd {__version__} reads up to {FORMAT_VERSION}; upgrade ssd"
        )
    return tensors, meta


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _spec(meta: dict[str, str], path: Path) -> LeNetSpec:
    try:
        return get_spec(meta["architecture"], int(meta["channels"]), int(meta["image_size"]))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"'{path}' has an invalid architecture description ({exc})") from None


def load_model(path: Path) -> SavedModel:
    tensors, meta = _read(path, MODEL_FORMAT)
    spec = _spec(meta, path)
    try:
        m = SavedModel(
            spec=spec,
            objective=Objective(meta["objective"]),
            nu=float(meta["nu"]),
            eta=float(meta["eta"]),
            preprocessor=Preprocessor.from_json(meta["preprocessing"]),
            c=tensors["c"],
            radius=float(tensors["radius"][0]),
            threshold=float(meta["threshold"]),
            threshold_rule=meta.get("threshold_rule", ""),
            encoder_state=_strip(tensors, "encoder."),
            training=json.loads(meta.get("training", "{}")),
            tool_version=meta.get("tool_version", "?"),
        )
        Encoder(spec).load_state_dict(m.encoder_state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"'{path}' is a damaged ssd model file ({str(exc).splitlines()[0]})") from None
    if m.c.shape != (spec.rep_dim,):
        raise ModelFileError(f"'{path}' is a damaged ssd model file (center has shape {tuple(m.c.shape)})")
    return m


def load_autoencoder(path: Path) -> SavedAutoencoder:
    tensors, meta = _read(path, AUTOENCODER_FORMAT)
    spec = _spec(meta, path)
    try:
        a = SavedAutoencoder(
            spec=spec,
            preprocessor=Preprocessor.from_json(meta["preprocessing"]),
            state=_strip(tensors, "autoencoder."),
            training=json.loads(meta.get("training", "{}")),
            tool_version=meta.get("tool_version", "?"),
        )
        AutoEncoder(spec).load_state_dict(a.state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"'{path}' is a damaged ssd autoencoder file ({str(exc).splitlines()[0]})") from None
    return a
