"""Every directory refuses to create or rename to a name that is not one
path element: "", ".", "..", a name with '/' or NUL, or one longer than
NAME_MAX. Such an entry could never be walked to, and a listing holding it
would show a Linux client "..", or a name cut at the NUL.

Store trees apply the stricter rule of store/_names.py on top; this covers
the other directories (transactions, remotes), on every dialect, with a real
``datakit serve``."""

from __future__ import annotations

import errno

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client, RemoteError
from tests.operations.procs import datakit_process

BAD = ["", ".", "..", "a/b", "a\0b", "x" * 256]
DIALECTS = ["9P2000", "9P2000.u", "9P2000.L"]


@pytest.fixture(scope="module")
def address() -> object:
    with datakit_process() as (port, _, _):
        yield f"tcp://127.0.0.1:{port}"


def _refused(attempt: object, name: str, c: Client) -> None:
    with pytest.raises(RemoteError) as info:
        attempt()  # type: ignore[operator]
    if c.dialect is not ninep.Dialect.V2000:
        expected = errno.ENAMETOOLONG if len(name) > 255 else errno.EINVAL
        assert info.value.errno == expected, (name, info.value)
    if c.dialect is not ninep.Dialect.L:
        assert info.value.message.startswith(("Invalid name", "Name too long")), info.value


@pytest.mark.parametrize("version", DIALECTS)
def test_names_that_are_not_one_path_element_are_refused(address: str, version: str) -> None:
    with Client.connect(address, version=version, timeout=30) as c:
        txs = ("branch", "main", "transactions")
        c.mkdir(("branch", "main"))
        c.mkdir((*txs, "t"))
        c.mkdir(("remotes", "origin"))
        for name in BAD:
            for where in (txs, ("remotes",)):
                _refused(lambda: c.mkdir((*where, name)), name, c)  # noqa: B023
            if name:  # a wstat with an empty name means "keep the name"
                if c.dialect is ninep.Dialect.L:
                    fid = c.walk(txs)
                    fields = dict(olddirfid=fid, oldname="t", newdirfid=fid, newname=name)
                    _refused(lambda: c.rpc(ninep.Trenameat, **fields), name, c)  # noqa: B023
                    c.clunk(fid)
                else:
                    _refused(lambda: c.rename((*txs, "t"), name), name, c)  # noqa: B023
        assert c.ls(txs) == ["t"]
        assert c.ls(("remotes",)) == ["origin"]
        c.write((*txs, "t", "ctl"), b"close")  # the session still works
