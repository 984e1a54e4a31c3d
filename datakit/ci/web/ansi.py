"""Job logs as HTML: ANSI SGR colours become ``<span class="ansi-…">``,
everything else is HTML-escaped, other escape sequences and control
characters are dropped.

Jobs print whatever they like (binary junk included), so nothing here may
fail: bytes are decoded as UTF-8 with ``errors="replace"``. The renderer is
incremental because the live log page streams chunks as a job writes them,
and a chunk boundary may fall inside a UTF-8 character or an escape
sequence; both are held back until the next chunk (or :meth:`finish`).
Each :meth:`AnsiRenderer.feed` result is balanced HTML (an open colour span
is closed at its end and reopened by the next one), so chunks can be
written to a response one by one.
"""

from __future__ import annotations

import codecs
import functools
import html
import re
from dataclasses import dataclass, replace

COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")

# One token: an escape sequence or a control character to drop. CSI (ESC [
# params intermediates final) first, so SGR can be read from it; then OSC
# (ESC ] ... BEL or ESC \, e.g. terminal titles); then any other two-byte
# escape (ESC ( B, ESC =, ...); then lone controls (a lone ESC included),
# keeping only \t and \n. \r is dropped: "\r\n" reads as "\n" and progress
# bars run on one line. C1 controls (U+0080-U+009F) are dropped too.
_TOKEN = re.compile(
    r"\x1b\[([0-?]*)([ -/]*)([@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)

# An escape sequence that may still be completed by the next chunk.
_PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")

# Longest unfinished sequence held back; a longer one is junk and is
# rendered (minus its ESC) rather than buffered forever.
_MAX_PENDING = 1024


@dataclass(frozen=True, slots=True)
class _Style:
    """The SGR state that matters for display. ``fg``/``bg`` are a class
    suffix (``red``, ``bright-red``) or a ``#rrggbb`` colour."""

    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    faint: bool = False
    italic: bool = False
    underline: bool = False

    def open_tag(self) -> str:
        if self == _DEFAULT:
            return ""
        classes: list[str] = []
        styles: list[str] = []
        for kind, colour in (("fg", self.fg), ("bg", self.bg)):
            if colour is None:
                continue
            if colour.startswith("#"):
                styles.append(f"{'color' if kind == 'fg' else 'background-color'}:{colour}")
            else:
                classes.append(f"ansi-{kind}-{colour}")
        for flag in ("bold", "faint", "italic", "underline"):
            if getattr(self, flag):
                classes.append(f"ansi-{flag}")
        attrs = f' class="{" ".join(classes)}"' if classes else ""
        if styles:
            attrs += f' style="{";".join(styles)}"'
        return f"<span{attrs}>"


_DEFAULT = _Style()


def _palette256(n: int) -> str:
    """xterm's 256-colour palette: 0-15 the named colours, 16-231 a 6x6x6
    cube, 232-255 greys."""
    if n < 8:
        return COLOURS[n]
    if n < 16:
        return f"bright-{COLOURS[n - 8]}"
    if n < 232:
        n -= 16
        levels = [0 if v == 0 else 55 + 40 * v for v in (n // 36, (n // 6) % 6, n % 6)]
        return "#{:02x}{:02x}{:02x}".format(*levels)
    grey = 8 + 10 * (n - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"


def _extended(params: list[int], i: int) -> tuple[str | None, int]:
    """The colour of ``38;5;n`` / ``38;2;r;g;b`` starting after the 38/48 at
    ``params[i]``; returns (colour or None when malformed, next index)."""
    if i + 1 < len(params) and params[i + 1] == 5 and i + 2 < len(params):
        n = params[i + 2]
        return (_palette256(n) if 0 <= n <= 255 else None), i + 3
    if i + 1 < len(params) and params[i + 1] == 2 and i + 4 < len(params):
        rgb = params[i + 2 : i + 5]
        if all(0 <= v <= 255 for v in rgb):
            return "#{:02x}{:02x}{:02x}".format(*rgb), i + 5
        return None, i + 5
    return None, len(params)


def apply_sgr(style: _Style, text: str) -> _Style:
    """The style after ``ESC [ text m``. Unknown codes are ignored."""
    try:
        params = [int(p) if p else 0 for p in re.split(r"[;:]", text)] if text else [0]
    except ValueError:  # "<", "=", ">", "?" private parameters: not colours
        return style
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            style = _DEFAULT
        elif p == 1:
            style = replace(style, bold=True)
        elif p == 2:
            style = replace(style, faint=True)
        elif p == 3:
            style = replace(style, italic=True)
        elif p == 4:
            style = replace(style, underline=True)
        elif p == 22:
            style = replace(style, bold=False, faint=False)
        elif p == 23:
            style = replace(style, italic=False)
        elif p == 24:
            style = replace(style, underline=False)
        elif 30 <= p <= 37:
            style = replace(style, fg=COLOURS[p - 30])
        elif 90 <= p <= 97:
            style = replace(style, fg=f"bright-{COLOURS[p - 90]}")
        elif 40 <= p <= 47:
            style = replace(style, bg=COLOURS[p - 40])
        elif 100 <= p <= 107:
            style = replace(style, bg=f"bright-{COLOURS[p - 100]}")
        elif p == 39:
            style = replace(style, fg=None)
        elif p == 49:
            style = replace(style, bg=None)
        elif p in (38, 48):
            colour, i = _extended(params, i)
            if colour is not None:
                style = replace(style, fg=colour) if p == 38 else replace(style, bg=colour)
            continue
        i += 1
    return style


class AnsiRenderer:
    """Feed it log bytes, get HTML back. One renderer per log (it carries
    the colour state and any unfinished character or escape sequence)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._style = _DEFAULT

    def feed(self, data: bytes) -> str:
        """HTML for ``data``; an unfinished sequence at its end waits for
        the next call."""
        return self._render(self._decoder.decode(data), final=False)

    def finish(self) -> str:
        """HTML for whatever was held back (the log has ended)."""
        return self._render(self._decoder.decode(b"", final=True), final=True)

    def _render(self, text: str, *, final: bool) -> str:
        text = self._pending + text
        self._pending = ""
        if not final:
            cut = _partial_start(text)
            if cut is not None:
                text, self._pending = text[:cut], text[cut:]
        # A span is opened lazily, before the first text in a non-default
        # style, so style changes with no text between them leave nothing.
        out: list[str] = []
        style = self._style
        opened = False
        escape = html.escape
        pos = 0
        for m in _TOKEN.finditer(text):
            start = m.start()
            if start > pos:
                if not opened and style is not _DEFAULT:
                    out.append(_open_tag(style))
                    opened = True
                out.append(escape(text[pos:start], quote=False))
            pos = m.end()
            if m.group(3) == "m" and not m.group(2):
                new = _apply_cached(style, m.group(1))
                if new != style:
                    if opened:
                        out.append("</span>")
                        opened = False
                    style = new
        if pos < len(text):
            if not opened and style is not _DEFAULT:
                out.append(_open_tag(style))
                opened = True
            out.append(escape(text[pos:], quote=False))
        if opened:
            out.append("</span>")
        self._style = style
        return "".join(out)


@functools.lru_cache(maxsize=4096)
def _apply_cached(style: _Style, params: str) -> _Style:
    """:func:`apply_sgr`, remembered: logs repeat a handful of codes. The
    default style is returned as the one ``_DEFAULT`` object."""
    new = apply_sgr(style, params)
    return _DEFAULT if new == _DEFAULT else new


@functools.lru_cache(maxsize=4096)
def _open_tag(style: _Style) -> str:
    return style.open_tag()


def _partial_start(text: str) -> int | None:
    """Where an escape sequence that the next chunk may complete starts,
    or None. Only the last ``_MAX_PENDING`` characters are considered."""
    start = max(0, len(text) - _MAX_PENDING)
    i = text.find("\x1b", start)
    while i >= 0:
        if _PARTIAL.match(text, i):
            return i
        i = text.find("\x1b", i + 1)
    return None


def render(data: bytes) -> str:
    """A whole log as HTML."""
    renderer = AnsiRenderer()
    return renderer.feed(data) + renderer.finish()


__all__ = ["AnsiRenderer", "apply_sgr", "render"]
