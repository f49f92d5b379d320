"""The documentation's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)


def test_python_api_example_runs_as_written(tmp_path: Path, monkeypatch, capsys, sample_dir: Path) -> None:
    """docs/python-api.md's example, from a folder laid out as the repository root."""
    blocks = python_blocks(REPO / "docs" / "python-api.md")
    example = max(blocks, key=len)
    (tmp_path / "sample_data").symlink_to(sample_dir)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/python-api.md", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert re.search(r"^\d+ of 100 flagged; threshold", out, flags=re.M)
    assert re.search(r"^\[ ?(True|False) +(True|False)\]$", out, flags=re.M)  # predict on two in-memory copies
    auroc = float(re.search(r"^AUROC (\S+)", out, flags=re.M).group(1))
    assert auroc > 0.8
    assert "F1-best threshold" in out and "recall >= 0.95 threshold" in out
    assert (tmp_path / "sample_model.safetensors").is_file() and (tmp_path / "scores.csv").is_file()
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == "path,score,normalised_score,anomalous,rank"


@pytest.mark.parametrize("doc", ["README.md", "docs/usage.md"])
def test_every_command_named_in_the_docs_exists(doc: str) -> None:
    from typer.main import get_command

    from ssd_cli.cli import app

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    text = (REPO / doc).read_text(encoding="utf-8")
    used = set(re.findall(r"`ssd ([a-z]+)", text))
    assert used and used <= names, used - names
