"""Interop tests reuse the kernel-client fixtures from tests/kernel/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kernel"))

from kernelsupport import datakit_server, ninep_server, vm  # noqa: F401
