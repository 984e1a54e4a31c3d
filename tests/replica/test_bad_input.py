"""Bad input to a replica: a URL the operator's policy refuses is one line
and exit status 2 at start; a primary answering garbage is logged once and
the replica goes on serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from datakit.client.ninep_client import Client
from tests.replica.helpers import log_text, metric, replica, wait_for
from tests.replica.test_lsremote import answering


def test_a_mirror_url_the_policy_refuses_stops_the_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "datakit", "serve",
            "--listen-9p", "tcp://127.0.0.1:0", "--mirror", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("datakit: --mirror: ")
    assert "local paths and file:// remotes are not allowed" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_a_primary_answering_garbage_is_logged_once_and_the_replica_serves(
    tmp_path: Path,
) -> None:
    log = tmp_path / "replica.log"
    with answering(b"garbage\n") as url, open(log, "wb") as out:
        with replica(url, log=out) as (r, proc):
            wait_for(lambda: metric(r["metrics"], "datakit_replica_errors_total") >= 3, "errors")
            with Client.connect(f"tcp://127.0.0.1:{r['9p']}") as c:
                assert c.ls("branch") == []
            assert log_text(log).count("bad answer from the remote") == 1
            assert proc.poll() is None
            proc.terminate()  # SIGTERM, mid back-off: a clean stop
            assert proc.wait(30) == 0
