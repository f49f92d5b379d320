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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ssd_cli import __version__
from ssd_cli.core.config import Objective, Resize
from ssd_cli.errors import ModelFileError, TrainingDiverged
from ssd_cli.io.files import write_atomic
from ssd_cli.core.model import SavedAutoencoder, SavedModel
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec, get_spec
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.tiles import TileSpec
from ssd_cli.core.preprocess import Preprocessor

FORMAT_VERSION = 4
MODEL_FORMAT = "ssd-model"
AUTOENCODER_FORMAT = "ssd-autoencoder"

# safetensors dtype names of the dtypes a state dict may hold.
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def _common_meta(kind: str, saved: SavedModel | SavedAutoencoder) -> dict[str, str]:
    spec, pre, patch, tile = saved.spec, saved.preprocessor, saved.patch, saved.tile
    return {
        **({"patch": json.dumps(patch.to_dict())} if patch is not None else {}),
        **({"tile": json.dumps(tile.to_dict())} if tile is not None else {}),
        "format": kind,
        "format_version": str(FORMAT_VERSION),
        "tool": "ssd",
        "tool_version": __version__,
        "network": json.dumps(spec.to_dict()),
        "resize": Resize(saved.resize).value,
        # Kept from version 1 for people and tools that read them; the loader checks they agree.
        "architecture": spec.name,
        "channels": str(spec.channels),
        "image_size": str(spec.image_size),
        "preprocessing": pre.to_json(),
        "training": json.dumps(saved.training),
    }


