"""server/attrs.py: a node's qid, built once and kept on the node (vfs `cached_qid`)."""

from __future__ import annotations

from datakit import ninep
from datakit.server.attrs import qid_of
from datakit.vfs import MappingDir, Node, StaticFile


def test_a_qid_is_built_once_per_node_and_kept_on_it() -> None:
    file = StaticFile("f", b"")
    qid = qid_of(file)
    assert file.cached_qid is qid
    assert qid_of(file) is qid
    assert qid == ninep.Qid(ninep.QTFILE, 0, file.qid_path)


def test_a_directory_gets_a_directory_qid_of_its_own() -> None:
    directory: MappingDir[Node] = MappingDir("d")
    file = StaticFile("f", b"")
    assert qid_of(directory) == ninep.Qid(ninep.QTDIR, 0, directory.qid_path)
    assert qid_of(directory).path != qid_of(file).path


def test_a_renamed_node_keeps_its_qid() -> None:
    directory = MappingDir("d", [StaticFile("f", b"")])
    file = directory.children["f"]
    qid = qid_of(file)
    directory.move(file, directory, "g")
    assert qid_of(file) is qid
