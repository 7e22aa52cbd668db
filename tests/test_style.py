"""The house style that a tool can check: ruff (pyproject.toml's rules, 100 columns) over the
package, the tests and the benchmarks, so CI fails on a line that `ruff check` refuses."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_the_code():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "planet", "tests",
                          "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "All checks passed" in run.stdout