def _cpu(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_model(path: Path, m: SavedModel, *, force: bool = False) -> None:
    tensors = _cpu(m.encoder_state, "encoder.")
    tensors["c"] = m.c.detach().to("cpu", torch.float32).contiguous()
    tensors["radius"] = torch.tensor([m.radius], dtype=torch.float32)
    _refuse_non_finite(tensors, threshold=m.threshold, nu=m.nu, eta=m.eta, preprocessing_low=m.preprocessor.low, preprocessing_high=m.preprocessor.high)
    meta = _common_meta(MODEL_FORMAT, m)
    meta.update(objective=m.objective.value, nu=repr(m.nu), eta=repr(m.eta), threshold=repr(m.threshold), threshold_rule=m.threshold_rule)
    write_atomic(path, safetensors_bytes(tensors, metadata=meta), force)


def save_autoencoder(path: Path, a: SavedAutoencoder, *, force: bool = False) -> None:
    tensors = _cpu(a.state, "autoencoder.")
    _refuse_non_finite(tensors, preprocessing_low=a.preprocessor.low, preprocessing_high=a.preprocessor.high)
    meta = _common_meta(AUTOENCODER_FORMAT, a)
    write_atomic(path, safetensors_bytes(tensors, metadata=meta), force)


def _refuse_non_finite(tensors: dict[str, torch.Tensor], **numbers: float) -> None:
    """A model with NaN or infinite numbers would score every image as normal: never write one."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    bad += [k for k, v in numbers.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"training diverged: {bad[0]} is not finite (NaN or infinity); nothing was written. Try a lower --lr or autoencoder pretraining")


# --- reading ------------------------------------------------------------------------------------


class _Damaged(Exception):
    """A problem inside a readable ssd file, reported as a damaged file."""


# What bad metadata can raise while it is parsed (json, float(), enums, LeNetSpec.from_dict).
_PROBLEMS = (_Damaged, KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError, RecursionError)


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


# 3: the network names its decoder; 4: tiled models (`tile`), which older readers would score untiled
_NETWORK_READERS = {"1": _network_v1, "2": _network_v2, "3": _network_v2, "4": _network_v2}


def _patch(meta: dict[str, str], spec: LeNetSpec) -> PatchSpec | None:
    """The patch grid of a patch-level model (absent for whole-image models); phi must take its patches."""
    if "patch" not in meta:
        return None
    patch = PatchSpec.from_dict(json.loads(meta["patch"]))
    if patch.patch_size != spec.image_size:
        raise _Damaged(f"patches of {patch.patch_size} px do not fit the network's {spec.image_size} px input")
    return patch


def _tile(meta: dict[str, str], patch: PatchSpec | None) -> TileSpec | None:
    """The tile geometry of a tiled model (absent otherwise); its tiles are the patch model's images."""
    if "tile" not in meta:
        return None
    tile = TileSpec.from_dict(json.loads(meta["tile"]))
    if patch is None or tile.tile_size != patch.image_size:
        raise _Damaged(f"tiles of {tile.tile_size} px need a patch-level model on {tile.tile_size} px images")
    return tile


def _finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise _Damaged(f"{name.replace('_', ' ')} is {value}, not a finite number")


def _common_fields(meta: dict[str, str]) -> dict:
    pre = Preprocessor.from_json(meta["preprocessing"])
    _finite(preprocessing_low=pre.low, preprocessing_high=pre.high)
    if not pre.high > pre.low:
        raise _Damaged(f"preprocessing range [{pre.low}, {pre.high}] is empty")
    training = json.loads(meta.get("training", "{}"))
    if not isinstance(training, dict):
        raise _Damaged("training summary is not a JSON object")
    return {"preprocessor": pre, "training": training, "tool_version": meta.get("tool_version", "?")}


def _model_fields(meta: dict[str, str]) -> dict:
    nu, eta, threshold = float(meta["nu"]), float(meta["eta"]), float(meta["threshold"])
    _finite(nu=nu, eta=eta, threshold=threshold)
    rule = meta.get("threshold_rule", "")
    return {"objective": Objective(meta["objective"]), "nu": nu, "eta": eta, "threshold": threshold, "threshold_rule": rule}


@dataclass(frozen=True)
class _Kind:
    """What distinguishes the two kinds of file when reading them."""

    format: str
    label: str
    prefix: str  # of the module's tensors
    module: Callable[[LeNetSpec], nn.Module]
    extra: Callable[[LeNetSpec], dict[str, tuple[int, ...]]]  # further float32 tensors and their shapes
    fields: Callable[[dict[str, str]], dict]  # the kind's own metadata, parsed and checked


_MODEL = _Kind(MODEL_FORMAT, "model", "encoder.", Encoder, lambda spec: {"c": (spec.rep_dim,), "radius": (1,)}, _model_fields)
_AUTOENCODER = _Kind(AUTOENCODER_FORMAT, "autoencoder", "autoencoder.", AutoEncoder, lambda spec: {}, lambda meta: {})


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


def _why(exc: Exception) -> str:
    text = f"no {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _read(path: Path, kind: _Kind) -> tuple[dict, dict[str, torch.Tensor]]:
    """The file's metadata as constructor fields, and its tensors: all metadata is parsed and every
    tensor's name, shape and dtype checked before a single tensor is read."""
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
            patch = _patch(meta, spec)
            fields = {"spec": spec, "resize": resize, "patch": patch, "tile": _tile(meta, patch), **_common_fields(meta), **kind.fields(meta)}
            _check_tensors(f, _expected(kind, spec))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            bad = sorted(k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
            if bad:
                raise _Damaged(f"tensor {bad[0]} is not finite (it holds NaN or infinity)")
        except (*_PROBLEMS, SafetensorError) as exc:
            raise ModelFileError(f"'{path}' is a damaged ssd {kind.label} file ({_why(exc)})") from None
    return fields, tensors


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_model(path: Path) -> SavedModel:
    fields, tensors = _read(path, _MODEL)
    c, radius = tensors["c"], float(tensors["radius"][0])  # both checked finite by _read
    return SavedModel(c=c, radius=radius, encoder_state=_strip(tensors, _MODEL.prefix), **fields)


def load_autoencoder(path: Path) -> SavedAutoencoder:
    fields, tensors = _read(path, _AUTOENCODER)
    return SavedAutoencoder(state=_strip(tensors, _AUTOENCODER.prefix), **fields)


def load_any(path: Path) -> SavedModel | SavedAutoencoder:
    """A model or an autoencoder file, told apart by its format entry (`ssd info` reads both)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            found = (f.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError):
        found = None  # load_model says what is wrong with it
    return load_autoencoder(path) if found == AUTOENCODER_FORMAT else load_model(path)
