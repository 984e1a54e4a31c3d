"""`datakit mount [HOST] [MOUNTPOINT]`: run the right `mount -t 9p` for a DataKit server."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys


def mount_command(args: argparse.Namespace) -> list[str]:
    options = [
        "trans=tcp",
        f"port={args.port}",
        f"version={args.protocol}",
        f"msize={args.msize}",
        # Live files change without the client knowing: never cache.
        "cache=none",
    ]
    if args.options:
        options.append(args.options)
    return ["mount", "-t", "9p", "-o", ",".join(options), args.host, args.mountpoint]


def _kernel_has_9p() -> bool | None:
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1] == "9p" for line in f if line.strip()):
                return True
    except OSError:
        return None
    release = os.uname().release
    return os.path.exists(f"/lib/modules/{release}/kernel/fs/9p") or None


def mount(args: argparse.Namespace) -> int:
    cmd = mount_command(args)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if os.geteuid() != 0:
        print(
            "datakit mount: mounting 9p needs root (run with sudo, or in a container started "
            "with --privileged)",
            file=sys.stderr,
        )
        return 1
    if _kernel_has_9p() is None:
        print(
            "datakit mount: this kernel has no 9p filesystem (no '9p' in /proc/filesystems and "
            "no 9p module); load it with `modprobe 9p 9pnet_fd` or use a kernel with CONFIG_9P_FS",
            file=sys.stderr,
        )
        return 1
    try:
        os.makedirs(args.mountpoint, exist_ok=True)
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    except OSError as exc:  # a mount point that is a file, no `mount` program...
        print(f"datakit mount: {exc.filename or args.mountpoint}: {exc.strerror}", file=sys.stderr)
        return 1
    if result.returncode != 0:
        print(f"datakit mount: {shlex.join(cmd)} failed: {result.stderr.strip()}", file=sys.stderr)
        return result.returncode
    return 0
