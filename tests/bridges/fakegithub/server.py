"""Serving the fake over HTTP/1.1 on loopback, from a background thread.

Plain h11 on trio (h11 is already a dependency) rather than an ASGI stack,
because breaking the network needs the sockets themselves: `refuse` closes
the listening socket and every open connection (clients get "connection
refused"), healing binds the same port again.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import sys
import threading
import traceback
from collections.abc import Iterator

import h11
import trio

from tests.bridges.fakegithub.app import Api, Request, Response
from tests.bridges.fakegithub.control import FakeGitHub

MAX_BODY = 10 * 1024 * 1024


class FakeServer:
    """Runs `Api(fake)` on 127.0.0.1 in its own thread with its own trio loop."""

    def __init__(self, fake: FakeGitHub, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        self.api = Api(fake)
        self.host = host
        self.port = port
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._serving: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-github-http", daemon=True)

    def start(self) -> str:
        """Start serving; returns the base URL (`http://127.0.0.1:PORT`)."""
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise RuntimeError("fake GitHub did not start") from self._error
        url = f"http://{self.host}:{self.port}"
        self.fake.set_base_url(url)
        self.fake.on_network_change(self._network_changed)
        return url

    def stop(self) -> None:
        if self._token is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel, trio_token=self._token)
        self._thread.join(30)

    def _cancel(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:
            self._error = e
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._listen()
            self._started.set()
            await trio.sleep_forever()  # the loop outlives a refused network

    async def _listen(self) -> None:
        assert self._nursery is not None
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        scope = trio.CancelScope()
        self._serving = scope
        stopped = self._stopped = trio.Event()

        async def serve() -> None:
            try:
                with scope:
                    await trio.serve_listeners(self._connection, listeners)
            finally:
                for listener in listeners:
                    await listener.aclose()
                stopped.set()

        self._nursery.start_soon(serve)

    def _network_changed(self, mode: str | None) -> None:
        if self._token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run(self._apply_network, mode, trio_token=self._token)

    async def _apply_network(self, mode: str | None) -> None:
        if mode == "refuse":
            if self._serving is not None:
                self._serving.cancel()
                self._serving = None
                assert self._stopped is not None
                await self._stopped.wait()  # listener and connections closed
        elif self._serving is None:
            await self._listen()

    # -- one connection ------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                try:
                    req = await self._read(conn, stream)
                except h11.RemoteProtocolError:
                    await self._send(conn, stream, Response(400, b"bad request"))
                    return
                if req is None:
                    return
                try:
                    resp = self.api.handle(req)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    resp = Response(500, b'{"message":"fake GitHub crashed"}')
                if resp is None:
                    return
                await self._send(conn, stream, resp)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()

    async def _read(self, conn: h11.Connection, stream: trio.SocketStream) -> Request | None:
        method = target = ""
        headers: dict[str, str] = {}
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                method, target = event.method.decode(), event.target.decode()
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("body too large")
            elif isinstance(event, h11.EndOfMessage):
                return Request(method, target, headers, bytes(body))
            else:  # ConnectionClosed, PAUSED
                return None

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, resp: Response) -> None:
        headers = [*resp.headers, ("Date", email.utils.formatdate(usegmt=True)),
                   ("Server", "GitHub.com")]
        if resp.status not in (204, 304):
            headers.append(("Content-Length", str(len(resp.body))))
        try:
            reason = http.HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        data = conn.send(h11.Response(status_code=resp.status, headers=headers,
                                      reason=reason.encode()))
        if resp.status not in (204, 304):
            data += conn.send(h11.Data(data=resp.body))
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)


@contextlib.contextmanager
def running_fake(token: str | None = None) -> Iterator[FakeGitHub]:
    """A started fake GitHub; its API base URL is `fake.base_url`."""
    fake = FakeGitHub(token)
    server = FakeServer(fake)
    server.start()
    try:
        yield fake
    finally:
        server.stop()
        fake.close()
