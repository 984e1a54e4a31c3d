"""Version negotiation: the dialect, the msize, the reply, the decoder, the state."""

from __future__ import annotations

import pytest

from datakit.ninep import (
    NOTAG,
    Decoder,
    Dialect,
    MessageTooLarge,
    Rerror,
    Rversion,
    Tattach,
    Tversion,
    encode,
)
from datakit.ninep.handshake import (
    INITIAL,
    MIN_MSIZE,
    UNKNOWN,
    ServerHandshake,
    Settings,
    State,
    VersionRefused,
    accept,
    dialect_for,
    negotiate,
    version_request,
)

MAX = 1 << 20


@pytest.mark.parametrize(
    ("asked", "dialect"),
    [
        ("9P2000", Dialect.V2000),
        ("9P2000.u", Dialect.U),
        ("9P2000.L", Dialect.L),
        ("9P2000.e", Dialect.V2000),  # any other 9P... is plain 9P2000
        ("9P", Dialect.V2000),
        ("9p2000.L", None),  # the case matters: "9p" is not 9P
        ("9P2000.l", Dialect.V2000),
        ("HTTP/1.1", None),
        ("", None),
    ],
)
def test_dialect_for_each_version_string(asked: str, dialect: Dialect | None) -> None:
    assert dialect_for(asked) is dialect


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        (8192, 8192),
        (MAX, MAX),
        (MAX + 1, MAX),  # the server's limit
        (64 << 20, MAX),
        (MIN_MSIZE, MIN_MSIZE),
        (100, MIN_MSIZE),  # never below the minimum an error reply needs
        (0, MIN_MSIZE),
    ],
)
def test_msize_is_the_smaller_limit_but_at_least_the_minimum(asked: int, granted: int) -> None:
    settings = negotiate(Tversion(NOTAG, asked, "9P2000.u"), MAX)
    assert settings == Settings(Dialect.U, granted)


def test_server_answers_each_dialect_and_sets_its_decoder() -> None:
    for version, dialect in [("9P2000", Dialect.V2000), ("9P2000.u", Dialect.U),
                             ("9P2000.L", Dialect.L), ("9P2000.x", Dialect.V2000)]:  # fmt: skip
        decoder = Decoder()
        server = ServerHandshake(decoder, MAX)
        assert server.state is State.AWAITING_VERSION
        assert decoder.max_size == MAX  # a Tversion may come in a large frame
        reply = server.version(Tversion(NOTAG, 65536, version))
        assert reply == Rversion(NOTAG, 65536, dialect.value)
        assert server.state is State.AWAITING_ATTACH
        assert server.settings == Settings(dialect, 65536)
        assert (decoder.dialect, decoder.max_size) == (dialect, 65536)


def test_an_unknown_version_is_answered_unknown_and_closes() -> None:
    decoder = Decoder()
    server = ServerHandshake(decoder, MAX)
    reply = server.version(Tversion(7, 8192, "HTTP/1.1"))
    assert reply == Rversion(7, 8192, UNKNOWN)
    assert server.state is State.CLOSING
    assert server.settings == INITIAL  # nothing was agreed


def test_the_decoder_refuses_frames_over_the_negotiated_msize() -> None:
    decoder = Decoder()
    ServerHandshake(decoder, MAX).version(Tversion(NOTAG, 300, "9P2000"))
    decoder.feed((301).to_bytes(4, "little"))
    with pytest.raises(MessageTooLarge):
        decoder.next_message()


def test_a_second_version_starts_a_new_session() -> None:
    """version(5): Tversion aborts the session in progress and starts anew,
    in the dialect and msize it negotiates (the caller clunks the fids)."""
    decoder = Decoder()
    server = ServerHandshake(decoder, MAX)
    server.version(Tversion(NOTAG, 8192, "9P2000.u"))
    server.attached()
    assert server.state is State.READY
    reply = server.version(Tversion(NOTAG, 16384, "9P2000.L"))
    assert reply == Rversion(NOTAG, 16384, "9P2000.L")
    assert server.state is State.AWAITING_ATTACH
    assert server.settings == Settings(Dialect.L, 16384)
    attach = Tattach(1, 0, 0xFFFFFFFF, "u", "", 7)
    decoder.feed(encode(attach, Dialect.L))  # .L layout of Tattach
    assert decoder.next_message() == attach


def test_attached_only_moves_on_from_awaiting_attach() -> None:
    server = ServerHandshake(Decoder(), MAX)
    server.attached()
    assert server.state is State.AWAITING_VERSION
    server.close()
    server.attached()
    assert server.state is State.CLOSING


def test_client_accepts_what_the_server_grants() -> None:
    request = version_request(65536, "9P2000.L")
    assert request == Tversion(NOTAG, 65536, "9P2000.L")
    assert accept(request, Rversion(NOTAG, 8192, "9P2000.L")) == Settings(Dialect.L, 8192)
    # A server that does not speak .L may offer plain 9P2000.
    assert accept(request, Rversion(NOTAG, 65536, "9P2000")) == Settings(Dialect.V2000, 65536)


@pytest.mark.parametrize(
    "reply",
    [
        Rversion(NOTAG, 8192, UNKNOWN),
        Rversion(NOTAG, 8192, "9P2000.x"),  # a server answers with a dialect, not a wish
        Rversion(NOTAG, 65537, "9P2000.u"),  # more than the client accepts
        Rversion(NOTAG, MIN_MSIZE - 1, "9P2000.u"),
        Rversion(1, 8192, "9P2000.u"),  # not the answer to our Tversion
        Rerror(NOTAG, "Expected Version message"),
    ],
)
def test_client_refuses_a_reply_it_cannot_use(reply: object) -> None:
    with pytest.raises(VersionRefused):
        accept(version_request(65536, "9P2000.u"), reply)


def test_client_cannot_ask_below_the_minimum() -> None:
    with pytest.raises(ValueError):
        version_request(MIN_MSIZE - 1, "9P2000")


def test_both_ends_agree() -> None:
    """The server's settings are the client's once it accepts the reply."""
    for asked in (100_000, MAX * 2, MIN_MSIZE):
        for version in ("9P2000", "9P2000.u", "9P2000.L"):
            request = version_request(asked, version)
            server = ServerHandshake(Decoder(), MAX)
            client_decoder = Decoder()
            settings = accept(request, server.version(request))
            settings.apply(client_decoder)
            assert settings == server.settings
            assert (client_decoder.dialect, client_decoder.max_size) == (
                server.decoder.dialect,
                server.decoder.max_size,
            )
