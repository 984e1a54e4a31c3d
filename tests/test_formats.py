"""datakit/formats.py: every text format parses back what it renders, the
parsers accept what the spec allows, and the layers' kinds agree by name."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from datakit import store as st
from datakit import vfs
from datakit.client import values
from datakit.formats import (
    KIND_NAMES,
    Change,
    DiffOp,
    Path,
    convert_kind,
    parse_diff,
    parse_head,
    parse_node_id,
    parse_node_line,
    parse_parents,
    parse_paths,
    render_diff,
    render_fetched_head,
    render_gitlink,
    render_head,
    render_message,
    render_node_id,
    render_node_line,
    render_parents,
    render_paths,
)

KIND_ENUMS: list[type[enum.Enum]] = [st.Kind, vfs.Kind, values.Kind]
SHA = "d81e367f87ee314bcd3e449b1c6641efda5bc269"

shas = hs.text("0123456789abcdef", min_size=40, max_size=40)
# A path element as the server holds it: any bytes but '/' and NUL, non-UTF-8
# ones as surrogate escapes. A newline cannot survive a line format.
names = hs.binary(min_size=1, max_size=12).filter(
    lambda b: b not in (b".", b"..") and not set(b) & set(b"/\0\n")
).map(lambda b: b.decode("utf-8", "surrogateescape"))
paths = hs.lists(names, min_size=1, max_size=4).map(tuple)


# -- kinds ----------------------------------------------------------------------


@pytest.mark.parametrize("kinds", KIND_ENUMS, ids=lambda k: k.__module__)
def test_every_kind_enum_has_the_same_names(kinds: type[enum.Enum]) -> None:
    assert set(kinds.__members__) == KIND_NAMES


@pytest.mark.parametrize("source", KIND_ENUMS, ids=lambda k: k.__module__)
@pytest.mark.parametrize("target", KIND_ENUMS, ids=lambda k: k.__module__)
def test_kinds_convert_both_ways(source: type[enum.Enum], target: type[enum.Enum]) -> None:
    for kind in source:
        converted = convert_kind(kind, target)
        assert isinstance(converted, target)
        assert convert_kind(converted, source) is kind


def test_a_link_is_a_link_in_every_layer() -> None:
    assert convert_kind(st.Kind.LINK, vfs.Kind) is vfs.Kind.LINK
    assert convert_kind(st.Kind.LINK, values.Kind) is values.Kind.LINK


# -- node ids -------------------------------------------------------------------


@given(hs.sampled_from(list(st.Kind)), shas)
def test_node_ids_round_trip(kind: st.Kind, sha: str) -> None:
    assert parse_node_id(render_node_id(kind, sha), st.Kind) == (kind, sha)
    assert parse_node_line(render_node_line((kind, sha)), st.Kind) == (kind, sha)


def test_node_id_letters_are_the_specs() -> None:
    assert render_node_id(st.Kind.DIR, SHA) == f"D-{SHA}"
    assert render_node_id(st.Kind.FILE, SHA) == f"F-{SHA}"
    assert render_node_id(st.Kind.EXEC, SHA) == f"X-{SHA}"
    assert render_node_id(st.Kind.LINK, SHA) == f"L-{SHA}"
    assert render_node_id(st.Kind.GITLINK, SHA) == f"G-{SHA}"
    assert render_node_line((st.Kind.DIR, SHA)) == f"D-{SHA}\n".encode()


def test_node_ids_parse_into_the_callers_kinds() -> None:
    assert parse_node_id(f"L-{SHA}", values.Kind) == (values.Kind.LINK, SHA)
    assert parse_node_id(f"L-{SHA}", vfs.Kind) == (vfs.Kind.LINK, SHA)


def test_node_ids_allow_whitespace_around_the_hash() -> None:
    # spec §3.8: "Whitespace around the hash part is ignored."
    assert parse_node_id(f" F- {SHA}\n", st.Kind) == (st.Kind.FILE, SHA)


@pytest.mark.parametrize(
    "text",
    [
        "",
        SHA,
        f"Q-{SHA}",
        f"F{SHA}",
        f"F-{SHA[:-1]}",
        f"F-{SHA}0",
        f"F-{SHA.upper()}",
        f"F -{SHA}",
        f"FF-{SHA}",
    ],
)
def test_malformed_node_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_node_id(text, st.Kind)


def test_a_blank_node_line_is_no_node() -> None:
    assert render_node_line(None) == b"\n"
    assert parse_node_line(b"\n", st.Kind) is None
    assert parse_node_line(b"", st.Kind) is None


# -- heads -----------------------------------------------------------------------


@given(hs.one_of(hs.none(), shas))
def test_heads_round_trip(head: str | None) -> None:
    assert parse_head(render_head(head)) == head
    assert parse_head(render_fetched_head(head)) == head


def test_head_renderings() -> None:
    assert render_head(SHA) == f"{SHA}\n".encode()
    assert render_head(None) == b"\n"  # 1 byte: spec §3.3
    assert render_fetched_head(SHA) == f"{SHA}\n".encode()
    assert render_fetched_head(None) == b""  # a stream with nothing yet


def test_parse_head_reads_the_first_line_trimmed() -> None:
    assert parse_head(f" {SHA} \n{'0' * 40}\n".encode()) == SHA


# -- parents and paths -------------------------------------------------------------


@given(hs.lists(shas, max_size=5))
def test_parents_round_trip(ids: list[str]) -> None:
    assert parse_parents(render_parents(ids)) == ids


def test_parents_drop_empty_lines_but_do_not_trim() -> None:
    # spec §3.4: the store then refuses " <id>" as an invalid hash.
    assert parse_parents(f"\n{SHA}\n\n {SHA}".encode()) == [SHA, f" {SHA}"]
    assert render_parents([]) == b""


@given(hs.lists(paths, max_size=5))
def test_paths_round_trip(listed: list[Path]) -> None:
    assert parse_paths(render_paths(listed)) == listed


def test_paths_keep_non_utf8_names() -> None:
    raw = b"caf\xe9/x\n"
    assert render_paths(parse_paths(raw)) == raw


# -- diffs ---------------------------------------------------------------------------


changes = hs.builds(Change, hs.sampled_from(list(DiffOp)), paths)


@given(hs.lists(changes, max_size=6))
def test_diffs_round_trip(listed: list[Change]) -> None:
    assert parse_diff(render_diff(listed)) == listed


def test_diff_lines_are_the_specs() -> None:
    listed = [
        Change(DiffOp.ADDED, ("a", "b")),
        Change(DiffOp.REMOVED, ("c",)),
        Change(DiffOp.UPDATED, ("d",)),
    ]
    assert render_diff(listed) == b"+ a/b\n- c\n* d\n"


def test_parse_diff_skips_what_it_does_not_understand() -> None:
    text = b"+ a\n\n? b\n+\n+b\n+ \n- c"
    assert parse_diff(text) == [Change(DiffOp.ADDED, ("a",)), Change(DiffOp.REMOVED, ("c",))]


def test_store_diff_returns_typed_changes() -> None:
    store = st.Store.memory()
    tree = store.edit(None)
    tree.put(("d", "f"), b"x")
    changes = store.diff(None, tree.write_tree())
    assert changes == [Change(DiffOp.ADDED, ("d", "f"))]
    assert type(changes[0]) is Change and changes[0].op is DiffOp.ADDED
    # Still equal to the (mark, path) pairs the store returned before.
    assert changes == [("+", ("d", "f"))]


# -- commits and submodules -----------------------------------------------------------


def test_message_and_gitlink_renderings() -> None:
    assert render_message(b"hi\n") == b"hi\n\n"  # spec §3.7: the message, then "\n"
    assert render_gitlink(SHA) == f"{SHA}\n".encode()
