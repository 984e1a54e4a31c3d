"""The upload progress bar: drawn on a terminal only, for big blobs only,
and cleared when the blob is done."""

from __future__ import annotations

import io

from datakit.images.progress import Progress

MiB = 1024 * 1024


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_unless_a_terminal() -> None:
    assert Progress.for_stream(io.StringIO()) is None
    assert Progress.for_stream(Terminal()) is not None


def test_bar_for_a_big_blob_then_cleared() -> None:
    out = Terminal()
    progress = Progress(out, threshold=4 * MiB)
    progress.start(8 * MiB)
    for _ in range(8):
        progress.add(MiB)
    drawn = out.getvalue()
    # The last draw is always made (the blob is complete), whatever the clock.
    assert "8.0/8.0 MiB" in drawn
    assert "[" + "#" * 30 + "]" in drawn
    progress.done()
    assert out.getvalue().endswith("\r\033[K")


def test_small_blobs_draw_nothing() -> None:
    out = Terminal()
    progress = Progress(out, threshold=4 * MiB)
    progress.start(MiB)
    progress.add(MiB)
    progress.done()
    assert out.getvalue() == ""
