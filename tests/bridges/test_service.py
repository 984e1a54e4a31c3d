"""The pieces the bridges share (datakit.bridges.service): store addresses,
the Prometheus listen flag, and the reconnecting store."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from datakit.bridges.service import (
    AddressError,
    Store,
    parse_listen,
    parse_store_address,
    run_until_signalled,
)
from datakit.client import Connection


@pytest.mark.parametrize(
    ("text", "target", "server"),
    [
        ("tcp:localhost:5640", "tcp://localhost:5640", True),
        ("tcp:datakit", "tcp://datakit:5640", True),
        ("tcp:127.0.0.1:1", "tcp://127.0.0.1:1", True),
        ("tcp:[::1]:7000", "tcp://[::1]:7000", True),
        ("tcp:[::1]", "tcp://[::1]:5640", True),
        ("tcp:::1", "tcp://[::1]:5640", True),
        ("unix:/run/dk.sock", "unix:///run/dk.sock", True),
        ("tcp://h:1", "tcp://h:1", True),
        ("tcp://h", "tcp://h", True),
        ("unix:///run/dk.sock", "unix:///run/dk.sock", True),
        ("file:///run/dk.sock", "unix:///run/dk.sock", True),
        ("git:///srv/meta.git", "/srv/meta.git", False),
    ],
)
def test_store_addresses(text: str, target: str, server: bool) -> None:
    address = parse_store_address(text)
    assert (address.target, address.server, address.text) == (target, server, text)


def test_a_plain_path_must_be_an_existing_repository(tmp_path: Path) -> None:
    """A mistyped server address ("datakit:5640") must not become a new
    repository in the working directory: only git:// creates one."""
    (tmp_path / "meta.git").mkdir()
    address = parse_store_address(str(tmp_path / "meta.git"))
    assert (address.target, address.server) == (str(tmp_path / "meta.git"), False)
    with pytest.raises(AddressError, match="no such repository"):
        parse_store_address(str(tmp_path / "datakit:5640"))


@pytest.mark.parametrize(
    "text",
    [
        "", "ftp://x", "tcp:", "tcp:h:0", "tcp:h:x", "tcp:h:70000", "git://", "file://",
        "tcp://h:99999", "tcp://h:x", "datakit:5640",
    ],
)
def test_bad_store_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_store_address(text)


def test_listen() -> None:
    assert parse_listen("9090") == ("0.0.0.0", 9090)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9") == ("::1", 9)
    for bad in ("x", "1:x", "70000", ""):
        with pytest.raises(ValueError):
            parse_listen(bad)


async def test_store_runs_on_a_repository(tmp_path: Path) -> None:
    """git:// (no server): the Git backend, through the same Store."""
    store = Store(parse_store_address(f"git://{tmp_path}/meta.git"))
    store.connect_now()
    try:

        def write(conn: Connection) -> str:
            with conn.branch("github-metadata").transaction() as t:
                t.create_file("a", b"1")
                t.commit("m")
            head = conn.branch("github-metadata").head()
            assert head is not None
            return head.message

        assert await store.run(write) == "m\n"
    finally:
        store.close()


async def test_store_retries_until_the_database_is_back() -> None:
    """A transport error drops the connection and retries with back-off."""
    store = Store(parse_store_address("unix:///nonexistent/dk.sock"), initial_delay=0.01)
    calls: list[int] = []

    class Fake:
        def close(self) -> None:
            pass

    connects = 0

    def fake_connect() -> Fake:
        nonlocal connects
        connects += 1
        if connects < 3:
            raise ConnectionRefusedError("refused")
        return Fake()

    store._connect = fake_connect  # type: ignore[assignment,method-assign]

    def fn(conn: object) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise BrokenPipeError("gone")
        return "done"

    assert await store.run(fn) == "done"  # type: ignore[arg-type]
    assert connects == 4  # two refusals, a connection, its loss, a new one
    assert len(calls) == 2


async def test_run_until_signalled_returns_when_main_ends() -> None:
    async def main() -> None:
        await trio.sleep(0)

    assert await run_until_signalled(main) == 0


def test_bridges_are_clients_only() -> None:
    """design.md: applications use datakit.client (never the store, the
    filesystem or the server); the HTTP piece of the metrics is shared."""
    import ast

    allowed = (
        "datakit.client",
        "datakit.github",
        "datakit.bridges",
        "datakit.metrics_http",
        "datakit.options",  # a leaf: log levels and option types every command shares
    )
    root = Path(__file__).parents[2] / "datakit" / "bridges"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.startswith("datakit"):
                    assert name.startswith(allowed) or name == "datakit", (path, name)
