"""Every ```python block of README.md runs as pasted, in an empty directory (bash blocks are not run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK_TIMEOUT_S = 120  # a snippet simulates a few events at most; torch's import dominates
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """Return (line number of the opening fence, code) for each ```python block."""
    return [(markdown.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(markdown)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_python_blocks_are_found_and_bash_blocks_are_not():
    sample = "text\n```bash\necho hi\n```\n\n```python\nx = 1\n```\n```python\ny = 2\n```\n"
    assert python_blocks(sample) == [(6, "x = 1\n"), (9, "y = 2\n")]
    assert BLOCKS, "README.md has no ```python block (was the fence renamed?)"


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs_as_pasted(line, code, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=BLOCK_TIMEOUT_S)
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr[-3000:]}"
