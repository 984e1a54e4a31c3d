"""IM-18: a 100,000-file tree. The full export is streamed (the CLI's peak
RSS stays under 150 MB), and a one-file change gives a delta layer with that
file and its parent directories only. Nothing here asserts on time; the
numbers measured are printed (run with -s to see them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from datakit.client import connect
from tests.images.imagehelpers import (
    git_fast_import,
    names,
    read_layout,
    run_image_rss,
)

TOP, MID, LEAF = 100, 10, 100  # 100 * 10 * 100 = 100,000 files
RSS_LIMIT = 150 * 10**6  # "150 MB" (spec IM-18)


def content(i: int, j: int, k: int) -> bytes:
    return b"file %d/%d/%d\n" % (i, j, k) + b"." * (k % 50)


def fast_import_stream() -> bytes:
    """One commit holding the whole tree, for `git fast-import` (seconds,
    where 100,000 client calls would take minutes)."""
    out = [b"commit refs/heads/master\n",
           b"committer t <t@example.com> 1500000000 +0000\n",
           b"data 6\nlarge\n"]  # fmt: skip
    for i in range(TOP):
        for j in range(MID):
            for k in range(LEAF):
                data = content(i, j, k)
                mode = b"100755" if k % 10 == 0 else b"100644"
                path = b"d%03d/e%d/f%03d" % (i, j, k)
                out.append(b"M %s inline %s\ndata %d\n%s\n" % (mode, path, len(data), data))
    out.append(b"\n")
    return b"".join(out)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_im_18_large_tree_small_change(tmp_path: Path) -> None:
    repo = tmp_path / "large.git"
    git_fast_import(repo, fast_import_stream())
    with connect(str(repo)) as conn:
        master = conn.branch("master")
        c1 = master.head()
        assert c1 is not None
        layout = tmp_path / "L"

        start = time.monotonic()
        res, rss = run_image_rss(
            "export", "--db", str(repo), "--commit", c1.id, "--oci-layout", f"{layout}:v1",
            rss_file=tmp_path / "rss1",
        )  # fmt: skip
        full_time = time.monotonic() - start
        digest, how = res.one()
        assert how == "full"
        img = read_layout(layout, "v1")
        assert img.manifest_digest == digest
        size = img.layers[0]["size"]
        print(f"\nIM-18 full export: 100,000 files, layer {size} bytes, "
              f"{full_time:.1f} s, peak RSS {rss / 2**20:.1f} MiB")  # fmt: skip
        assert rss < RSS_LIMIT, f"peak RSS {rss / 2**20:.1f} MiB"
        # the layer holds every file and directory once
        entries = img.layer_entries(0)
        assert len(entries) == TOP * MID * LEAF + TOP * MID + TOP
        assert len({e.name for e in entries}) == len(entries)

        with master.transaction() as t:
            t.replace_file("d042/e7/f013", b"changed\n")
            t.commit("one file")
        c2 = master.head()
        assert c2 is not None

        start = time.monotonic()
        res, rss2 = run_image_rss(
            "export", "--db", str(repo), "--commit", c2.id, "--oci-layout", f"{layout}:v1",
            rss_file=tmp_path / "rss2",
        )  # fmt: skip
        delta_time = time.monotonic() - start
        _digest, how = res.one()
        assert how == f"delta from {c1.id}"
        img = read_layout(layout, "v1")
        assert len(img.layers) == 2
        delta = img.layer_entries(1)
        print(f"IM-18 delta export: layer {img.layers[1]['size']} bytes, "
              f"{delta_time:.1f} s (whole CLI run), peak RSS {rss2 / 2**20:.1f} MiB")  # fmt: skip
        assert names(delta) == ["d042/", "d042/e7/", "d042/e7/f013"]
        assert delta[2].data == b"changed\n"
        assert delta[2].mode == 0o644
        img.check_digests()
