"""CI-16 in a real browser: the dashboard of a fake CI with one green and
one red tile, rendered by headless Chromium (Debian's ``chromium``) from a
real Hypercorn server; the screenshot's size and colours are checked with
a small PNG decoder (zlib + struct, no imaging library). The screenshot is
left under the test's tmp_path as an artefact."""

from __future__ import annotations

import shutil
import struct
import zlib
from functools import partial
from pathlib import Path

import pytest
import trio

from datakit.ci.web import serve_web
from tests.ci.fakeview import PR5, example_view

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1200, 800


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of raw pixel bytes, bytes per pixel) of an
    8-bit RGB or RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if filter_type == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif filter_type == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif filter_type == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif filter_type == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        else:
            assert filter_type == 0, f"bad filter {filter_type}"
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def count_colours(rows: list[bytes], bpp: int) -> tuple[int, int]:
    """How many pixels are clearly green and clearly red."""
    green = red = 0
    for row in rows:
        for x in range(0, len(row), bpp):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if g > 110 and g > r + 60 and g > b + 40:
                green += 1
            elif r > 160 and r > g + 100 and r > b + 90:
                red += 1
    return green, red


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
async def test_ci_16_dashboard_in_chromium(nursery: trio.Nursery, tmp_path: Path) -> None:
    view = example_view()
    del view.target_views[PR5]  # only the green master and the red dev tile
    host, port = await nursery.start(partial(serve_web, view, "127.0.0.1", 0, token=None))
    shot = tmp_path / "dashboard.png"
    assert CHROMIUM is not None
    argv = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # needed as root
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={WIDTH},{HEIGHT}",
        f"http://{host}:{port}/",
    ]
    with trio.fail_after(180):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert shot.exists(), result.stderr.decode(errors="replace")[-2000:]
    print(f"screenshot: {shot}")
    width, height, rows, bpp = await trio.to_thread.run_sync(decode_png, shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    green, red = await trio.to_thread.run_sync(count_colours, rows, bpp)
    # each tile is at least 16rem x 9rem: thousands of pixels of its colour
    assert green > 5000, green
    assert red > 5000, red


def test_png_decoder_reads_every_filter() -> None:
    """The decoder itself, on a PNG built here with each filter type."""
    width, bpp = 3, 3
    pixels = [bytes([10 * y + x, 100 + y, 200 - x] * 1)[:3] for y in range(5) for x in range(width)]
    rows = [b"".join(pixels[y * width : (y + 1) * width]) for y in range(5)]
    raw = bytearray()
    prev = bytes(width * bpp)
    for kind, row in enumerate(rows):
        raw.append(kind)
        for i, v in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up = prev[i]
            upleft = prev[i - bpp] if i >= bpp else 0
            predictor = [0, left, up, (left + up) >> 1, _paeth(left, up, upleft)][kind]
            raw.append((v - predictor) & 0xFF)
        prev = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, 5, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )
    assert decode_png(png) == (width, 5, rows, bpp)
    assert count_colours([bytes([20, 200, 30, 220, 20, 30, 128, 128, 128])], 3) == (1, 1)
