"""Pure helpers of the client: path validation, error translation, author
parsing, id validation (no server, no repository)."""

from __future__ import annotations

import errno

import pytest

from datakit.client import (
    ABORT,
    AGAIN,
    AlreadyExists,
    BackendError,
    Conflict,
    ConflictsRemain,
    DataKitError,
    DoesNotExist,
    InvalidBranchName,
    InvalidHash,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFastForward,
)
from datakit.client.api import check_branch_name, parse_id, run_wait
from datakit.client.git_backend import parse_author
from datakit.client.ninep_backend import _parse_diff, translate
from datakit.client.ninep_client import RemoteError
from datakit.client.values import Added, Removed, Updated, to_steps


def test_to_steps() -> None:
    assert to_steps("") == ()
    assert to_steps(()) == ()
    assert to_steps("a/b") == ("a", "b")
    assert to_steps(["a", "b"]) == ("a", "b")
    for bad, message in (
        ("a//b", 'Invalid path component ""'),
        ("a/./b", 'Invalid path component "."'),
        ("..", 'Invalid path component ".."'),
        (("a/b",), "'/' in path step \"a/b\""),
    ):
        with pytest.raises(InvalidPath) as info:
            to_steps(bad)
        assert str(info.value) == message
    assert issubclass(InvalidPath, ValueError)


@pytest.mark.parametrize(
    ("message", "code", "cls"),
    [
        ("No such file or directory", errno.ENOENT, DoesNotExist),
        ("Already exists", errno.EEXIST, AlreadyExists),
        ("Is a directory", errno.EISDIR, IsADirectory),
        ("Can't set length of a directory", errno.EINVAL, IsADirectory),
        ("Incorrect is_directory flag for chmod", errno.EINVAL, IsADirectory),
        ("Can't walk from a file", errno.ENOTDIR, NotADirectory),
        ('"f" is not a directory', errno.ENOTDIR, NotADirectory),
        ("conflicts file is not empty", errno.EINVAL, ConflictsRemain),
        ("Merge conflict: a, b", errno.EINVAL, Conflict),
        ("not-fast-forward", errno.EINVAL, NotFastForward),
        ('invalid-hash "x": bad', errno.EINVAL, InvalidHash),
        ("x y is not a valid branch name.", errno.EINVAL, InvalidBranchName),
        ("Read-only file", errno.EROFS, BackendError),
        # 9P2000 (no errno): matched on the exact upstream strings only.
        ("No such file or directory", 0, DoesNotExist),
        ("something else", 0, BackendError),
        # Unknown text but a telling errno.
        ("gone", errno.ENOENT, DoesNotExist),
    ],
)
def test_translate_server_errors(message: str, code: int, cls: type[DataKitError]) -> None:
    error = translate(RemoteError(message, code))
    assert type(error) is cls
    if cls in (Conflict, InvalidHash, BackendError):
        assert str(error) == message


def test_backend_error_keeps_errno() -> None:
    error = translate(RemoteError("Read-only file", errno.EROFS))
    assert isinstance(error, BackendError) and error.errno == errno.EROFS


def test_parse_diff() -> None:
    text = b"+ b/new\n- a\n* z\n* a/x\n\n"
    assert _parse_diff(text) == [Removed("a"), Updated("a/x"), Added("b/new"), Updated("z")]


def test_parse_author() -> None:
    assert parse_author("datakit <datakit@mobyproject.org>") == (
        b"datakit <datakit@mobyproject.org>"
    )
    assert parse_author("  Jane  Doe <jane@x.org> ") == b"Jane  Doe <jane@x.org>"
    assert parse_author("datakit") == b"datakit <datakit@mobyproject.org>"


def test_parse_id() -> None:
    sha = "A3827C5D1A2BA8C6A40EDED5598DBA8D3835FB35"
    assert parse_id(sha) == sha.lower()
    with pytest.raises(InvalidHash, match="expected 40 hex digits, got 5"):
        parse_id("hello")
    with pytest.raises(InvalidHash, match="not a hexadecimal"):
        parse_id("g" * 40)


def test_branch_names() -> None:
    for good in ("master", "v1.0", "a_b-c", "x.y"):
        assert check_branch_name(good) == good
    for bad in ("", "a/b", "a b", "-a", ".a", "a.", "a..b", "a.lock", "HEAD", "é"):
        with pytest.raises(InvalidBranchName):
            check_branch_name(bad)


def test_run_wait_closes_the_event_source() -> None:
    closed: list[bool] = []

    def events() -> object:
        try:
            yield 1
            yield 2
            yield 3
        finally:
            closed.append(True)

    assert run_wait(events(), lambda v: "two" if v == 2 else AGAIN) == "two"  # type: ignore[arg-type]
    assert closed == [True]
    assert run_wait(iter([1, 2]), lambda v: AGAIN) is ABORT
