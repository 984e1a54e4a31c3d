"""ANSI logs to HTML (datakit.ci.web.ansi): colours become spans, all text
is escaped, other escapes and junk bytes never break the page, and a live
stream split anywhere renders like the whole log."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from datakit.ci.web.ansi import AnsiRenderer, render


def test_colours_become_spans() -> None:
    assert render(b"\x1b[31mred\x1b[0m plain") == '<span class="ansi-fg-red">red</span> plain'
    assert render(b"\x1b[1;32mok\x1b[m") == '<span class="ansi-fg-green ansi-bold">ok</span>'
    assert render(b"\x1b[92;44mx\x1b[39mY") == (
        '<span class="ansi-fg-bright-green ansi-bg-blue">x</span>'
        '<span class="ansi-bg-blue">Y</span>'
    )


def test_extended_colours() -> None:
    assert render(b"\x1b[38;5;1mx") == '<span class="ansi-fg-red">x</span>'
    assert render(b"\x1b[38;5;196mx") == '<span style="color:#ff0000">x</span>'
    assert render(b"\x1b[48;2;1;2;3mx") == '<span style="background-color:#010203">x</span>'
    # malformed: ignored, never an error
    assert render(b"\x1b[38;5mx\x1b[38;2;999;0;0my") == "xy"


def test_html_is_escaped() -> None:
    out = render(b"<script>alert('x')</script> & \x1b[31m<b>\x1b[0m")
    assert "<script>" not in out and "<b>" not in out
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; " in out
    assert '<span class="ansi-fg-red">&lt;b&gt;</span>' in out


def test_other_escapes_and_controls_are_dropped() -> None:
    data = (
        b"\x1b[2K\x1b[1Gprogress\r\n"  # erase line, cursor column
        b"\x1b]0;window title\x07after title\n"  # OSC with BEL
        b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n"  # OSC 8 hyperlink with ST
        b"\x1b(Bcharset\x1b=\n"  # two-byte escapes
        b"bell\x07 back\x08 nul\x00 del\x7f tab\tend\n"
    )
    assert render(data) == ("progress\nafter title\nlink\ncharset\nbell back nul del tab\tend\n")


def test_junk_bytes_are_replaced_not_fatal() -> None:
    out = render(b"ok \xff\xfe\xc3 bad utf8 \xe2\x82\xac euro")
    assert out == "ok \ufffd\ufffd\ufffd bad utf8 \u20ac euro"
    # a lone ESC at the very end is dropped once the log ends
    assert render(b"tail\x1b") == "tail"


def test_split_sequences_render_like_the_whole() -> None:
    data = b"a\x1b[38;5;208mor\xe2\x82\xacnge\x1b[0m b \x1b]0;t\x1b\\c"
    whole = render(data)
    for cut in range(len(data) + 1):
        r = AnsiRenderer()
        assert _text(r.feed(data[:cut]) + r.feed(data[cut:]) + r.finish()) == _text(whole), cut
    # one byte at a time
    r = AnsiRenderer()
    parts = [r.feed(data[i : i + 1]) for i in range(len(data))]
    assert _text("".join(parts) + r.finish()) == _text(whole)
    assert "ansi-" not in whole and 'style="color:#ff8700"' in whole


def test_colour_spans_across_chunks_are_balanced() -> None:
    r = AnsiRenderer()
    first = r.feed(b"\x1b[3")
    second = r.feed(b"1mred ")
    third = r.feed(b"still red\x1b[0m plain")
    assert first == ""
    assert second == '<span class="ansi-fg-red">red </span>'
    assert third == '<span class="ansi-fg-red">still red</span> plain'


def test_unfinished_junk_escape_is_not_buffered_forever() -> None:
    r = AnsiRenderer()
    out = r.feed(b"\x1b[" + b"1;" * 2000)
    assert "1;1;" in out  # rendered as text (minus the ESC), not held back


_TAGS = re.compile(r"<span[^>]*>|</span>")


def _text(html: str) -> list[tuple[str, str]]:
    """What the reader sees: each character with the span it is in."""
    out: list[tuple[str, str]] = []
    style = ""
    pos = 0
    for m in _TAGS.finditer(html):
        out.extend((style, c) for c in html[pos : m.start()])
        style = "" if m.group() == "</span>" else m.group()
        pos = m.end()
    out.extend((style, c) for c in html[pos:])
    return out


_PIECES = [
    b"\x1b",
    b"[",
    b"]",
    b"31",
    b";",
    b"m",
    b"\x07",
    b"\\",
    b"x",
    b"<",
    b"\xe2\x82",
    b"\xac",
    b"\r\n",
]


@given(
    st.binary(max_size=200) | st.lists(st.sampled_from(_PIECES)).map(b"".join),
    st.lists(st.integers(0, 200), max_size=5),
)
def test_any_bytes_any_split_is_safe(data: bytes, cuts: list[int]) -> None:
    r = AnsiRenderer()
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    out = "".join(r.feed(data[a:b]) for a, b in itertools.pairwise(points))
    out += r.finish()
    # never markup other than our spans, never a raw control or ESC
    assert "<" not in _TAGS.sub("", out)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out)
    assert out.count("<span") == out.count("</span>")
    # and a stream split anywhere reads like the whole log
    assert _text(out) == _text(render(data))
