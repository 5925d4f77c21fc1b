"""The source tree is ruff-clean (ruff is a test dependency)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    try:
        proc = subprocess.run(
            [*cmd, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT
        )
    except FileNotFoundError:  # pragma: no cover
        pytest.fail("ruff is not installed; it is part of the [test] extra")
    assert proc.returncode == 0, proc.stdout + proc.stderr
