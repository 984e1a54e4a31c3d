"""Run the fake GitHub on its own, for trying a bridge by hand.

    python -m tests.bridges.fakegithub --port 8090 --repo u/r [--token T]

prints the base URL to give the bridge as `--github-url`, and serves until
interrupted (SIGINT or SIGTERM).  Drive it with POST /_control/<method> and
the method's keyword arguments as JSON, e.g.
`curl -d '{"repo":"u/r","ref":"master"}' http://127.0.0.1:8090/_control/push`.
"""

from __future__ import annotations

import argparse
import signal
import threading

from tests.bridges.fakegithub.control import FakeGitHub
from tests.bridges.fakegithub.server import FakeServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bridges.fakegithub")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None, help="require this API token")
    parser.add_argument("--repo", action="append", default=[], help="user/name to create")
    args = parser.parse_args()
    fake = FakeGitHub(args.token)
    for repo in args.repo:
        fake.create_repo(repo)
    server = FakeServer(fake, args.host, args.port)
    print(server.start(), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    fake.close()


if __name__ == "__main__":
    main()
