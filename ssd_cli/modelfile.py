"""Model and autoencoder files: safetensors tensors plus string metadata, never pickle.

A model file fully describes a detector: weights, c and R as tensors; network, resize policy,
objective, hyperparameters, preprocessing and threshold as metadata. Writes are atomic (temp file +
rename). Reading checks the metadata, then every tensor's name, shape and dtype from the header,
before any tensor is loaded or any module built, so a crafted file cannot make a load allocate
more than the network bounds of `nets` allow; every problem is a ModelFileError (exit code 4).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from . import __version__
from .config import Objective, Resize
from .errors import ModelFileError
from .files import write_atomic
from .nets import AutoEncoder, Encoder, LeNetSpec, get_spec
from .preprocess import Preprocessor

FORMAT_VERSION = 2
MODEL_FORMAT = "ssd-model"
AUTOENCODER_FORMAT = "ssd-autoencoder"

# safetensors dtype names of the dtypes a state dict may hold.
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


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
    resize: Resize = Resize.SQUASH  # how images were fitted to the square input; scoring repeats it

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
    resize: Resize = Resize.SQUASH

    def autoencoder(self) -> AutoEncoder:
        ae = AutoEncoder(self.spec)
        ae.load_state_dict(self.state)
        return ae


@dataclass(frozen=True)
class _Kind:
    """What distinguishes the two kinds of file when reading them."""

    format: str
    label: str
    prefix: str  # of the module's tensors
    module: Callable[[LeNetSpec], nn.Module]
    extra: Callable[[LeNetSpec], dict[str, tuple[int, ...]]]  # further float32 tensors and their shapes


_MODEL = _Kind(MODEL_FORMAT, "model", "encoder.", Encoder, lambda spec: {"c": (spec.rep_dim,), "radius": (1,)})
_AUTOENCODER = _Kind(AUTOENCODER_FORMAT, "autoencoder", "autoencoder.", AutoEncoder, lambda spec: {})


def _common_meta(kind: str, spec: LeNetSpec, pre: Preprocessor, training: dict, resize: Resize) -> dict[str, str]:
    return {
        "format": kind,
        "format_version": str(FORMAT_VERSION),
        "tool": "ssd",
        "tool_version": __version__,
        "network": json.dumps(spec.to_dict()),
        "resize": Resize(resize).value,
        # Kept from version 1 for people and tools that read them; the loader checks they agree.
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
    meta = _common_meta(MODEL_FORMAT, m.spec, m.preprocessor, m.training, m.resize)
    meta.update(objective=m.objective.value, nu=repr(m.nu), eta=repr(m.eta), threshold=repr(m.threshold), threshold_rule=m.threshold_rule)
    write_atomic(path, safetensors_bytes(tensors, metadata=meta), force)


def save_autoencoder(path: Path, a: SavedAutoencoder, *, force: bool = False) -> None:
    meta = _common_meta(AUTOENCODER_FORMAT, a.spec, a.preprocessor, a.training, a.resize)
    write_atomic(path, safetensors_bytes(_cpu(a.state, "autoencoder."), metadata=meta), force)


# --- reading ------------------------------------------------------------------------------------


class _Damaged(Exception):
    """A problem inside a readable ssd file, reported as a damaged file."""


# What bad metadata can raise while it is parsed (json, float(), enums, LeNetSpec.from_dict).
_PROBLEMS = (_Damaged, KeyError, ValueError, TypeError, OverflowError, RecursionError)


def _network_v1(meta: dict[str, str]) -> tuple[LeNetSpec, Resize]:
    """ssd 0.1 named a registered network and its input; it always squashed images."""
    return get_spec(meta["architecture"], int(meta["channels"]), int(meta["image_size"])), Resize.SQUASH


def _network_v2(meta: dict[str, str]) -> tuple[LeNetSpec, Resize]:
    """The full network description, which needs no registry; the version-1 keys must agree with it."""
    spec = LeNetSpec.from_dict(json.loads(meta["network"]))
    for key, value in (("architecture", spec.name), ("channels", str(spec.channels)), ("image_size", str(spec.image_size))):
        if meta.get(key) != value:
            raise _Damaged(f"metadata {key} {meta.get(key)!r:.40} disagrees with the network's {value!r}")
    return spec, Resize(meta["resize"])


_NETWORK_READERS = {"1": _network_v1, "2": _network_v2}


def _expected(kind: _Kind, spec: LeNetSpec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor the file must hold; the module is built on the meta
    device, which allocates no memory."""
    with torch.device("meta"):
        state = kind.module(spec).state_dict()
    out = {kind.prefix + k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    out.update({k: (shape, torch.float32) for k, shape in kind.extra(spec).items()})
    return out


def _check_tensors(f, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    """Names, shapes and dtypes as the header states them, before any tensor is read."""
    names = set(f.keys())
    missing, extra = sorted(expected.keys() - names), sorted(names - expected.keys())
    if missing or extra:
        problems = [f"missing tensors {missing[:3]}"] * bool(missing) + [f"unexpected tensors {extra[:3]}"] * bool(extra)
        raise _Damaged(" and ".join(problems)[:200])
    for name, (shape, dtype) in expected.items():
        view = f.get_slice(name)
        found_shape, found_dtype = tuple(view.get_shape()), view.get_dtype()
        if found_shape != shape or _DTYPES.get(found_dtype) != dtype:
            raise _Damaged(f"tensor {name} is {found_dtype} {list(found_shape)}, the network needs {dtype} {list(shape)}")


def _read(path: Path, kind: _Kind) -> tuple[LeNetSpec, Resize, dict[str, str], dict[str, torch.Tensor]]:
    """The file's network, resize policy, metadata and tensors, after all the checks above."""
    if not path.is_file():
        raise ModelFileError(f"{kind.label} file '{path}' does not exist")
    try:
        f = safe_open(str(path), framework="pt")
        meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is not an ssd {kind.label} file (not a readable safetensors file: {exc})") from None
    with f:
        found = meta.get("format")
        if found != kind.format:
            what = f"an ssd '{found}' file" if found in (MODEL_FORMAT, AUTOENCODER_FORMAT) else "not written by ssd"
            raise ModelFileError(f"'{path}' is not an ssd {kind.label} file ({what})")
        version = meta.get("format_version", "")
        if version not in _NETWORK_READERS:
            raise ModelFileError(
                f"'{path}' has format version {version[:20] or '?'}, this ssd {__version__} reads versions 1 to {FORMAT_VERSION}; upgrade ssd"
            )
        try:
            spec, resize = _NETWORK_READERS[version](meta)
            _check_tensors(f, _expected(kind, spec))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (*_PROBLEMS, SafetensorError) as exc:
            raise ModelFileError(f"'{path}' is a damaged ssd {kind.label} file ({_why(exc)})") from None
    return spec, resize, meta, tensors


def _why(exc: Exception) -> str:
    text = f"no {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise _Damaged(f"{name} is {value}, not a finite number")


def _preprocessor(meta: dict[str, str]) -> Preprocessor:
    pre = Preprocessor.from_json(meta["preprocessing"])
    _finite(**{"preprocessing low": pre.low, "preprocessing high": pre.high})
    if not pre.high > pre.low:
        raise _Damaged(f"preprocessing range [{pre.low}, {pre.high}] is empty")
    return pre


def _training(meta: dict[str, str]) -> dict:
    training = json.loads(meta.get("training", "{}"))
    if not isinstance(training, dict):
        raise _Damaged("training summary is not a JSON object")
    return training


def load_model(path: Path) -> SavedModel:
    spec, resize, meta, tensors = _read(path, _MODEL)
    try:
        c = tensors["c"]
        if not bool(torch.isfinite(c).all()):
            raise _Damaged("the center c has non-finite values")
        m = SavedModel(
            spec=spec,
            objective=Objective(meta["objective"]),
            nu=float(meta["nu"]),
            eta=float(meta["eta"]),
            preprocessor=_preprocessor(meta),
            c=c,
            radius=float(tensors["radius"][0]),
            threshold=float(meta["threshold"]),
            threshold_rule=meta.get("threshold_rule", ""),
            encoder_state=_strip(tensors, _MODEL.prefix),
            training=_training(meta),
            tool_version=meta.get("tool_version", "?"),
            resize=resize,
        )
        _finite(nu=m.nu, eta=m.eta, radius=m.radius, threshold=m.threshold)
    except _PROBLEMS as exc:
        raise ModelFileError(f"'{path}' is a damaged ssd model file ({_why(exc)})") from None
    return m


def load_autoencoder(path: Path) -> SavedAutoencoder:
    spec, resize, meta, tensors = _read(path, _AUTOENCODER)
    try:
        return SavedAutoencoder(
            spec=spec,
            preprocessor=_preprocessor(meta),
            state=_strip(tensors, _AUTOENCODER.prefix),
            training=_training(meta),
            tool_version=meta.get("tool_version", "?"),
            resize=resize,
        )
    except _PROBLEMS as exc:
        raise ModelFileError(f"'{path}' is a damaged ssd autoencoder file ({_why(exc)})") from None
