"""Fixtures for kernel-client tests (see kernelsupport.py and README.md here)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernelsupport import datakit_server, ninep_server, vm  # noqa: F401
