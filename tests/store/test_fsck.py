"""The files git reads from a checkout with security consequences
(.gitmodules, .gitattributes, and every name NTFS or HFS+ opens as them)
get git's fsck checks when a commit stores a new one: a submodule named
"../../x", a url taken for an option, a .gitattributes line past 2,048
bytes, or such a name as a directory, would make `git fsck --strict`
refuse the repository. One that a tree written elsewhere already holds is
kept as it is (issue #8, point 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.store import InvalidContent, InvalidName, Store
from tests.gitrepo import blob, git, literal_tree

BAD_MODULES = b'[submodule "../../x"]\n\tpath = x\n\turl = https://e/x\n'
GOOD_MODULES = b'[submodule "x"]\n\tpath = x\n\turl = https://e/x\n'
CASES = [
    ((".gitmodules",), BAD_MODULES, "bad submodule name"),
    (("d", "GITMOD~1"), b'[submodule "m"]\n\tpath = m\n\turl = -upload-pack=x\n', "bad url"),
    (("gi7eba~1",), b'[submodule "m"]\n\tpath = -m\n\turl = https://e/x\n', "bad path"),
    ((".gitattributes",), b"*" + b"x" * 3000 + b" text\n", "longer than 2048"),
]


@pytest.mark.parametrize(("path", "data", "reason"), CASES)
def test_a_new_bad_special_file_is_refused(
    disk_store: Store, path: tuple[str, ...], data: bytes, reason: str
) -> None:
    t = disk_store.edit(None)
    t.put(path, data)
    with pytest.raises(InvalidContent, match=reason):
        t.write_tree()
    # Nothing was lost and the tree still commits once the file is fixed.
    assert t.read_all(path) == data
    t.put(path, GOOD_MODULES if "mod" in path[-1].lower() else b"* text\n")
    tree = t.write_tree()
    disk_store.persist(tree)
    git(Path(disk_store.path or ""), "fsck", "--strict", tree)


def test_renaming_a_file_to_gitmodules_checks_it(disk_store: Store) -> None:
    t = disk_store.edit(None)
    t.put(("notes",), BAD_MODULES)
    base = t.write_tree()  # a file of any other name may hold anything
    t = disk_store.edit(base)
    t.rename((), "notes", ".gitmodules")
    with pytest.raises(InvalidContent, match="bad submodule name"):
        t.write_tree()


def test_special_names_must_be_files(disk_store: Store) -> None:
    t = disk_store.edit(None)
    for name in (".gitattributes", "GITATT~1", ".gitmodules"):
        with pytest.raises(InvalidName, match="must be a file"):
            t.mkdir((name,))


def test_a_bad_one_written_by_git_is_kept(disk_store: Store) -> None:
    repo = Path(disk_store.path or "")
    bad = literal_tree(repo, [(b"100644", b".gitmodules", blob(repo, BAD_MODULES))])
    t = disk_store.edit(bad)
    t.put(("new",), b"x")
    tree = t.write_tree()
    disk_store.persist(tree)
    assert t.read_all((".gitmodules",)) == BAD_MODULES
    assert git(repo, "rev-parse", f"{tree}:.gitmodules") == blob(repo, BAD_MODULES)
