"""Every ```python block of README.md runs as written (a newcomer can follow it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples_and_the_two_commands():
    text = README.read_text()
    assert len(BLOCKS) >= 5
    assert '\n    pip install -e ".[test]" && pytest\n' in text
    assert '\n    pip install -e ".[plot]" && lvmref demo\n' in text


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (README.parent / ".ci" / "run").read_text()
    assert '\npip install -e ".[test]" && pytest\n' in ci


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # blocks may write files (gmm.npz)
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {"__name__": "readme"})
