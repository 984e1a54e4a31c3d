"""A server session over in-memory trio streams, and a raw 9P peer to drive it.

No socket and no thread: the test and the session run in one trio run, so a
test can look at the session's state between two messages.  Replies flow in
lockstep (the session's write waits until the peer reads, like a full socket
buffer), requests through an unbounded buffer (the peer's sends never wait).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import trio.testing

from datakit import ninep
from datakit.ninep import handshake
from datakit.server.session import Limits, Session
from datakit.vfs import Directory, File, FsError, Kind, Node, tmpfs


class Peer:
    """The client's end: sends messages or raw bytes, receives decoded replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.dialect = ninep.Dialect.V2000
        self.decoder = ninep.Decoder(max_size=Limits().max_msize)

    async def send(self, *msgs: ninep.Message) -> None:
        await self.send_raw(b"".join(ninep.encode(m, self.dialect) for m in msgs))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> ninep.Message | None:
        """The next reply; None once the session closed the connection."""
        while (msg := self.decoder.next_message()) is None:
            data = await self.stream.receive_some()
            if not data:
                return None
            self.decoder.feed(data)
        return msg

    async def rpc(self, msg: ninep.Message) -> ninep.Message:
        await self.send(msg)
        reply = await self.receive()
        assert reply is not None and reply.tag == msg.tag, reply
        return reply

    async def version(self, version: str = "9P2000.u", msize: int = 65536) -> ninep.Rversion:
        request = handshake.version_request(msize, version)
        reply = await self.rpc(request)
        settings = handshake.accept(request, reply)
        settings.apply(self.decoder)
        self.dialect = settings.dialect
        assert isinstance(reply, ninep.Rversion)
        return reply

    async def attach(self, fid: int = 1, tag: int = 1) -> ninep.Message:
        return await self.rpc(
            ninep.Tattach(tag=tag, fid=fid, afid=ninep.NOFID, uname="u", aname="")
        )

    async def start(self, version: str = "9P2000.u", msize: int = 65536) -> None:
        """Version and attach (fid 1 is the root)."""
        await self.version(version, msize)
        assert isinstance(await self.attach(), ninep.Rattach)


@dataclass
class Running:
    session: Session
    peer: Peer
    root: Directory
    finished: trio.Event  # set once the session ended


class Tree(Directory):
    """A fixed directory of the given nodes; remembers whether it was detached."""

    def __init__(self, name: str, *children: Node) -> None:
        super().__init__(name)
        self.children = {child.name: child for child in children}
        self.detached = False

    async def lookup(self, name: str) -> Node:
        try:
            return self.children[name]
        except KeyError:
            raise FsError("No such file or directory", errno.ENOENT) from None

    async def entries(self) -> list[Node]:
        return list(self.children.values())

    def detach(self) -> None:
        self.detached = True


async def example_tree() -> Directory:
    """The example tree (tmpfs) holding /hello and /dir/a."""
    root = tmpfs.example_tree()
    await _write(root, "hello", b"hello, world\n")
    sub = await root.mkdir("dir")
    assert isinstance(sub, Directory)
    await _write(sub, "a", b"a")
    return root


async def _write(directory: Directory, name: str, data: bytes) -> None:
    node = await directory.create(name, Kind.FILE, None)
    assert isinstance(node, File)
    handle = await node.open()
    await handle.write(0, data)
    handle.close()


@asynccontextmanager
async def running(
    root: Directory | None = None, limits: Limits | None = None, *, read_only: bool = False
) -> AsyncIterator[Running]:
    """A session serving `root` (default: `example_tree()`), cancelled when the block ends."""
    tree = root or await example_tree()
    to_client, from_server = trio.testing.lockstep_stream_one_way_pair()
    to_server, from_client = trio.testing.memory_stream_one_way_pair()
    session = Session(
        trio.StapledStream(to_client, from_client), lambda: tree, limits, read_only=read_only
    )
    finished = trio.Event()

    async def run() -> None:
        try:
            await session.run()
        finally:
            finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        yield Running(session, Peer(trio.StapledStream(to_server, from_server)), tree, finished)
        nursery.cancel_scope.cancel()
