"""Tree views (immutable), the editable tree of a transaction, the
file-level three-way merge (spec section 4.2) and tree diffs (section 3.6).

Walks over trees use explicit stacks, never recursion: git allows trees
4,096 levels deep, Python's recursion limit is about 1,000.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

from datakit.formats import Change, DiffOp

from ._content import Content
from ._errors import (
    AlreadyExists,
    InvalidContent,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    ReadOnlyEntry,
    StoreError,
)
from ._fsck import special_problem
from ._names import check_name, shown_name, special_file
from ._objects import (
    EMPTY_TREE,
    BlobReader,
    Entry,
    HiddenEntry,
    Kind,
    ObjectDB,
    Path,
    encode_name,
)

CONFLICT_FILE_VS_DIR = b"File vs dir"
CONFLICT_BOTH_CHANGED = b"Changed on both branches"
CONFLICT_ADD_ADD = b"default: add/add and no common ancestor"
CONFLICT_ADD_DEL = b"option: add/del"


def conflict_bytes(reason: bytes) -> bytes:
    return b"** Conflict **\n" + reason + b"\n"


def _name_key(item: tuple[str, object]) -> bytes:
    return encode_name(item[0])


class TreeView:
    """An immutable git tree; every lookup is served from the object cache."""

    __slots__ = ("_db", "sha")

    def __init__(self, db: ObjectDB, sha: str) -> None:
        self._db = db
        self.sha = sha

    def __repr__(self) -> str:
        return f"TreeView({self.sha})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreeView) and other.sha == self.sha

    def __hash__(self) -> int:
        return hash(self.sha)

    def lookup(self, path: Path) -> Entry | None:
        entry = Entry(Kind.DIR, self.sha)
        for name in path:
            if entry.kind is not Kind.DIR:
                return None
            found = self._db.tree_entries(entry.sha).get(name)
            if found is None:
                return None
            entry = found
        return entry

    stat = lookup

    def listdir(self, path: Path = ()) -> list[tuple[str, Entry]]:
        entry = self.lookup(path)
        if entry is None:
            raise NotFound()
        if entry.kind is not Kind.DIR:
            raise NotADirectory()
        return sorted(self._db.tree_entries(entry.sha).items(), key=_name_key)

    def read(self, path: Path) -> bytes:
        entry = self.lookup(path)
        if entry is None:
            raise NotFound()
        if entry.kind is Kind.DIR:
            raise IsADirectory()
        return self._db.file_content(entry.kind, entry.sha)

    def walk_files(self, path: Path = ()) -> Iterator[tuple[Path, Entry]]:
        entry = self.lookup(path)
        if entry is not None:
            yield from _walk_files(self._db, path, entry)


def _walk_files(db: ObjectDB, path: Path, entry: Entry) -> Iterator[tuple[Path, Entry]]:
    stack = [(path, entry)]
    while stack:
        p, e = stack.pop()
        if e.kind is not Kind.DIR:
            yield p, e
            continue
        children = list(db.tree_entries(e.sha).items())
        stack.extend(((*p, name), child) for name, child in reversed(children))


def diff_trees(db: ObjectDB, old: str, new: str) -> list[Change]:
    """Changed files between two trees: ADDED only in new, REMOVED only in
    old, UPDATED in both with different content or kind."""
    out: list[Change] = []
    if old == new:
        return out
    # (path, old entry, new entry) still to compare, next one last.
    stack: list[tuple[Path, Entry | None, Entry | None]] = [
        ((), Entry(Kind.DIR, old), Entry(Kind.DIR, new))
    ]
    while stack:
        path, oe, ne = stack.pop()
        o_dir = oe is not None and oe.kind is Kind.DIR
        n_dir = ne is not None and ne.kind is Kind.DIR
        if o_dir and n_dir:
            assert oe is not None and ne is not None
            o = db.tree_entries(oe.sha)
            n = db.tree_entries(ne.sha)
            names = sorted(o.keys() | n.keys(), key=encode_name, reverse=True)
            stack.extend(
                ((*path, name), o.get(name), n.get(name))
                for name in names
                if o.get(name) != n.get(name)
            )
        elif oe is not None and ne is not None and not o_dir and not n_dir:
            out.append(Change(DiffOp.UPDATED, path))
        else:
            if oe is not None:
                out.extend(Change(DiffOp.REMOVED, p) for p, _ in _walk_files(db, path, oe))
            if ne is not None:
                out.extend(Change(DiffOp.ADDED, p) for p, _ in _walk_files(db, path, ne))
    return out


# ---------------------------------------------------------------------------
# Editable tree

# Names recur from commit to commit (the same files edited again): their
# special-file verdict is remembered, within a bound.
_special_file = functools.lru_cache(maxsize=4096)(special_file)


class _File:
    __slots__ = ("data", "kind", "mode", "sha")

    def __init__(
        self, kind: Kind, sha: str | None, data: bytearray | None, mode: bytes = b""
    ) -> None:
        self.kind = kind
        self.sha = sha  # blob id when known to match the content (gitlink: its commit)
        # Private mutable copy once edited: a bytearray as created (small:
        # a symlink target, a conflict marker), a Content once written to.
        self.data: Content | bytearray | None = data
        self.mode = mode  # git's own spelling of the mode (Entry.mode), kept


class _Dir:
    __slots__ = ("children", "dirty", "hidden", "mode", "sha")

    def __init__(
        self, sha: str | None, children: dict[str, _File | _Dir] | None, mode: bytes = b""
    ) -> None:
        self.sha = sha  # tree id of the content when not dirty (None: empty)
        self.children = children  # None until loaded from ``sha``
        self.dirty = children is not None and sha is None
        self.mode = mode  # git's own spelling of the mode (Entry.mode), kept
        # Entries of the loaded tree that cannot be shown, written back as they were.
        self.hidden: tuple[HiddenEntry, ...] = ()


_Node = _File | _Dir


def _node_of(entry: Entry) -> _Node:
    if entry.kind is Kind.DIR:
        return _Dir(entry.sha, None, entry.mode)
    return _File(entry.kind, entry.sha, None, entry.mode)


class EditableTree:
    """The mutable tree of a transaction (spec section 2.8).

    All operations take paths, so callers never hold nodes. Unchanged
    subtrees are loaded lazily and keep their tree id, so :meth:`write_tree`
    re-hashes only what was edited.
    """

    def __init__(self, db: ObjectDB, base_tree: str | None = None) -> None:
        self._db = db
        if base_tree is None or base_tree == EMPTY_TREE:
            self._root = _Dir(None, {})
        else:
            self._root = _Dir(base_tree, None)
        self.conflicts: set[Path] = set()
        # Entries a merge took from another commit's tree: stored already,
        # so kept as they are (see _check_special_files).
        self._merged_in: set[tuple[str, Entry]] = set()

    # -- internals -----------------------------------------------------------
    def _children(self, d: _Dir) -> dict[str, _Node]:
        if d.children is None:
            assert d.sha is not None
            entries = self._db.tree_entries(d.sha)
            d.children = {n: _node_of(e) for n, e in entries.items()}
            d.hidden = entries.hidden
        return d.children

    def _check_new(self, path: Path, *, symlink: bool = False, directory: bool = False) -> None:
        """Refuse, before anything changes, a name git would refuse among
        those an edit of ``path`` creates: its last step and every missing
        directory on the way (InvalidName / NameTooLong)."""
        node: _Node = self._root
        for i, name in enumerate(path[:-1]):
            child = self._children(node).get(name) if isinstance(node, _Dir) else None
            if child is None:
                for missing in path[i:-1]:
                    check_name(missing, directory=True)
                break
            node = child
        if path:
            check_name(path[-1], symlink=symlink, directory=directory)

    def _find(self, path: Path) -> _Node | None:
        """The node at ``path``; None if missing, NotADirectory if a proper
        prefix of the path is a file."""
        node: _Node = self._root
        for name in path:
            if not isinstance(node, _Dir):
                raise NotADirectory()
            child = self._children(node).get(name)
            if child is None:
                return None
            node = child
        return node

    def _find_quiet(self, path: Path) -> _Node | None:
        try:
            return self._find(path)
        except NotADirectory:
            return None

    def _dir_for_edit(self, path: Path, *, create: bool, force: bool = False) -> _Dir:
        """The directory at ``path``, marking it and its ancestors dirty.

        create: make missing directories; force: also replace files in the way.
        """
        node = self._root
        # Each directory is read before it is marked dirty: one that cannot
        # be read (CorruptTree) must stay clean, or the next commit fails too.
        self._children(node)
        node.dirty = True
        for name in path:
            children = self._children(node)
            child = children.get(name)
            if child is None:
                if not create:
                    raise NotFound()
                check_name(name, directory=True)
                child = children[name] = _Dir(None, {})
            elif isinstance(child, _File):
                if not force:
                    raise NotADirectory()
                child = children[name] = _Dir(None, {})
            self._children(child)
            child.dirty = True
            node = child
        return node

    def _clear_conflict(self, path: Path) -> None:
        self.conflicts.discard(path)

    def _clear_conflicts_below(self, path: Path) -> None:
        n = len(path)
        self.conflicts = {c for c in self.conflicts if c[:n] != path}

    def _content(self, f: _File) -> Content | BlobReader:
        """What to read ``f`` from: its edited content, or the shared blob."""
        if f.data is None:
            assert f.sha is not None
            return self._db.file_reader(f.kind, f.sha)
        return self._edited(f)

    def _edited(self, f: _File) -> Content:
        if not isinstance(f.data, Content):
            f.data = Content(self._db.limits, f.data or b"")
        return f.data

    def _mutable(self, f: _File) -> Content:
        if f.kind is Kind.GITLINK:
            raise ReadOnlyEntry()
        if f.data is None:
            assert f.sha is not None
            reader = self._db.blob_reader(f.sha)
            if reader.size <= self._db.limits.spill_threshold:
                f.data = Content(self._db.limits, reader.read(0, reader.size))
            else:
                f.data = self.copy_blob(f.sha)
        f.sha = None
        return self._edited(f)

    # A first change to a big committed file copies its blob, which takes
    # seconds for a GiB. The filesystem does that in a worker thread, off
    # the event loop: big_blob_to_copy says whether a change would, copy_blob
    # (which touches no tree state) makes the copy, adopt_copy installs it.

    def big_blob_to_copy(self, path: Path) -> str | None:
        node = self._find_quiet(path)
        if not isinstance(node, _File) or node.data is not None or node.sha is None:
            return None
        if node.kind is Kind.GITLINK:
            return None
        if self._db.blob_size(node.sha) <= self._db.limits.spill_threshold:
            return None
        return node.sha

    def copy_blob(self, sha: str) -> Content:
        content = Content(self._db.limits)
        try:
            for chunk in self._db.blob_chunks(sha):  # never all of a big blob at once
                content.write(len(content), chunk)
        except BaseException:
            content.close()
            raise
        return content

    def adopt_copy(self, path: Path, sha: str, content: Content) -> None:
        """Make `content` (copy_blob(sha)) the file's data, unless it changed meanwhile."""
        node = self._find_quiet(path)
        if isinstance(node, _File) and node.data is None and node.sha == sha:
            f = self._children(self._dir_for_edit(path[:-1], create=False))[path[-1]]
            if isinstance(f, _File) and f.data is None and f.sha == sha:
                f.data = content
                return
        content.close()

    def _existing_file(self, path: Path) -> _File:
        node = self._find(path)
        if node is None:
            raise NotFound()
        if isinstance(node, _Dir):
            raise IsADirectory()
        return node

    # -- queries -------------------------------------------------------------
    def kind(self, path: Path) -> Kind | None:
        node = self._find_quiet(path)
        if node is None:
            return None
        return Kind.DIR if isinstance(node, _Dir) else node.kind

    def stat(self, path: Path) -> tuple[Kind, int] | None:
        node = self._find_quiet(path)
        if node is None:
            return None
        if isinstance(node, _Dir):
            return (Kind.DIR, 0)
        if node.data is None:
            assert node.sha is not None
            return (node.kind, self._db.file_size(node.kind, node.sha))
        return (node.kind, len(node.data))

    def entry(self, path: Path) -> Entry | None:
        """The committed-form entry at ``path`` (writes pending blobs/trees)."""
        node = self._find_quiet(path)
        if node is None:
            return None
        if isinstance(node, _Dir):
            return Entry(Kind.DIR, self._write(node) or EMPTY_TREE, node.mode)
        return Entry(node.kind, self._write_file(node), node.mode)

    def listdir(self, path: Path = ()) -> list[tuple[str, Kind]]:
        node = self._find(path)
        if node is None:
            raise NotFound()
        if not isinstance(node, _Dir):
            raise NotADirectory()
        items = [
            (name, Kind.DIR if isinstance(c, _Dir) else c.kind)
            for name, c in self._children(node).items()
        ]
        items.sort(key=_name_key)
        return items

    def read(self, path: Path, offset: int, count: int) -> bytes:
        content = self._content(self._existing_file(path))
        size = len(content) if isinstance(content, Content) else content.size
        if offset < 0:
            raise InvalidOffset(f"Negative offset {offset}")
        if offset > size:
            raise InvalidOffset(f"Offset {offset} beyond end-of-file (len = {size})")
        if count <= 0:
            return b""
        return content.read(offset, count)

    def read_all(self, path: Path) -> bytes:
        f = self._existing_file(path)
        if f.data is None:
            assert f.sha is not None
            return self._db.file_content(f.kind, f.sha)
        return self._edited(f).getvalue()

    # -- edits ---------------------------------------------------------------
    def write(self, path: Path, offset: int, data: bytes) -> None:
        if offset < 0:
            raise InvalidOffset(f"Negative offset {offset}")
        self._db.limits.check_size(offset + len(data))
        if not path:
            raise IsADirectory()
        parent = self._dir_for_edit(path[:-1], create=False)
        children = self._children(parent)
        node = children.get(path[-1])
        if node is None:
            check_name(path[-1])
            node = children[path[-1]] = _File(Kind.FILE, None, bytearray())
        elif isinstance(node, _Dir):
            raise IsADirectory()
        self._mutable(node).write(offset, data)
        self._clear_conflict(path)

    def truncate(self, path: Path, length: int) -> None:
        self._db.limits.check_size(length)
        node = self._find(path)
        if node is None:
            raise NotFound()
        if isinstance(node, _Dir):
            if length == 0:
                return
            raise IsADirectory()
        parent = self._dir_for_edit(path[:-1], create=False)
        f = self._children(parent)[path[-1]]
        assert isinstance(f, _File)
        if length == 0 and f.data is None and f.kind is not Kind.GITLINK:
            f.data = bytearray()  # emptied: no need to copy what it held first
        self._mutable(f).truncate(length)
        self._clear_conflict(path)

    def create_file(self, path: Path, kind: Kind = Kind.FILE, target: bytes | None = None) -> None:
        if kind is Kind.DIR or kind is Kind.GITLINK:
            raise StoreError(f"create_file cannot create a {kind.name.lower()}")
        if not path:
            raise IsADirectory()
        self._check_new(path, symlink=kind is Kind.LINK)
        parent = self._dir_for_edit(path[:-1], create=True)
        children = self._children(parent)
        old = children.get(path[-1])
        if isinstance(old, _Dir):
            raise IsADirectory()
        # Replacing a file by one of the same kind keeps git's mode spelling.
        mode = old.mode if old is not None and old.kind is kind else b""
        children[path[-1]] = _File(kind, None, bytearray(target or b""), mode)
        self._clear_conflict(path)

    def put(self, path: Path, data: bytes, kind: Kind = Kind.FILE) -> None:
        """Create or replace a file with the given content."""
        self.create_file(path, kind, data)

    def mkdir(self, path: Path) -> None:
        if not path or self._find(path) is not None:
            raise AlreadyExists()
        self._check_new(path, directory=True)
        parent = self._dir_for_edit(path[:-1], create=True)
        self._children(parent)[path[-1]] = _Dir(None, {})
        self._clear_conflict(path)

    def remove(self, path: Path) -> None:
        """Remove a file or a whole subtree; a missing path is fine."""
        if not path:
            self._root = _Dir(None, {})
            self.conflicts.clear()
            return
        if self._find(path) is not None:
            parent = self._dir_for_edit(path[:-1], create=False)
            del self._children(parent)[path[-1]]
        self._clear_conflicts_below(path)

    def rename(self, dir_path: Path, old: str, new: str) -> None:
        node = self._find(dir_path)
        if node is None:
            raise NotFound()
        if not isinstance(node, _Dir):
            raise NotADirectory()
        children = self._children(node)
        src = children.get(old)
        if src is None:
            raise NotFound()
        if old == new:
            return
        check_name(
            new,
            symlink=isinstance(src, _File) and src.kind is Kind.LINK,
            directory=isinstance(src, _Dir) or src.kind is Kind.GITLINK,
        )
        dst = children.get(new)
        if isinstance(dst, _Dir) and self._children(dst):
            raise IsADirectory()
        parent = self._dir_for_edit(dir_path, create=False)
        children = self._children(parent)
        children[new] = children.pop(old)

    def set_kind(self, path: Path, kind: Kind, target: bytes | None = None) -> None:
        """chmod: change a file's kind (a symlink ``target`` replaces the content)."""
        node = self._find(path)
        if node is None:
            raise NotFound()
        if isinstance(node, _Dir) or kind is Kind.DIR:
            raise IsADirectory()
        if node.kind is Kind.GITLINK or kind is Kind.GITLINK:
            raise ReadOnlyEntry()
        if kind is Kind.LINK:
            check_name(path[-1], symlink=True)
        self._dir_for_edit(path[:-1], create=False)
        if kind is not node.kind:
            node.mode = b""  # a new kind is written with our spelling of its mode
        node.kind = kind
        if target is not None:
            node.data = bytearray(target)
            node.sha = None

    def force_put(self, path: Path, kind: Kind, data: bytes) -> None:
        """Put a file, destroying whatever is in the way (merge-internal)."""
        if not path:
            raise IsADirectory()
        self._check_new(path, symlink=kind is Kind.LINK)
        parent = self._dir_for_edit(path[:-1], create=True, force=True)
        self._children(parent)[path[-1]] = _File(kind, None, bytearray(data))

    def _force_entry(self, path: Path, entry: Entry | None) -> None:
        if entry is None:
            if self._find_quiet(path) is not None:
                parent = self._dir_for_edit(path[:-1], create=False)
                del self._children(parent)[path[-1]]
            return
        if not path:
            self._root = _Dir(entry.sha, None)
            return
        parent = self._dir_for_edit(path[:-1], create=True, force=True)
        self._children(parent)[path[-1]] = _node_of(entry)

    # -- committing ----------------------------------------------------------
    def stage_big_files(self) -> list[tuple[_File, Content, int]]:
        """Edited files in temporary files whose blob is not written yet.

        Hashing and deflating them is slow (seconds a GiB), so a server does
        it in a worker thread with :meth:`write_staged` while it goes on
        serving, then records the ids with :meth:`note_staged`."""
        staged: list[tuple[_File, Content, int]] = []
        todo = [self._root]
        while todo:
            d = todo.pop()
            if not d.dirty or d.children is None:
                continue
            for child in d.children.values():
                if isinstance(child, _Dir):
                    todo.append(child)
                elif child.sha is None and isinstance(child.data, Content) and child.data.spilled:
                    staged.append((child, child.data, child.data.version))
        return staged

    def write_staged(self, staged: list[tuple[_File, Content, int]]) -> list[str]:
        """The blobs of staged files (safe in a thread: reads content only)."""
        return [self._db.put_content(content) for _, content, _ in staged]

    def note_staged(self, staged: list[tuple[_File, Content, int]], shas: list[str]) -> None:
        """Record blob ids of files not changed since they were staged."""
        for (f, content, version), sha in zip(staged, shas, strict=True):
            if f.data is content and content.version == version and f.sha is None:
                f.sha = sha

    def _write_file(self, f: _File) -> str:
        if f.sha is None:
            assert f.data is not None
            if isinstance(f.data, Content):
                f.sha = self._db.put_content(f.data)
            else:
                f.sha = self._db.put_blob(bytes(f.data))
        return f.sha

    def _write(self, top: _Dir) -> str | None:
        """Store the edited directories under ``top``, deepest first."""
        stack = [(top, False)]
        while stack:
            d, below_done = stack.pop()
            if not d.dirty:
                continue
            children = self._children(d)
            if not below_done:
                stack.append((d, True))
                stack.extend((c, False) for c in children.values() if isinstance(c, _Dir))
                continue
            # The tree this directory was loaded from (d.sha until it is
            # written): an entry that did not change is taken from it as it
            # is, the same object, which _check_special_files then skips.
            base = self._db.tree_entries(d.sha) if d.sha is not None else None
            entries: dict[str, Entry] = {}
            for name, child in children.items():
                if isinstance(child, _Dir):
                    if child.sha is None:
                        continue
                    kind, sha = Kind.DIR, child.sha
                else:
                    kind, sha = child.kind, self._write_file(child)
                old = base.get(name) if base is not None else None
                if (
                    old is not None
                    and old.sha == sha
                    and old.kind is kind
                    and old.mode == child.mode
                ):
                    entries[name] = old
                else:
                    entries[name] = Entry(kind, sha, child.mode)
            self._check_special_files(d.sha, entries)
            # A directory holding only hidden entries is kept: they are data.
            d.sha = self._db.put_tree(entries, d.hidden) if entries or d.hidden else None
            d.dirty = False
        return top.sha

    def _check_special_files(self, old_tree: str | None, entries: dict[str, Entry]) -> None:
        """A new or changed .gitmodules or .gitattributes (by any name a
        checkout reads as one) must pass git's fsck checks of its content;
        InvalidContent, before anything of the tree is stored. One the
        directory already held, or a merge took from another commit, is kept
        as it is even if git would refuse it: a tree written elsewhere must
        stay committable (issue #8, point 2)."""
        # The unchanged entries are skipped first: a commit that changes one
        # file of a big directory checks one name, not all of them (the
        # name checks cost microseconds each, a comparison much less).
        old = self._db.tree_entries(old_tree) if old_tree is not None else None
        for name, entry in entries.items():
            if entry.kind is not Kind.FILE and entry.kind is not Kind.EXEC:
                continue
            if old is not None and (old.get(name) is entry or old.get(name) == entry):
                continue
            file = _special_file(name)
            if file is None or (name, entry) in self._merged_in:
                continue
            reason = special_problem(file, self._db.blob(entry.sha))
            if reason is not None:
                raise InvalidContent(f"Invalid {file} file {shown_name(name)}: {reason}")

    def write_tree(self) -> str:
        """Store the content (empty directories dropped); return the tree id."""
        sha = self._write(self._root)
        if sha is None:
            return self._db.put_tree({})
        return sha

    # -- merging -------------------------------------------------------------
    def merge(self, ours: TreeView, theirs: TreeView, base: TreeView | None) -> list[Path]:
        """Three-way merge of ``theirs`` into this tree (which holds ``ours``).

        Returns the paths that conflicted; they are also added to
        :attr:`conflicts` and hold a conflict file.
        """
        db = self._db

        def walk(w: _MergeWalk) -> list[_MergeWalk | _MergeEdit]:
            """One directory's edits and sub-directories to walk, in path order."""
            todo: list[_MergeWalk | _MergeEdit] = []
            o = db.tree_entries(w.ours) if w.ours else {}
            t = db.tree_entries(w.theirs) if w.theirs else {}
            b = db.tree_entries(w.base) if w.base else {}
            for name in sorted(o.keys() | t.keys(), key=encode_name):
                oe, te, be = o.get(name), t.get(name), b.get(name)
                p = (*w.path, name)
                o_dir = oe is not None and oe.kind is Kind.DIR
                t_dir = te is not None and te.kind is Kind.DIR
                if oe is not None and te is not None and o_dir != t_dir:
                    todo.append(_MergeEdit(p, None, CONFLICT_FILE_VS_DIR))
                    continue
                if o_dir or t_dir:
                    b_sub = be.sha if be is not None and be.kind is Kind.DIR else None
                    o_sub = oe.sha if oe is not None else None
                    t_sub = te.sha if te is not None else None
                    if o_sub == t_sub or t_sub == b_sub:
                        continue  # identical, or theirs unchanged: keep ours
                    if o_sub == b_sub:
                        todo.append(_MergeEdit(p, te))  # ours unchanged: take theirs
                        continue
                    todo.append(_MergeWalk(p, o_sub, t_sub, b_sub))
                    continue
                bf = be if be is not None and be.kind is not Kind.DIR else None
                if oe == bf:
                    if te != bf:
                        todo.append(_MergeEdit(p, te))
                elif te == bf or oe == te:
                    pass
                elif oe is not None and te is not None:
                    reason = CONFLICT_ADD_ADD if bf is None else CONFLICT_BOTH_CHANGED
                    todo.append(_MergeEdit(p, None, reason))
                else:
                    todo.append(_MergeEdit(p, None, CONFLICT_ADD_DEL))
            return todo

        # Every tree is read before the first edit: one that cannot be read
        # (CorruptTree) fails the merge with this tree untouched.
        edits: list[_MergeEdit] = []
        stack: list[_MergeWalk | _MergeEdit] = [
            _MergeWalk((), ours.sha, theirs.sha, base.sha if base is not None else None)
        ]
        while stack:
            item = stack.pop()
            if isinstance(item, _MergeWalk):
                stack.extend(reversed(walk(item)))
            else:
                edits.append(item)

        new_conflicts: list[Path] = []
        for edit in edits:
            if edit.conflict is None:
                self._force_entry(edit.path, edit.entry)
                if edit.entry is not None:
                    self._merged_in.add((edit.path[-1], edit.entry))
            else:
                self.force_put(edit.path, Kind.FILE, conflict_bytes(edit.conflict))
                self.conflicts.add(edit.path)
                new_conflicts.append(edit.path)
        return new_conflicts


class _MergeWalk(NamedTuple):
    """A directory changed on both sides, to merge entry by entry."""

    path: Path
    ours: str | None
    theirs: str | None
    base: str | None


class _MergeEdit(NamedTuple):
    """Take ``entry`` (None: remove) at ``path``, or write a conflict file."""

    path: Path
    entry: Entry | None
    conflict: bytes | None = None
