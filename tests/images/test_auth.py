"""Credentials from auth.json / docker config.json files (spec C.4 step 5)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from datakit.images.auth import AuthFileError, Credentials, find_credentials


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, auths: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return str(path)


@pytest.fixture
def no_default_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and runtime dir, no $REGISTRY_AUTH_FILE."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return home


def test_explicit_file_auth_and_username_password(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.json",
        {
            "127.0.0.1:5000": {"auth": b64("alice:pa:ss")},
            "reg.example.com": {"username": "bob", "password": "pw"},
            "https://index.docker.io/v1/": {"auth": b64("hub:hpw")},
            "https://other.example.com/v2/": {"auth": b64("carol:c")},
            "helper.example.com": {},  # a credential-helper entry: skipped
        },
    )
    assert find_credentials("127.0.0.1:5000", f) == Credentials("alice", "pa:ss")
    assert find_credentials("reg.example.com", f) == Credentials("bob", "pw")
    assert find_credentials("docker.io", f) == Credentials("hub", "hpw")
    assert find_credentials("other.example.com", f) == Credentials("carol", "c")
    assert find_credentials("helper.example.com", f) is None
    assert find_credentials("127.0.0.1:5001", f) is None
    assert "pa:ss" not in repr(find_credentials("127.0.0.1:5000", f))


def test_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match=r"auth file .*missing\.json: no such file"):
        find_credentials("h.io", str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', '"auths" is not an object'),
        ('{"auths": {"h.io": 3}}', "entry 'h.io' is not an object"),
        ('{"auths": {"h.io": {"auth": "%%%"}}}', "not base64"),
        (
            json.dumps({"auths": {"h.io": {"auth": b64("nocolon")}}}),
            'does not decode to "user:password"',
        ),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: str, complaint: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(AuthFileError) as info:
        find_credentials("h.io", str(f))
    message = str(info.value)
    assert str(f) in message and complaint in message and "\n" not in message


def test_default_files_in_order(
    tmp_path: Path, no_default_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_credentials("h.io") is None
    write(
        no_default_files / ".docker" / "config.json",
        {"h.io": {"auth": b64("docker:1")}, "g.io": {"auth": b64("docker:g")}},
    )
    assert find_credentials("h.io") == Credentials("docker", "1")
    write(tmp_path / "run" / "containers" / "auth.json", {"h.io": {"auth": b64("podman:2")}})
    assert find_credentials("h.io") == Credentials("podman", "2")
    env_file = write(tmp_path / "env.json", {"h.io": {"auth": b64("env:3")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", env_file)
    assert find_credentials("h.io") == Credentials("env", "3")
    # A file without an entry for the registry does not hide later ones.
    assert find_credentials("g.io") == Credentials("docker", "g")
    # An explicit file is the only one consulted.
    only = write(tmp_path / "only.json", {})
    assert find_credentials("h.io", only) is None


def test_malformed_default_file_is_an_error(tmp_path: Path, no_default_files: Path) -> None:
    bad = no_default_files / ".docker" / "config.json"
    bad.parent.mkdir()
    bad.write_text("not json")
    with pytest.raises(AuthFileError, match=r"config\.json: not JSON"):
        find_credentials("h.io")
