"""Section A of spec/scenarios.md: server internals and parsing.

Upstream tests these on internal objects.  Where the behaviour is visible over
9p we drive the real server (A1 through a transaction's `msg`, A7 through
`head.live`); A8 calls the server's own endpoint parser.  A2-A6 are unit
behaviours of the store and of the vfs buffers and belong to their own test
files (tests/store, tests/vfs), not to this server-side checklist.
"""

from __future__ import annotations

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client
from datakit.server.endpoints import DEFAULT_PORT, Endpoint, EndpointError, parse_endpoint
from tests.scenarios.helpers import Stream, commit_files, connect, head, tx


def test_A01_buffer_file_overwrite(client: Client) -> None:
    """Writes at offsets overwrite in place and zero-fill gaps (spec 2.3)."""
    t = tx(client)
    fid = client.open(f"{t}/msg", ninep.ORDWR)
    expected = [
        (b"hello", 0, b"hello"),
        (b"hi", 0, b"hillo"),
        (b"E", 1, b"hEllo"),
        (b"!", 5, b"hEllo!"),
        (b"!", 7, b"hEllo!\0!"),
    ]
    for data, offset, content in expected:
        assert client.write_fid(fid, data, offset) == len(data)
        assert client.read_fid(fid, 0, 1000) == content
    client.clunk(fid)
    assert client.read(f"{t}/msg") == b"hEllo!\0!"


def test_A07_stream_protocol(client: Client, server: str) -> None:
    """The stream rules of spec 2.6, on `head.live` (the cell is the branch head).

    Upstream's unit test uses an integer cell; here each "publish" is a commit
    made on a second connection, and the rendering is `<head>\\n`.
    """
    with connect(server) as writer:
        h0 = commit_files(writer, {"f": b"0"})
        live = Stream(client, "branch/master/head.live")
        assert live.line() == f"{h0}\n".encode()
        h1 = commit_files(writer, {"f": b"1"})
        assert live.line() == f"{h1}\n".encode()
        commit_files(writer, {"f": b"2"})
        h3 = commit_files(writer, {"f": b"3"})
        assert live.line() == f"{h3}\n".encode()  # 2 is skipped
        tag = live.start_read()  # blocks: nothing new
        h4 = commit_files(writer, {"f": b"4"})
        assert live.finish_read(tag) == f"{h4}\n".encode()
        assert head(writer) == h4


def test_A08_endpoint_parsing() -> None:
    """Endpoint parsing and printing, with the deliberate differences of our design.

    Like upstream: `tcp://h:p`, `tcp://h` (default port), `fd://N`, the
    `use tcp://host:port` and `invalid endpoint` errors.  Different on
    purpose (design.md): `unix://PATH` is accepted and is the canonical
    spelling of a Unix socket (`file://PATH` is still read, and prints as
    `unix://PATH`); the default port is 5640; Windows named pipes and Hyper-V
    sockets are dropped, so they are invalid endpoints here.
    """
    ep = parse_endpoint("tcp://localhost:1234", default_port=123)
    assert ep == Endpoint("tcp", host="localhost", port=1234)
    assert str(ep) == "tcp://localhost:1234"

    ep = parse_endpoint("tcp://localhost", default_port=123)
    assert ep == Endpoint("tcp", host="localhost", port=123)
    assert str(ep) == "tcp://localhost:123"
    assert DEFAULT_PORT == 5640
    assert parse_endpoint("tcp://localhost").port == 5640

    ep = parse_endpoint("file://foo/bar", default_port=123)
    assert ep == Endpoint("unix", path="foo/bar")
    assert str(ep) == "unix://foo/bar"
    assert parse_endpoint("file:///var/tmp/foo").path == "/var/tmp/foo"
    assert parse_endpoint("unix:///var/tmp/foo") == Endpoint("unix", path="/var/tmp/foo")

    ep = parse_endpoint("fd://42", default_port=123)
    assert ep == Endpoint("fd", fd=42)
    assert str(ep) == "fd://42"

    with pytest.raises(EndpointError, match="use tcp://host:port"):
        parse_endpoint("tcp://h:x", default_port=123)
    with pytest.raises(EndpointError):
        parse_endpoint("fd://x")
    for dropped in ("\\\\file\\on\\win", "hyperv-connect://test", "hyperv-accept://test", "foo"):
        with pytest.raises(EndpointError, match="invalid endpoint"):
            parse_endpoint(dropped, default_port=123)
