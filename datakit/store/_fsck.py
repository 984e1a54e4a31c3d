"""Checks of objects received from a remote, as `git fetch` makes them with
``transfer.fsckObjects`` (git's ``fsck.c`` in strict mode, where warnings
such as a ``.git`` entry or a zero-padded mode are errors too).

Each check works on the raw object body, before anything of it is stored:
:func:`check_object` raises :class:`FsckError` saying what is wrong, and
returns the object's links (what it names, with the type it must have) for
the connectivity check of the whole fetch.
"""

from __future__ import annotations

import io
import re
from urllib.parse import unquote_to_bytes

from ._errors import StoreError
from ._names import GITMODULES, check_name, special_file

BLOB, TREE, COMMIT, TAG = 3, 2, 1, 4
TYPE_NUMS = {b"commit": COMMIT, b"tree": TREE, b"blob": BLOB, b"tag": TAG}
TYPE_NAMES = {num: name.decode() for name, num in TYPE_NUMS.items()}

# The entry modes git writes; strict fsck refuses any other (100664, 040000...).
_MODE_TYPES = {
    b"100644": BLOB,
    b"100755": BLOB,
    b"120000": BLOB,
    b"40000": TREE,
    b"160000": COMMIT,  # a submodule: a commit of another repository, not linked
}
_HEX40 = re.compile(rb"[0-9a-f]{40}\Z")
# name <email> seconds +hhmm, as fsck_ident reads it: a space before '<' and
# the date, no '<' or '>' in name or email, no zero-padded date.
_IDENT = re.compile(rb"[^<>\n]* <[^<>\n]*> (0|[1-9][0-9]*) [+-][0-9]{4}\Z")
_MAX_DATE = 2**63 - 1

Link = tuple[str, int]  # (object id, the type it must have)

# Files git reads from a checkout with security consequences (which names
# are read as them: _names.special_file): their blobs get checks of their
# own (check_special), as in git's fsck_blob.
_MAX_GITMODULES = 512 * 1024 * 1024  # git's big_file_threshold
_MAX_GITATTRIBUTES = 100 * 1024 * 1024
_MAX_ATTRIBUTE_LINE = 2048


class FsckError(StoreError):
    """A received object git would refuse; the message says which and why."""

    def __init__(self, sha: str, type_num: int, reason: str) -> None:
        self.sha = sha
        self.reason = reason
        super().__init__(f"{TYPE_NAMES.get(type_num, 'object')} {sha}: {reason}")


def check_object(
    sha: str, type_num: int, raw: bytes, special: dict[str, tuple[str, int]] | None = None
) -> list[Link]:
    """Raise :class:`FsckError` unless git would accept this object; return
    the objects it links to. A tree adds to ``special`` the objects it names
    ``.gitmodules`` or ``.gitattributes`` (id -> (file, type)), whose
    contents :func:`check_special` must check."""
    if type_num not in TYPE_NAMES:
        raise FsckError(sha, type_num, f"unknown object type {type_num}")
    try:
        if type_num == TREE:
            return _tree(raw, {} if special is None else special)
        if type_num == COMMIT:
            return _commit(raw)
        if type_num == TAG:
            return _tag(raw)
        return []
    except _Bad as bad:
        raise FsckError(sha, type_num, str(bad)) from None
    except StoreError as exc:  # a tree entry name check_name refuses
        raise FsckError(sha, type_num, str(exc)) from None


class _Bad(Exception):
    pass


def check_special(sha: str, file: str, type_num: int, raw: bytes) -> None:
    """The checks git's fsck makes of a ``.gitmodules`` or
    ``.gitattributes`` blob; FsckError if one fails."""
    if type_num != BLOB:
        raise FsckError(sha, type_num, f"{file} is not a file")
    reason = special_problem(file, raw)
    if reason is not None:
        raise FsckError(sha, type_num, f"{file}: {reason}")


def special_problem(file: str, raw: bytes) -> str | None:
    """Why git's fsck refuses this content of a ``.gitmodules`` or
    ``.gitattributes`` file, or None if it accepts it."""
    try:
        if file == GITMODULES:
            _gitmodules(raw)
        else:
            _gitattributes(raw)
    except _Bad as bad:
        return str(bad)
    return None


def _gitattributes(raw: bytes) -> None:
    if len(raw) > _MAX_GITATTRIBUTES:
        raise _Bad("too large")
    if any(len(line) > _MAX_ATTRIBUTE_LINE for line in raw.split(b"\n")):
        raise _Bad(f"a line is longer than {_MAX_ATTRIBUTE_LINE} bytes")


