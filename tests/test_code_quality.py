"""The repository stays ruff-clean and type-checks (the config lives in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "datakit", "tests", "bench", "fuzz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_do_not_reach_up() -> None:
    """design.md: ninep imports nothing of ours; store imports neither trio nor 9p."""

    def imports(package: str) -> str:
        return "\n".join(
            line
            for path in (ROOT / "datakit" / package).rglob("*.py")
            for line in path.read_text().splitlines()
            if line.lstrip().startswith(("import ", "from "))
        )

    ninep = imports("ninep")
    assert "datakit." not in ninep.replace("datakit.ninep", "")
    store = imports("store")
    for forbidden in ("trio", "datakit.ninep", "datakit.server", "datakit.vfs", "datakit.fs"):
        assert forbidden not in store, forbidden
    client = imports("client")
    assert "datakit.server" not in client and "datakit.fs" not in client
