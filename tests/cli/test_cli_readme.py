"""The README's commands and example stay true, and so does docs/cli.md."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import pyhcs
from pyhcs import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HCSEMU_FAULTS", "HCSEMU_SETTINGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pyhcs.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    env["HCSEMU_SERVICE"] = "private"  # never the user's shared service from the suite
    return env


def _blocks(kind: str = "python", path: Path = README) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", path.read_text(), re.S)


def test_readme_example_is_docs_example() -> None:
    # docs/example.py is the README's first example; tests/api/test_readme_example.py runs it
    assert _blocks()[0] == (README.parent / "docs" / "example.py").read_text()


def test_readme_raw_example_runs() -> None:
    out = subprocess.run([sys.executable, "-c", _blocks()[1]], capture_output=True, text=True, timeout=120,
                         env=_env())
    assert out.returncode == 0, out.stderr
    assert "hello from the container" in out.stdout


def test_demo_command() -> None:
    out = subprocess.run([sys.executable, "-m", "pyhcs", "demo"], capture_output=True, text=True, timeout=120,
                         env=_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "process exit code: 3" in out.stdout
    assert "terminated and closed" in out.stdout


def test_run_and_info_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "pyhcs", "run", "--env", "X=42", "--", "sh", "-c", "echo $X; exit 5"],
                         capture_output=True, text=True, timeout=120, env=_env(), stdin=subprocess.DEVNULL)
    assert out.returncode == 5 and out.stdout == "42\n"
    info = subprocess.run([sys.executable, "-m", "pyhcs", "info", "--json"], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert info.returncode == 0 and '"Backend"' in info.stdout


def _command_lines(path: Path) -> list[list[str]]:
    """Every pyhcs command line of the sh blocks, comments cut, ``a|b`` alternatives and
    ``x && y`` chains expanded."""
    commands: list[list[str]] = []
    for block in _blocks("sh", path):
        for line in block.splitlines():
            line = line.split("#", 1)[0]
            for part in line.split("&&"):
                _, found, rest = part.partition("pyhcs ")
                if not found or "python -m pyhcs" in part or "import pyhcs" in part:
                    continue
                argv = shlex.split(rest)
                alternatives: list[list[str]] = [[]]
                for token in argv:
                    options = token.split("|") if re.fullmatch(r"\w+(\|\w+)+", token) else [token]
                    alternatives = [[*a, o] for a in alternatives for o in options]
                commands.extend(alternatives)
    return commands


@pytest.mark.parametrize("path", [README, CLI_DOC], ids=["README", "docs/cli.md"])
def test_documented_command_lines_parse(path: Path) -> None:
    parser = cli.build_parser()
    commands = _command_lines(path)
    assert len(commands) >= 8
    for argv in commands:
        try:
            ns = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `pyhcs {' '.join(argv)}` does not parse")
        assert ns.fn is not None, argv


def test_cli_doc_covers_every_command() -> None:
    text = CLI_DOC.read_text()
    headings = " ".join(re.findall(r"^### (.*)$", text, re.M))
    for name in cli.command_names():
        assert f"`{name}" in headings or f"{name} ID" in headings, name
    assert "docs/cli.md" in README.read_text()
