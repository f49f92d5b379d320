"""Random mutations of a valid model file's header, metadata and tensor bytes: loading must end in a
model or a ModelFileError (exit 4), never an internal error, a traceback or a big allocation."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from ssd_cli.errors import ExitCode, ModelFileError
from ssd_cli.io.modelfile import load_any, save_autoencoder, save_model

from conftest import ssd

N_MUTATIONS = 300

ODD_VALUES = ["", "nan", "inf", "-1", "0", "1e308", "-1e308", "[]", "{}", "null", "true", '"x"', "[1, 2]", '{"a": 1}', "1" * 400,
              "\u00e9\u0000", "9" * 30, "-0", "1.5", '{"kind": "gcn", "low": "nan", "high": 1}', '{"name": "mnist", "channels": 99999}']  # fmt: skip


def split(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def mutate(data: bytes, rng: random.Random) -> bytes:
    header, body = split(data)
    kind = rng.randrange(8)
    meta = header.get("__metadata__", {})
    tensors = [k for k in header if k != "__metadata__"]
    if kind == 0:  # a metadata value replaced
        key = rng.choice(sorted(meta))
        meta[key] = rng.choice(ODD_VALUES)
    elif kind == 1:  # a metadata key removed
        meta.pop(rng.choice(sorted(meta)))
    elif kind == 2:  # inside a JSON metadata value: one number changed
        key = rng.choice([k for k in ("network", "preprocessing", "patch", "tile", "training") if k in meta])
        text = meta[key]
        digits = [i for i, ch in enumerate(text) if ch.isdigit()]
        if digits:
            i = rng.choice(digits)
            meta[key] = text[:i] + rng.choice(["0", "-", "99999999", "nan", "1e9", "'"]) + text[i + 1 :]
    elif kind == 3:  # a tensor's shape
        name = rng.choice(tensors)
        shape = header[name]["shape"]
        header[name]["shape"] = [rng.choice([0, 1, 3, 10**6, 2**31]) for _ in shape] or [rng.choice([0, 7])]
    elif kind == 4:  # a tensor's dtype
        header[rng.choice(tensors)]["dtype"] = rng.choice(["F16", "I64", "U8", "BOOL", "F64", "XX"])
    elif kind == 5:  # a tensor's offsets
        name = rng.choice(tensors)
        a, b = header[name]["data_offsets"]
        header[name]["data_offsets"] = rng.choice([[b, a], [a, a], [a, b + 10**9], [0, 4]])
    elif kind == 6:  # random bytes in the tensor data (NaN and infinities among them)
        body = bytearray(body)
        for _ in range(rng.randint(1, 20)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        body = bytes(body)
    else:  # cut short, or raw bytes of the header flipped
        raw = join(header, body)
        if rng.random() < 0.5:
            return raw[: rng.randrange(len(raw))]
        raw = bytearray(raw)
        raw[rng.randrange(8, min(len(raw), 2000))] = rng.randrange(256)
        return bytes(raw)
    if meta:
        header["__metadata__"] = meta
    return join(header, body)


@pytest.fixture(scope="module")
def valid_files(sample_model, tmp_path_factory) -> list[bytes]:
    from ssd_cli.core.model import SavedAutoencoder
    from ssd_cli.core.nets import AutoEncoder

    folder = tmp_path_factory.mktemp("fuzz")
    save_model(folder / "m.safetensors", sample_model)
    ae = SavedAutoencoder(sample_model.spec, sample_model.preprocessor, AutoEncoder(sample_model.spec).state_dict())
    save_autoencoder(folder / "a.safetensors", ae)
    return [(folder / "m.safetensors").read_bytes(), (folder / "a.safetensors").read_bytes()]


@pytest.mark.slow
def test_mutated_model_files_load_or_are_refused(valid_files: list[bytes], tmp_path: Path) -> None:
    rng = random.Random(0)
    path = tmp_path / "mutated.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(N_MUTATIONS):
        data = mutate(valid_files[i % 2], rng)
        path.write_bytes(data)
        try:
            load_any(path)
            outcomes["loaded"] += 1
        except ModelFileError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
        if i % 10 == 0:  # and through the command line, every tenth
            result = ssd("info", path)
            assert result.exit_code in (ExitCode.OK, ExitCode.BAD_MODEL), f"mutation {i}: exit {result.exit_code}\n{result.output}"
            assert "Traceback" not in result.output and "internal error" not in result.output
    assert outcomes["refused"] > N_MUTATIONS // 2  # most mutations break the file; the test must see them


@pytest.mark.parametrize(
    "training",
    [
        {"labeled_at_threshold": {"n_anomalous": 3}, "final_loss": "x"},  # found by the fuzz test: a part of the record
        {"labeled_at_threshold": [1, 2], "final_loss": [1]},
        {"labeled_at_threshold": {"n_anomalous": "3", "anomalous_above": 1, "n_normal": 0, "normal_below": 0}},
        {"calibration": {"held_out_anomalies": {"n_normal": 50, "n_anomalous": 5, "normal_above": 1, "anomalous_above": 2, "auroc": "0.9"}}},
        {"calibration": [1], "final_loss": None},
    ],
)
def test_info_shows_a_model_whose_training_record_is_odd(training: dict, valid_files: list[bytes], tmp_path: Path) -> None:
    """The training record is free-form information: odd entries are left out of `ssd info`, never a crash."""
    header, body = split(valid_files[0])
    header["__metadata__"]["training"] = json.dumps(training)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(join(header, body))
    result = ssd("info", path)
    assert result.exit_code == ExitCode.OK, result.output
    assert "labeled at threshold" not in result.output and "held-out check" not in result.output and "final loss" in result.output
    assert "None" not in result.output  # entries the record lacks are shown as n/a
