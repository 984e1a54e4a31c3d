"""CI-19: configuration errors name the file, the table and the key (the
command's exit status 1 is checked with the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.ci.config import ConfigError, load_config

HEAD = '[[project]]\nrepo = "me/p"\nsource = "/tmp/p"\n'


def _load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ci.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


def test_ci_19_unknown_key(tmp_path: Path) -> None:
    message = _load_error(tmp_path, HEAD + '[[project.job]]\nname = "test"\nrn = ["true"]\n')
    assert '[[project]] #1 (me/p) [[project.job]] #1 "test": unknown key "rn"' in message


def test_ci_19_missing_run(tmp_path: Path) -> None:
    message = _load_error(tmp_path, HEAD + '[[project.job]]\nname = "test"\n')
    assert '[[project]] #1 (me/p) [[project.job]] #1 "test": missing key "run"' in message


def test_ci_19_duplicate_job_name(tmp_path: Path) -> None:
    job = '[[project.job]]\nname = "test"\nrun = "true"\n'
    message = _load_error(tmp_path, HEAD + job + job)
    assert '[[project]] #1 (me/p) [[project.job]] #2 "test": key "name": duplicate' in message


def test_ci_19_needs_cycle(tmp_path: Path) -> None:
    jobs = (
        '[[project.job]]\nname = "build"\nrun = "true"\nneeds = ["test"]\n'
        '[[project.job]]\nname = "test"\nrun = "true"\nneeds = ["build"]\n'
    )
    message = _load_error(tmp_path, HEAD + jobs)
    assert '[[project]] #1 (me/p) [[project.job]] #1 "build": key "needs"' in message
    assert "cycle build -> test -> build" in message


def test_ci_19_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.toml")


def test_ci_19_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ci.toml"
    path.write_text(HEAD + '[[project.job]]\nname = "test"\nrun = "true"\n')
    config = load_config(path)
    assert config.path == str(path)
    assert [j.name for j in config.projects[0].jobs] == ["test"]


def test_relative_source_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "ci.toml"
    path.parent.mkdir()
    job = '[[project.job]]\nname = "test"\nrun = "true"\n'
    sources = ["../src/p.git", "/abs/p", "https://example.com/p.git", "git@host:p.git"]
    text = "".join(
        f'[[project]]\nrepo = "me/p{i}"\nsource = "{s}"\n{job}' for i, s in enumerate(sources)
    )
    path.write_text(text)
    got = [p.source for p in load_config(path).projects]
    assert got == [str(tmp_path / "src" / "p.git"), *sources[1:]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[project.job]]\nname = "test"\nrn = ["true"]\n', 'unknown key "rn"'),
        ('[[project.job]]\nname = "test"\n', 'missing key "run"'),
        (
            '[[project.job]]\nname = "a"\nrun = "true"\nneeds = ["b"]\n'
            '[[project.job]]\nname = "b"\nrun = "true"\nneeds = ["a"]\n',
            "cycle",
        ),
    ],
)
def test_ci_19_the_command_exits_1_naming_file_table_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    """`datakit ci` checks the file before connecting to anything: one line
    on stderr, exit status 1, no traceback (no server runs here)."""
    import subprocess
    import sys

    path = tmp_path / "ci.toml"
    path.write_text(HEAD + text)
    result = subprocess.run(
        [sys.executable, "-m", "datakit", "ci", "--config", str(path),
         "--metadata-store", "tcp:127.0.0.1:1", "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"datakit ci: {path}: [[project]] #1 (me/p) [[project.job]]")
    assert expected in line and "Traceback" not in result.stderr