def _gitmodules(raw: bytes) -> None:
    """Submodule names that escape `.git/modules`, and paths, URLs and
    update commands a `git submodule` run would take for options or shell
    commands (git's fsck_gitmodules_fn; CVE-2018-11235, CVE-2018-17456,
    CVE-2019-19604, CVE-2020-5260)."""
    from dulwich.config import ConfigFile

    if len(raw) > _MAX_GITMODULES:
        raise _Bad("too large")
    try:
        config = ConfigFile.from_file(io.BytesIO(raw))
    except Exception:
        return  # git reports a .gitmodules it cannot parse, but accepts it
    for section in config.sections():
        if len(section) != 2 or section[0] != b"submodule":
            continue
        name = section[1]
        if not name or any(part == b".." for part in re.split(rb"[/\\]", name)):
            raise _Bad(f"bad submodule name {name[:64].decode('utf-8', 'replace')!r}")
        values = config[section]
        url = values.get(b"url")
        if url is not None and (url.startswith(b"-") or b"\n" in unquote_to_bytes(url)):
            raise _Bad(f"submodule {name[:64].decode('utf-8', 'replace')!r} has a bad url")
        path = values.get(b"path")
        if path is not None and path.startswith(b"-"):
            raise _Bad(f"submodule {name[:64].decode('utf-8', 'replace')!r} has a bad path")
        update = values.get(b"update")
        if update is not None and update.startswith(b"!"):
            raise _Bad(f"submodule {name[:64].decode('utf-8', 'replace')!r} runs a command")


def _tree(raw: bytes, special: dict[str, tuple[str, int]]) -> list[Link]:
    links: list[Link] = []
    names: set[bytes] = set()
    previous: bytes | None = None
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos)
        nul = raw.find(b"\0", space + 1) if space >= 0 else -1
        if space < 0 or nul < 0 or nul + 21 > len(raw):
            raise _Bad("truncated tree entry")
        mode, name = raw[pos:space], raw[space + 1 : nul]
        sha = raw[nul + 1 : nul + 21].hex()
        pos = nul + 21
        if mode.startswith(b"0"):
            raise _Bad(f"zero-padded file mode {mode.decode('ascii', 'replace')}")
        kind = _MODE_TYPES.get(mode)
        if kind is None:
            raise _Bad(f"bad file mode {mode[:16].decode('ascii', 'replace')}")
        check_name(name, symlink=mode == b"120000")
        if name in names:
            raise _Bad(f"duplicate entry {name.decode('utf-8', 'replace')!r}")
        names.add(name)
        # git sorts a directory as if its name ended with '/'.
        key = name + b"/" if kind == TREE else name
        if previous is not None and key < previous:
            raise _Bad(f"entries not sorted ({name.decode('utf-8', 'replace')!r})")
        previous = key
        if sha == "0" * 40:
            raise _Bad(f"entry {name.decode('utf-8', 'replace')!r} has a null object id")
        if kind != COMMIT:
            links.append((sha, kind))
        file = special_file(name)
        if file is not None:
            special[sha] = (file, kind)
    return links


def _headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The header lines (up to the blank line) as (key, value); git refuses
    a NUL among them and a header part that does not end with a newline."""
    end = raw.find(b"\n\n")
    head = raw[: end + 1] if end >= 0 else raw
    if b"\0" in head:
        raise _Bad("NUL in header")
    if not head.endswith(b"\n"):
        raise _Bad("unterminated header")
    out = []
    for line in head[:-1].split(b"\n"):
        key, _, value = line.partition(b" ")
        out.append((key, value))
    return out


def _ident(what: str, value: bytes) -> None:
    match = _IDENT.match(value)
    if match is None:
        raise _Bad(f"malformed {what} line")
    if int(match.group(1)) > _MAX_DATE:
        raise _Bad(f"{what} date out of range")


def _object_id(what: str, value: bytes) -> str:
    if not _HEX40.match(value):
        raise _Bad(f"bad {what} object id")
    return value.decode("ascii")


def _expect(headers: list[tuple[bytes, bytes]], i: int, key: bytes) -> bytes:
    if i >= len(headers) or headers[i][0] != key:
        raise _Bad(f"missing {key.decode()} line")
    return headers[i][1]


def _commit(raw: bytes) -> list[Link]:
    headers = _headers(raw)
    links: list[Link] = [(_object_id("tree", _expect(headers, 0, b"tree")), TREE)]
    i = 1
    while i < len(headers) and headers[i][0] == b"parent":
        links.append((_object_id("parent", headers[i][1]), COMMIT))
        i += 1
    _ident("author", _expect(headers, i, b"author"))
    if i + 1 < len(headers) and headers[i + 1][0] == b"author":
        raise _Bad("multiple author lines")
    _ident("committer", _expect(headers, i + 1, b"committer"))
    return links


def _tag(raw: bytes) -> list[Link]:
    headers = _headers(raw)
    target = _object_id("tagged", _expect(headers, 0, b"object"))
    kind = TYPE_NUMS.get(_expect(headers, 1, b"type"))
    if kind is None:
        raise _Bad("bad tagged object type")
    _expect(headers, 2, b"tag")  # git does not check the name itself here
    if len(headers) > 3 and headers[3][0] == b"tagger":  # optional, as in git
        _ident("tagger", headers[3][1])
    return [(target, kind)]
