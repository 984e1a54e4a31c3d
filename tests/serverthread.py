"""Run a real `datakit serve` in a background thread of the test process.

Tests talk to it over a real Unix socket with the 9p client, so every byte
goes through the codec, the session and the filesystem as in production;
only the process boundary is saved (a fresh server per test costs ~1 ms).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from datakit.serve import ServeConfig, serve
from datakit.server import parse_endpoint


@contextmanager
def running_server(sock_dir: Path, **config: object) -> Iterator[str]:
    address = f"unix://{sock_dir / 'dk.sock'}"
    cfg = ServeConfig(endpoints=[parse_endpoint(address)], **config)  # type: ignore[arg-type]
    started = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        with trio.CancelScope() as scope:
            state["scope"] = scope
            state["token"] = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, cfg)
                started.set()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # surfaced to the test below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    started.wait(30)
    if "error" in state:
        raise RuntimeError("server failed to start") from state["error"]  # type: ignore[arg-type]
    try:
        yield address
    finally:
        trio.from_thread.run_sync(
            state["scope"].cancel,  # type: ignore[attr-defined]
            trio_token=state["token"],  # type: ignore[arg-type]
        )
        thread.join(10)
        if "error" in state:
            raise RuntimeError("server crashed") from state["error"]  # type: ignore[arg-type]
