"""The documentation's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
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
    assert (tmp_path / "api_model.safetensors").is_file() and (tmp_path / "scores.csv").is_file()
    assert not (tmp_path / "sample_model.safetensors").exists()  # the README's quick start model is left alone
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == "path,score,normalised_score,anomalous,rank"


@pytest.mark.parametrize("doc", ["README.md", "docs/usage.md"])
def test_every_command_named_in_the_docs_exists(doc: str) -> None:
    from typer.main import get_command

    from ssd_cli.cli import app

    names = set(get_command(app).commands)  # type: ignore[attr-defined]
    text = (REPO / doc).read_text(encoding="utf-8")
    used = set(re.findall(r"`ssd ([a-z]+)", text))
    assert used and used <= names, used - names


def test_python_api_md_names_every_public_name_method_argument_and_setting() -> None:
    import inspect

    import ssd_cli
    from ssd_cli import Detector

    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    names = set(ssd_cli.__all__) | set(ssd_cli.FIT_SETTINGS)
    for attr, member in vars(Detector).items():
        if attr.startswith("_") and attr != "__init__":
            continue
        names.add(attr) if attr != "__init__" else None
        fn = member.__func__ if isinstance(member, classmethod) else member.fget if isinstance(member, property) else member
        if callable(fn):
            names |= {p for p in inspect.signature(fn).parameters if p not in ("self", "cls", "settings", "kwargs")}
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # names in the prose's `code`, not only in the example
    in_code = {w for span in re.findall(r"`([^`]+)`", prose) for w in re.findall(r"\w+", span)}
    missing = sorted(names - in_code)
    assert not missing, missing


def usage_sections() -> dict[str, str]:
    """docs/usage.md's text per command (the `## ...: `ssd NAME`` sections); "ssd" for the global options."""
    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = part.splitlines()[0]
        named = re.search(r"`ssd ([a-z]+)`", heading)
        key = named.group(1) if named else "ssd" if heading.startswith("Global options") else heading
        sections[key] = part
    return sections


def long_options(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--") and o != "--help"}


def test_usage_md_documents_every_option_of_every_command() -> None:
    """Each command's section of docs/usage.md names every option its --help lists, and the page
    names no option that no command has."""
    from typer.main import get_command

    from ssd_cli.cli import app

    group = get_command(app)
    commands = {"ssd": group, **group.commands}  # type: ignore[attr-defined]
    sections = usage_sections()
    missing = {
        name: sorted(o for o in long_options(cmd) if not re.search(re.escape(o) + r"(?![\w-])", sections.get(name, "")))
        for name, cmd in commands.items()
    }
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}
    known = set().union(*(long_options(c) for c in commands.values())) | {"--help"}
    named = set(re.findall(r"(?<![\w/.-])--[a-z][a-z0-9-]*[a-z0-9](?![\w*-])", "".join(sections.values())))  # `--pretrain-*` is a family
    assert named <= known, sorted(named - known)


def test_help_and_usage_md_say_the_same_where_they_disagreed() -> None:
    from typer.main import get_command

    from ssd_cli.cli import app

    helps = {(name, p.name): p.help or "" for name, cmd in get_command(app).commands.items() for p in cmd.params}  # type: ignore[attr-defined]
    sections = usage_sections()
    assert "own schedule" in helps["train", "epochs"] and "--pretrain-epochs" in helps["train", "epochs"]
    assert "at most 8" in helps["score", "workers"] and "at most 8" in sections["score"]
    assert "0" in helps["evaluate", "labels"] and "1" in helps["evaluate", "labels"]
    assert "training files" in helps["evaluate", "dataset"] and "training files" in sections["evaluate"]
