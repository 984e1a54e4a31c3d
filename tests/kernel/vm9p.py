#!/usr/bin/env python3
# ruff: noqa  (vendored harness, kept close to /work/shared/tools/vm9p)
"""vm9p - run a shell script inside a throw-away Linux VM against a 9p mount.

DataKit's copy of the vm9p harness (originally /work/shared/tools/vm9p).
Changes: ``--version none`` (or ``--no-version``) mounts with no ``version=``
option at all (the kernel default, 9P2000.L); ``--mount2 PORT:DIR[:OPTS]``
mounts a second server in the same guest (bench/kernel_shell_bench.py:
datakit and diod side by side); a Python API for pytest
(:func:`prepare_environment`, :func:`run_guest_script`, :class:`GuestResult`).
CLI: ``python tests/kernel/vm9p.py --help``.

The guest is Debian's stock kernel (linux-image-amd64) + a busybox initramfs,
booted with qemu (KVM when it really works, TCG otherwise).  The guest mounts
a 9p server that listens on the HOST loopback (reached from the guest as
10.0.2.2 through qemu user-mode networking) with the real Linux v9fs client,
runs SCRIPT with busybox sh, and the script's exit status becomes ours.

Python 3 standard library only.  See tests/kernel/README.md.
"""

import argparse
import fcntl
import io
import json
import lzma
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

VERSION = "1.0-datakit"

# Exit codes used by the harness itself (anything else is the guest script's).
EXIT_MOUNT_FAILED = 123  # the 9p mount in the guest failed
EXIT_TIMEOUT = 124  # --timeout reached (like timeout(1))
BOOT_ATTEMPTS = 3  # boots tried when the guest hangs before init
EXIT_HARNESS = 125  # VM did not boot / guest setup failed / host error

MARK = "@@VM9P@@"
CACHE_FORMAT = 3

# Modules we need (plus their dependencies).  Optional ones may not exist
# in older kernels (trans_fd lived inside 9pnet before 5.17-ish).
ROOT_MODULES = [
    ("virtio_pci", True),
    ("virtio_net", True),
    ("virtio_console", False),
    ("9pnet", True),
    ("9pnet_fd", False),
    ("9p", True),
]
# directories searched in the first pass over the kernel package
MODULE_DIRS = (
    "kernel/fs/9p/",
    "kernel/net/9p/",
    "kernel/fs/netfs/",
    "kernel/fs/fscache/",
    "kernel/drivers/net/virtio_net",
    "kernel/drivers/net/net_failover",
    "kernel/net/core/failover",
    "kernel/drivers/virtio/",
    "kernel/drivers/char/virtio_console",
)

GUEST_INIT = r"""#!/bin/sh
# vm9p guest /init (busybox sh, PID 1)
export PATH=/bin HOME=/root TERM=dumb
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /root /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
CON=/dev/ttyS0
up() { read u _ < /proc/uptime; echo "$u"; }
mark() { echo "@@VM9P@@ $* t=$(up)" > $CON; }
halt_now() { sync; poweroff -f; sleep 10; echo o > /proc/sysrq-trigger; }
die() { mark FAIL "$*"; halt_now; }
mark INIT
. /vm9p/env
for m in $(cat /vm9p/modules); do
  insmod "/lib/modules/vm9p/$m.ko" > $CON 2>&1 || die "insmod $m failed"
done
mark MODULES
n=0; while [ ! -e /sys/class/net/eth0 ]; do
  n=$((n+1)); [ $n -gt 100 ] && die "no eth0"; sleep 0.05; done
ip link set lo up
ip addr add "$VM9P_GUEST_IP/24" dev eth0 || die "ip addr failed"
ip link set eth0 up || die "ip link up failed"
ip route add default via "$VM9P_GW" || die "ip route failed"
echo "nameserver 10.0.2.3" > /etc/resolv.conf 2>/dev/null
mark NET
mkdir -p "$VM9P_MNT"
cd /
if [ "$VM9P_DO_MOUNT" = 1 ]; then
  if ! mount -t 9p -o "$VM9P_MOUNT_OPTS" "$VM9P_HOST" "$VM9P_MNT" 2>/tmp/mount.err; then
    err=$(tr '\n' ' ' < /tmp/mount.err)
    mark MOUNTFAIL "$err"
    dmesg | tail -n 5 > $CON
    halt_now
  fi
  cd "$VM9P_MNT"
  if [ -n "$VM9P_MOUNT2_DIR" ]; then
    mkdir -p "$VM9P_MOUNT2_DIR"
    if ! mount -t 9p -o "$VM9P_MOUNT2_OPTS" "$VM9P_HOST" "$VM9P_MOUNT2_DIR" 2>/tmp/mount.err; then
      err=$(tr '\n' ' ' < /tmp/mount.err)
      mark MOUNTFAIL "(second mount at $VM9P_MOUNT2_DIR) $err"
      dmesg | tail -n 5 > $CON
      halt_now
    fi
  fi
fi
mark MOUNTED
if [ "$VM9P_CHAN" = virtio ]; then
  # virtio-serial ports (fast, binary clean); find them by name
  for d in /sys/class/virtio-ports/*; do
    [ -e "$d/name" ] && ln -sf "/dev/${d##*/}" "/dev/vm9p-$(cat $d/name)"
  done
  OUT=/dev/vm9p-out; ERR=/dev/vm9p-err
  [ -e $OUT ] && [ -e $ERR ] || die "virtio-serial ports missing"
else
  for t in ttyS1 ttyS2; do [ -e /dev/$t ] && stty -F /dev/$t raw -echo 2>/dev/null; done
  OUT=/dev/ttyS1; ERR=/dev/ttyS2
fi
eval "set -- $VM9P_ARGS"
mark START
# (a virtio port can be open only once at a time: hence 2>&1, not 2>$OUT)
if [ "$VM9P_SPLIT_STDERR" = 1 ]; then
  sh /vm9p/script "$@" < /dev/null > $OUT 2> $ERR
else
  sh /vm9p/script "$@" < /dev/null > $OUT 2>&1
fi
rc=$?
mark EXIT "$rc"
cd /
kill -9 -1 2>/dev/null; sleep 0.1
if [ "$VM9P_DO_MOUNT" = 1 ]; then
  sync
  [ -n "$VM9P_MOUNT2_DIR" ] && umount "$VM9P_MOUNT2_DIR" > $CON 2>&1
  umount "$VM9P_MNT" > $CON 2>&1; urc=$?
  mark UMOUNT "$urc"
fi
mark POWEROFF
halt_now
"""


def log(msg):
    sys.stderr.write("vm9p: %s\n" % msg)
    sys.stderr.flush()


class HarnessError(Exception):
    pass


# ----------------------------------------------------------------------------
# cpio (newc) writer
# ----------------------------------------------------------------------------
class Cpio:
    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1000
        self.dirs = set()

    def _entry(self, name, mode, data=b""):
        name = name.lstrip("/").encode()
        self.ino += 1
        fields = [
            self.ino,
            mode,
            0,
            0,
            2 if mode & 0o040000 else 1,
            0,
            len(data),
            0,
            0,
            0,
            0,
            len(name) + 1,
            0,
        ]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + name + b"\0")
        self.buf.write(b"\0" * ((-self.buf.tell()) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * ((-self.buf.tell()) % 4))

    def mkdir(self, path, mode=0o755):
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        parent = os.path.dirname(path)
        if parent:
            self.mkdir(parent)
        self.dirs.add(path)
        self._entry(path, 0o040000 | mode)

    def file(self, path, data, mode=0o644):
        self.mkdir(os.path.dirname(path.strip("/")))
        self._entry(path, 0o100000 | mode, data)

    def symlink(self, path, target):
        self.mkdir(os.path.dirname(path.strip("/")))
        self._entry(path, 0o120777, target.encode())

    def finish(self):
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * ((-self.buf.tell()) % 512))
        return self.buf.getvalue()


# ----------------------------------------------------------------------------
# cache (kernel + modules + busybox), built from Debian packages
# ----------------------------------------------------------------------------
def cache_root(args):
    if args.cache_dir:
        return os.path.abspath(args.cache_dir)
    if os.environ.get("VM9P_CACHE"):
        return os.path.abspath(os.environ["VM9P_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vm9p")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def is_root():
    return os.geteuid() == 0


def apt_update_once(state):
    if state.get("updated") or not is_root():
        return False
    log("running apt-get update")
    subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state["updated"] = True
    return True


def ensure_qemu(args):
    q = shutil.which(args.qemu) if args.qemu else None
    if q:
        return q
    if shutil.which("qemu-system-x86_64"):
        return shutil.which("qemu-system-x86_64")
    if not is_root():
        raise HarnessError(
            "qemu-system-x86_64 not found; install it with: "
            "apt-get install --no-install-recommends qemu-system-x86"
        )
    st = {}
    for attempt in range(2):
        log("installing qemu-system-x86 with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if r.returncode == 0 and shutil.which("qemu-system-x86_64"):
            return shutil.which("qemu-system-x86_64")
        if not apt_update_once(st):
            break
    raise HarnessError(
        "could not install qemu-system-x86: %s" % r.stderr.decode(errors="replace")[-500:]
    )


def resolve_kernel_pkg(state):
    """linux-image-amd64 (a meta package) -> linux-image-X.Y.Z-N-amd64."""
    pkg = os.environ.get("VM9P_KERNEL_PKG", "linux-image-amd64")
    for attempt in range(2):
        r = subprocess.run(
            ["apt-cache", "depends", "--important", pkg],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                m = re.match(r"\s*Depends:\s*(linux-image-[^\s<>]+)", line)
                if m:
                    return m.group(1)
            return pkg  # already a real image package
        if not apt_update_once(state):  # e.g. no apt lists yet
            break
    raise HarnessError("apt-cache does not know %s (run apt-get update?)" % pkg)


def apt_download(pkgs, dest, st):
    for attempt in range(2):
        r = subprocess.run(
            ["apt-get", "download"] + pkgs,
            cwd=dest,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        debs = [os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".deb")]
        if r.returncode == 0 and len(debs) >= len(pkgs):
            return debs
        if not apt_update_once(st):
            break
    raise HarnessError(
        "apt-get download %s failed: %s"
        % (" ".join(pkgs), r.stderr.decode(errors="replace")[-800:])
    )


def deb_members(deb, want):
    """Stream the data tarball of a .deb; call want(name) -> bool and
    yield (name, bytes) for wanted regular files."""
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=p.stdout, mode="r|") as tf:
            for ti in tf:
                name = ti.name[2:] if ti.name.startswith("./") else ti.name
                if ti.isfile() and want(name):
                    yield name, tf.extractfile(ti).read()
    finally:
        p.stdout.close()
        p.wait()


def ko_decompress(name, data):
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        import gzip

        return gzip.decompress(data)
    if name.endswith(".zst"):
        z = shutil.which("zstd")
        if not z:
            raise HarnessError("module %s is zstd-compressed; install zstd" % name)
        return subprocess.run([z, "-dc"], input=data, stdout=subprocess.PIPE, check=True).stdout
    return data


def modinfo(data):
    info = {}
    for m in re.finditer(rb"(?:^|\0)(depends|name|vermagic)=([^\0]*)", data):
        info.setdefault(m.group(1).decode(), m.group(2).decode())
    return info


KO_RE = re.compile(r"^(?:usr/)?lib/modules/([^/]+)/(kernel/.*?)([^/]+)\.ko(\.xz|\.gz|\.zst)?$")


def extract_vmlinux(bz):
    """Uncompressed ELF vmlinux from a bzImage if it has a PVH entry note
    (qemu then boots it directly: no in-guest decompression, which costs
    ~2 s under TCG).  Returns None if not possible."""
    try:
        if bz[0x202:0x206] != b"HdrS":
            return None
        setup_sects = bz[0x1F1] or 4
        off = (setup_sects + 1) * 512 + int.from_bytes(bz[0x248:0x24C], "little")
        ln = int.from_bytes(bz[0x24C:0x250], "little")
        payload = bz[off : off + ln]
        if payload.startswith(b"\xfd7zXZ\x00"):
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            import zlib

            out = zlib.decompressobj(31).decompress(payload)
        elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            out = subprocess.run(
                ["zstd", "-dc"], input=payload, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            ).stdout
        else:
            return None
        if out[:4] != b"\x7fELF" or out[4] != 2:
            return None
        # look for the Xen PHYS32_ENTRY (type 18) ELF note in PT_NOTE segments
        import struct

        (phoff,) = struct.unpack_from("<Q", out, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", out, 0x36)
        for i in range(phnum):
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
                "<IIQQQQ", out, phoff + i * phentsize
            )
            if p_type != 4:
                continue
            pos, end = p_offset, p_offset + p_filesz
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", out, pos)
                name = out[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
                if name == b"Xen" and ntype == 18:
                    return out
                pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
        return None
    except Exception:
        return None


def modname(fname):
    return fname.replace("-", "_")


def build_cache(cdir, force=False):
    """Populate cdir with vmlinuz, modules/*.ko, busybox, info.json."""
    info_path = os.path.join(cdir, "info.json")
    if not force and os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info.get("cache_format") == CACHE_FORMAT:
            return info
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if not shutil.which(tool):
            raise HarnessError("%s not found (a Debian host is required)" % tool)
    t0 = time.time()
    log("building kernel/initramfs cache in %s (one-time)" % cdir)
    os.makedirs(cdir, exist_ok=True)
    dl = tempfile.mkdtemp(prefix="dl-", dir=cdir)
    try:
        os.chmod(dl, 0o777)  # lets apt's _apt user write there (else a warning)
        st = {}
        kpkg = resolve_kernel_pkg(st)
        log("downloading %s and busybox-static" % kpkg)
        apt_download([kpkg], dl, st)
        kdeb = [d for d in os.listdir(dl) if d.endswith(".deb")][0]
        kdeb = os.path.join(dl, kdeb)
        bbdir = os.path.join(dl, "bb")
        os.makedirs(bbdir)
        os.chmod(bbdir, 0o777)
        bbdeb = apt_download(["busybox-static"], bbdir, st)[0]

        tmp = os.path.join(cdir, "new")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.join(tmp, "modules"))

        # busybox
        bb = None
        for name, data in deb_members(bbdeb, lambda n: re.search(r"(^|/)bin/busybox$", n)):
            bb = data
        if not bb:
            raise HarnessError("no busybox binary in %s" % bbdeb)
        with open(os.path.join(tmp, "busybox"), "wb") as f:
            f.write(bb)

        # kernel: vmlinuz, config, modules.builtin, candidate modules
        mods = {}  # modname -> (bytes, depends list)
        allko = set()
        builtin = set()
        kver = None
        vmlinuz = None
        config = b""

        def want1(n):
            m = KO_RE.match(n)
            if m:
                allko.add(modname(m.group(3)))
                return any(
                    (m.group(2) + m.group(3)).startswith(d) or m.group(2).startswith(d)
                    for d in MODULE_DIRS
                )
            return (
                re.match(r"^boot/(vmlinuz|config)-", n) is not None
                or re.match(r"^(usr/)?lib/modules/[^/]+/modules\.builtin$", n) is not None
            )

        def take(name, data):
            nonlocal kver, vmlinuz, config
            m = KO_RE.match(name)
            if m:
                kver = m.group(1)
                raw = ko_decompress(name, data)
                mods[modname(m.group(3))] = (
                    raw,
                    [d for d in modinfo(raw).get("depends", "").split(",") if d],
                )
            elif name.startswith("boot/vmlinuz-"):
                vmlinuz = (name[len("boot/vmlinuz-") :], data)
            elif name.startswith("boot/config-"):
                config = data
            elif name.endswith("modules.builtin"):
                for line in data.decode().splitlines():
                    builtin.add(modname(os.path.basename(line)[:-3]))

        for name, data in deb_members(kdeb, want1):
            take(name, data)
        if not vmlinuz:
            raise HarnessError("no /boot/vmlinuz-* in %s" % kdeb)

        # dependency closure; fetch missing deps by name (rarely needed)
        order = []
        need = []
        for r, required in ROOT_MODULES:
            if r in mods or r in allko:
                need.append(r)
            elif r in builtin:
                continue
            elif required:
                raise HarnessError("kernel has neither module nor built-in %s" % r)
        for _ in range(5):
            missing = set()
            seen = set()

            def visit(n):
                if n in seen or n in builtin:
                    return
                if n not in mods:
                    missing.add(n)
                    return
                seen.add(n)
                for d in mods[n][1]:
                    visit(d)

            for n in need:
                visit(n)
            if not missing:
                break
            log("second pass over the kernel package for %s" % ",".join(sorted(missing)))
            for name, data in deb_members(
                kdeb, lambda n: KO_RE.match(n) and modname(KO_RE.match(n).group(3)) in missing
            ):
                take(name, data)
            if not (missing & set(mods)):
                raise HarnessError("modules not found: %s" % ",".join(sorted(missing)))

        done = set()

        def topo(n):
            if n in done or n in builtin:
                return
            done.add(n)
            for d in mods[n][1]:
                topo(d)
            order.append(n)

        for n in need:
            topo(n)
        for n in order:
            with open(os.path.join(tmp, "modules", n + ".ko"), "wb") as f:
                f.write(mods[n][0])
        with open(os.path.join(tmp, "vmlinuz"), "wb") as f:
            f.write(vmlinuz[1])
        vml = extract_vmlinux(vmlinuz[1])
        if vml:
            with open(os.path.join(tmp, "vmlinux"), "wb") as f:
                f.write(vml)
        with open(os.path.join(tmp, "config"), "wb") as f:
            f.write(config)
        info = {
            "cache_format": CACHE_FORMAT,
            "kernel_version": vmlinuz[0],
            "module_dir_version": kver,
            "kernel_package": os.path.basename(kdeb),
            "busybox_package": os.path.basename(bbdeb),
            "modules": order,
            "pvh_vmlinux": bool(vml),
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_seconds": round(time.time() - t0, 1),
        }
        with open(os.path.join(tmp, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
        for n in ("busybox", "vmlinuz", "vmlinux", "config", "modules", "info.json"):
            dst = os.path.join(cdir, n)
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            elif os.path.exists(dst):
                os.unlink(dst)
            if os.path.exists(os.path.join(tmp, n)):
                os.rename(os.path.join(tmp, n), dst)
        shutil.rmtree(tmp, ignore_errors=True)
        log(
            "cache ready: kernel %s, modules %s (%.1fs)"
            % (info["kernel_version"], " ".join(order), time.time() - t0)
        )
        return info
    finally:
        shutil.rmtree(dl, ignore_errors=True)


def prepare(args):
    cdir = cache_root(args)
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        info = build_cache(cdir, force=args.rebuild)
    return cdir, info


# ----------------------------------------------------------------------------
# accelerator choice
# ----------------------------------------------------------------------------
def kvm_plausible():
    """/dev/kvm usable and backed by real hardware virtualisation?
    (e.g. a 'kvm_pvm' /dev/kvm only runs PVM-enabled guest kernels)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm not accessible"
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    if not re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M):
        return False, "CPU has no vmx/svm flag (nested/paravirtual KVM)"
    if os.path.exists("/sys/module/kvm_pvm"):
        return False, "/dev/kvm is kvm_pvm (needs a PVM guest kernel)"
    return True, ""


def kvm_marker(cdir):
    try:
        boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
    except OSError:
        boot_id = "unknown"
    return os.path.join(cdir, "kvm-broken-" + boot_id)


# ----------------------------------------------------------------------------
# running the VM
# ----------------------------------------------------------------------------
def build_initrd(cdir, info, args, script_bytes, path):
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "root", "etc", "lib/modules/vm9p", "vm9p"):
        c.mkdir(d)
    with open(os.path.join(cdir, "busybox"), "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    for m in info["modules"]:
        with open(os.path.join(cdir, "modules", m + ".ko"), "rb") as f:
            c.file("lib/modules/vm9p/%s.ko" % m, f.read())
    c.file("vm9p/modules", ("\n".join(info["modules"]) + "\n").encode())
    c.file("init", GUEST_INIT.encode(), 0o755)
    opts = mount_opts(args)
    env = {
        "VM9P_HOST": args.host,
        "VM9P_PORT": str(args.port),
        "VM9P_VERSION": args.version or "",
        "VM9P_OPTS": args.opts or "",
        "VM9P_MOUNT_OPTS": opts,
        "VM9P_MNT": args.mnt,
        "VM9P_MOUNT2_DIR": mount2_dir(args),
        "VM9P_MOUNT2_OPTS": mount2_opts(args),
        "VM9P_DO_MOUNT": "0" if args.no_mount else "1",
        "VM9P_GUEST_IP": "10.0.2.15",
        "VM9P_GW": "10.0.2.2",
        "VM9P_SPLIT_STDERR": "1" if args.split_stderr else "0",
        "VM9P_CHAN": channel_mode(info, args),
        "VM9P_ARGS": " ".join(shlex.quote(a) for a in args.script_args),
    }
    for kv in args.env:
        k, _, v = kv.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise HarnessError("bad --env %r" % kv)
        env[k] = v
    envtxt = "".join("export %s=%s\n" % (k, shlex.quote(v)) for k, v in env.items())
    c.file("vm9p/env", envtxt.encode())
    c.file("vm9p/script", script_bytes, 0o755)
    for spec in args.include:
        src, _, dst = spec.partition(":")
        if not dst:
            dst = "/vm9p/files/" + os.path.basename(src.rstrip("/"))
        with open(src, "rb") as f:
            c.file(dst, f.read(), os.stat(src).st_mode & 0o777)
    with open(path, "wb") as f:
        f.write(c.finish())


def mount_opts(args):
    """The -o string: trans, port, version (omitted when args.version is
    empty/None: the kernel then uses its default, 9P2000.L), extra opts."""
    opts = "trans=tcp,port=%d" % args.port
    if args.version:
        opts += ",version=%s" % args.version
    if args.opts:
        opts += "," + args.opts
    return opts


def parse_mount2(spec):
    """--mount2 PORT:DIR[:OPTS] -> (port, dir, opts); HarnessError if malformed."""
    port, _, rest = spec.partition(":")
    mdir, _, opts = rest.partition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or not mdir.startswith("/"):
        raise HarnessError("bad --mount2 %r (want PORT:/DIR[:OPTS])" % spec)
    return int(port), mdir, opts


def mount2_dir(args):
    spec = getattr(args, "mount2", "")
    return parse_mount2(spec)[1] if spec else ""


def mount2_opts(args):
    """The -o string of the second mount: like mount_opts (same trans and
    version), with the second server's port and its own extra options."""
    spec = getattr(args, "mount2", "")
    if not spec:
        return ""
    port, _, opts = parse_mount2(spec)
    out = "trans=tcp,port=%d" % port
    if args.version:
        out += ",version=%s" % args.version
    if opts:
        out += "," + opts
    return out


def channel_mode(info, args):
    if args.serial_out or "virtio_console" not in info["modules"]:
        return "serial"
    return "virtio"


def qemu_cmd(qemu, cdir, info, initrd, sockdir, args, accel):
    cmd = [
        qemu,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-M",
        args.machine,
        "-m",
        str(args.mem),
        "-smp",
        str(args.smp),
    ]
    if accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cmd += ["-accel", "tcg" + (",thread=multi" if args.smp > 1 else ""), "-cpu", args.tcg_cpu]
    kernel = os.path.join(cdir, "vmlinuz")
    if os.path.exists(os.path.join(cdir, "vmlinux")) and not args.bzimage:
        kernel = os.path.join(cdir, "vmlinux")  # PVH direct boot
    cmd += [
        "-kernel",
        kernel,
        "-initrd",
        initrd,
        "-append",
        "console=ttyS0 quiet loglevel=3 panic=-1 "
        "mitigations=off oops=panic 8250.nr_uarts=3 cryptomgr.notests "
        "tsc=reliable no_timer_check " + args.append,
    ]
    for n in ("con", "out", "err"):
        cmd += ["-chardev", "socket,id=%s,path=%s" % (n, os.path.join(sockdir, n))]
    cmd += ["-serial", "chardev:con"]
    if channel_mode(info, args) == "virtio":
        # script stdout/stderr on virtio-serial ports: ~100x faster than a UART
        cmd += [
            "-device",
            "virtio-serial-pci,max_ports=4",
            "-device",
            "virtserialport,chardev=out,name=out",
            "-device",
            "virtserialport,chardev=err,name=err",
        ]
    else:
        cmd += ["-serial", "chardev:out", "-serial", "chardev:err"]
    cmd += ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]
    cmd += args.qemu_arg
    return cmd


BOOT_HUNG = "boot-hung"


def boot(cdir, info, args, script_bytes, accel, status):
    """Returns exit code, None if KVM should be retried with TCG, or
    BOOT_HUNG if the guest never reached init within --boot-timeout."""
    work = tempfile.mkdtemp(prefix="vm9p-")
    proc = None
    conns = []
    try:
        initrd = os.path.join(work, "initrd.cpio")
        build_initrd(cdir, info, args, script_bytes, initrd)
        listeners = {}
        for n in ("con", "out", "err"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(os.path.join(work, n))
            s.listen(1)
            listeners[n] = s
        cmd = qemu_cmd(status["qemu"], cdir, info, initrd, work, args, accel)
        status["accel"] = accel
        if args.verbose:
            log("qemu: " + " ".join(shlex.quote(c) for c in cmd))
        qlog = open(os.path.join(work, "qemu.log"), "wb")
        t0 = time.time()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=qlog,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fds = {}
        for n, s in listeners.items():
            s.settimeout(0.2)
            while True:
                try:
                    c, _ = s.accept()
                    break
                except socket.timeout:
                    if proc.poll() is not None or time.time() - t0 > 30:
                        if accel == "kvm" and args.accel == "auto":
                            return None  # KVM unusable: caller retries with TCG
                        raise HarnessError(
                            "qemu failed to start:\n"
                            + open(os.path.join(work, "qemu.log"), errors="replace").read()[-2000:]
                        )
            s.close()
            c.setblocking(False)
            fds[n] = c
            conns.append(c)
        sel = selectors.DefaultSelector()
        for n, c in fds.items():
            sel.register(c, selectors.EVENT_READ, n)
        conlog = open(args.log or os.path.join(work, "console.log"), "wb")
        conbuf = b""
        events = {}
        exit_rc = None
        deadline = args.deadline  # for every boot together, retries included
        poweroff_deadline = None
        sinks = {"out": sys.stdout.buffer, "err": sys.stderr.buffer}

        def emit(name, data):
            f = sinks.get(name)
            if f is None:
                return
            try:
                f.write(data)
                f.flush()
            except (BrokenPipeError, ValueError, OSError):
                sinks[name] = None  # reader went away: keep running, drop output

        timed_out = False
        kvm_deadline = t0 + args.kvm_probe if (accel == "kvm" and args.accel == "auto") else None
        # A TCG guest boots in seconds; one that has not reached init long
        # after that has hung in the emulator (rare, seen on loaded hosts).
        boot_deadline = t0 + args.boot_timeout if args.boot_timeout > 0 else None
        while sel.get_map():
            now = time.time()
            limit = deadline
            if boot_deadline and "INIT" not in events:
                limit = min(limit, boot_deadline)
            if poweroff_deadline:
                limit = min(limit, poweroff_deadline)
            if kvm_deadline and "INIT" not in events:
                limit = min(limit, kvm_deadline)
            if now >= limit:
                if kvm_deadline and "INIT" not in events and now >= kvm_deadline:
                    return None  # KVM hangs: caller retries with TCG
                if boot_deadline and "INIT" not in events and now >= boot_deadline:
                    status["events"] = events
                    return BOOT_HUNG
                if poweroff_deadline and now >= poweroff_deadline:
                    break  # got the exit status; guest just won't power off
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(0.5, max(0.01, limit - now))):
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    continue
                n = key.data
                if n in ("out", "err"):
                    emit(n, data)
                else:
                    conlog.write(data)
                    conlog.flush()
                    if args.console:
                        emit("err", data)
                    conbuf += data
                    while b"\n" in conbuf:
                        line, conbuf = conbuf.split(b"\n", 1)
                        line = line.decode(errors="replace").rstrip("\r")
                        i = line.find(MARK)
                        if i < 0:
                            continue
                        parts = line[i + len(MARK) :].strip()
                        m = re.match(r"(\S+)\s*(.*?)\s*t=([\d.]+)$", parts)
                        if not m:
                            continue
                        ev, arg, gt = m.group(1), m.group(2), float(m.group(3))
                        events[ev] = {
                            "host_s": round(time.time() - t0, 3),
                            "guest_uptime_s": gt,
                            "arg": arg,
                        }
                        if args.verbose:
                            log("%-9s host %.2fs guest %.2fs %s" % (ev, time.time() - t0, gt, arg))
                        if ev == "EXIT":
                            exit_rc = int(arg)
                            poweroff_deadline = time.time() + 15
                        elif ev in ("FAIL", "MOUNTFAIL"):
                            poweroff_deadline = time.time() + 5
            if proc.poll() is not None and not sel.get_map():
                break
        status["events"] = events
        status["wall_s"] = round(time.time() - t0, 3)
        # stop qemu
        if proc.poll() is None:
            try:
                proc.wait(timeout=1 if (timed_out or exit_rc is not None) else 5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        conlog.close()
        status["qemu_rc"] = proc.returncode
        if kvm_deadline and "INIT" not in events and not timed_out:
            return None  # KVM failed early (e.g. -cpu host): retry with TCG
        contail = open(args.log or os.path.join(work, "console.log"), errors="replace").read()[
            -3000:
        ]

        def diag(msg):
            log(msg)
            if not args.console:
                sys.stderr.write(
                    "---- guest console (tail) ----\n%s\n------------------------------\n" % contail
                )

        if exit_rc is not None:
            if "UMOUNT" in events and events["UMOUNT"]["arg"] != "0":
                log("warning: umount in guest failed (rc %s)" % events["UMOUNT"]["arg"])
            status["result"] = "ok"
            status["exit_code"] = exit_rc
            return exit_rc
        if timed_out:
            status["result"] = "timeout"
            diag(
                "timeout after %ss (last guest event: %s)"
                % (args.timeout, list(events)[-1] if events else "none")
            )
            return EXIT_TIMEOUT
        if "MOUNTFAIL" in events:
            status["result"] = "mount-failed"
            status["mount_error"] = events["MOUNTFAIL"]["arg"]
            second = events["MOUNTFAIL"]["arg"].startswith("(second mount")
            log(
                "9p mount failed: mount -t 9p -o %s %s %s: %s"
                % (
                    mount2_opts(args) if second else mount_opts(args),
                    args.host,
                    mount2_dir(args) if second else args.mnt,
                    events["MOUNTFAIL"]["arg"],
                )
            )
            return EXIT_MOUNT_FAILED
        if "FAIL" in events:
            status["result"] = "guest-setup-failed"
            diag("guest setup failed: %s" % events["FAIL"]["arg"])
            return EXIT_HARNESS
        status["result"] = "vm-failed"
        qtail = open(os.path.join(work, "qemu.log"), errors="replace").read()[-1500:]
        diag(
            "VM ended without reporting an exit status (qemu rc %s)%s"
            % (proc.returncode, ("\nqemu: " + qtail) if qtail.strip() else "")
        )
        return EXIT_HARNESS
    finally:
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        for c in conns:
            c.close()
        if args.keep:
            log("kept work dir %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="vm9p",
        description="Run SCRIPT (busybox sh) in a qemu VM whose Linux v9fs client "
        "mounts the 9p server listening on this host's loopback. "
        "Exit status = the script's; %d = mount failed, %d = timeout, "
        "%d = VM/harness failure." % (EXIT_MOUNT_FAILED, EXIT_TIMEOUT, EXIT_HARNESS),
    )
    ap.add_argument("script", nargs="?", help="shell script to run in the guest ('-' = stdin)")
    ap.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    ap.add_argument(
        "--port", type=int, default=564, help="9p server TCP port on host loopback (default 564)"
    )
    ap.add_argument(
        "--version",
        default="9p2000.L",
        dest="version",
        help="9p protocol: 9p2000.L, 9p2000.u or 9p2000 (default 9p2000.L); "
        "'none' or '' = pass no version= option (kernel default)",
    )
    ap.add_argument(
        "--no-version",
        action="store_const",
        const="",
        dest="version",
        help="same as --version none",
    )
    ap.add_argument(
        "--opts", default="", help="extra mount options, e.g. 'msize=524288,cache=none,aname=/x'"
    )
    ap.add_argument(
        "--mount2",
        default="",
        metavar="PORT:DIR[:OPTS]",
        help="also mount a second 9p server (host loopback PORT, same version) at DIR "
        "in the guest, with extra mount options OPTS, e.g. 5641:/diod:aname=/srv/x",
    )
    ap.add_argument(
        "--mnt",
        default="/db",
        help="mount point in the guest (default /db; script runs with it as cwd)",
    )
    ap.add_argument(
        "--host",
        default="10.0.2.2",
        help="server address as seen by the guest (default 10.0.2.2 = host loopback)",
    )
    ap.add_argument(
        "--no-mount",
        action="store_true",
        help="load modules + network but do not mount; the script mounts itself",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="overall wall-clock limit in seconds (default 120)",
    )
    ap.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default=os.environ.get("VM9P_ACCEL", "auto"),
        help="auto (default; env VM9P_ACCEL): KVM if it looks real and boots, else TCG",
    )
    ap.add_argument("--kvm-probe", type=float, default=20, help=argparse.SUPPRESS)
    ap.add_argument(
        "--boot-timeout",
        type=float,
        default=60,
        help="reboot a guest that has not reached init after this many seconds "
        "(up to %d boots; 0 = never)" % BOOT_ATTEMPTS,
    )
    ap.add_argument("--mem", type=int, default=512, help="guest RAM in MiB (default 512)")
    ap.add_argument(
        "--smp",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="guest CPUs (default min(2, host cpus))",
    )
    ap.add_argument("--machine", default="pc", help="qemu machine type (default pc)")
    ap.add_argument(
        "--tcg-cpu",
        default="qemu64",
        help='qemu -cpu model under TCG (default qemu64; "max" makes guest memcpy ~5x slower under TCG)',
    )
    ap.add_argument(
        "--bzimage",
        action="store_true",
        help="boot the compressed vmlinuz instead of the PVH vmlinux",
    )
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--qemu", default="", help="qemu binary (default qemu-system-x86_64)")
    ap.add_argument(
        "--qemu-arg",
        action="append",
        default=[],
        help="extra qemu argument, repeatable; write --qemu-arg=-foo for dashed values",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="export into the script's environment (repeatable)",
    )
    ap.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="SRC[:DEST]",
        help="copy a host file into the guest (default DEST /vm9p/files/NAME; repeatable)",
    )
    ap.add_argument(
        "--split-stderr",
        action="store_true",
        help="guest stderr -> host stderr (default: merged into stdout)",
    )
    ap.add_argument(
        "--serial-out",
        action="store_true",
        help="carry script output over emulated UARTs instead of virtio-serial (slow; debugging)",
    )
    ap.add_argument(
        "--console",
        action="store_true",
        help="stream the guest console (kernel log, harness events) to stderr",
    )
    ap.add_argument("--log", default="", help="write the guest console log to this file")
    ap.add_argument(
        "--status-file", default="", help="write a JSON summary (result, exit code, timings) here"
    )
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="print harness events and timings to stderr"
    )
    ap.add_argument("--keep", action="store_true", help="keep the per-run work dir")
    ap.add_argument(
        "--cache-dir",
        default="",
        help="cache dir (default $VM9P_CACHE or $XDG_CACHE_HOME/vm9p or ~/.cache/vm9p)",
    )
    ap.add_argument(
        "--prepare", action="store_true", help="only install qemu / build the cache, then exit"
    )
    ap.add_argument("--rebuild", action="store_true", help="re-download and rebuild the cache")
    args = ap.parse_args(argv)
    if args.version is None or args.version.lower() in ("", "none", "default"):
        args.version = ""

    status = {"vm9p_version": VERSION}
    rc = EXIT_HARNESS
    try:
        if not args.script and not args.prepare:
            ap.error("SCRIPT is required")
        if args.script and not args.prepare:
            if args.script == "-":
                script_bytes = sys.stdin.buffer.read()
            else:
                with open(args.script, "rb") as f:
                    script_bytes = f.read()
        status["qemu"] = ensure_qemu(args)
        cdir, info = prepare(args)
        status["kernel"] = info["kernel_version"]
        status["mount_opts"] = mount_opts(args)
        if args.mount2:
            status["mount2_opts"] = mount2_opts(args)  # also checks the spec
        if args.prepare:
            print(json.dumps(dict(info, cache_dir=cdir, qemu=status["qemu"]), indent=1))
            return 0
        accel = args.accel
        if accel == "auto":
            ok, why = kvm_plausible()
            if os.environ.get("VM9P_ASSUME_KVM_OK") == "1":  # testing knob
                ok, why = True, ""
            if ok and os.path.exists(kvm_marker(cdir)):
                ok, why = False, "KVM failed to boot the guest earlier (since host boot)"
            accel = "kvm" if ok else "tcg"
            if args.verbose:
                log("accel %s%s" % (accel, (" (%s)" % why) if why else ""))
        t0 = time.time()
        args.deadline = t0 + args.timeout
        rc = boot(cdir, info, args, script_bytes, accel, status)
        if rc is None:
            log(
                "KVM did not work (guest never reached init); falling back to TCG "
                "(remembered until the host reboots; VM9P_ACCEL=kvm to force)"
            )
            open(kvm_marker(cdir), "w").close()
            rc = boot(cdir, info, args, script_bytes, "tcg", status)
        for attempt in range(2, BOOT_ATTEMPTS + 1):
            if rc != BOOT_HUNG:
                break
            log(
                "guest did not reach init within %ss; booting again (attempt %d of %d)"
                % (args.boot_timeout, attempt, BOOT_ATTEMPTS)
            )
            status.setdefault("boot_retries", 0)
            status["boot_retries"] += 1
            rc = boot(cdir, info, args, script_bytes, status.get("accel", accel), status)
        if rc == BOOT_HUNG:
            status["result"] = "boot-hung"
            log("guest never reached init in %d boots" % BOOT_ATTEMPTS)
            rc = EXIT_HARNESS
        status["total_s"] = round(time.time() - t0, 3)
        if args.verbose:
            ev = status.get("events", {})
            log(
                "accel=%s boot(host->init)=%ss mounted=%ss script=%ss total=%ss exit=%s"
                % (
                    status.get("accel"),
                    ev.get("INIT", {}).get("host_s", "?"),
                    ev.get("MOUNTED", {}).get("host_s", "?"),
                    round(ev["EXIT"]["host_s"] - ev["START"]["host_s"], 3)
                    if "EXIT" in ev and "START" in ev
                    else "?",
                    status["total_s"],
                    rc,
                )
            )
    except HarnessError as e:
        log(str(e))
        status["result"] = "harness-error"
        status["error"] = str(e)
        rc = EXIT_HARNESS
    except OSError as e:
        log(str(e))
        status["result"] = "harness-error"
        status["error"] = str(e)
        rc = EXIT_HARNESS
    except KeyboardInterrupt:
        rc = 130
        status["result"] = "interrupted"
    status["exit_code"] = rc
    if args.status_file:
        with open(args.status_file, "w") as f:
            json.dump(status, f, indent=1)
    return rc


# ----------------------------------------------------------------------------
# Python API (used by tests/kernel/conftest.py)
# ----------------------------------------------------------------------------
@dataclass
class GuestResult:
    """Outcome of one VM run.  returncode: the guest script's exit status, or
    123 (mount failed), 124 (timeout), 125 (VM/harness failure); status: the
    JSON status file (status["result"] == "ok" means returncode came from the
    script)."""

    returncode: int
    stdout: str
    stderr: str
    status: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)

    @property
    def ok(self):
        return self.returncode == 0 and self.status.get("result") == "ok"

    def describe(self):
        return (
            "vm9p exit %s (result %s, mount %s)\n--- guest stdout ---\n%s"
            "\n--- stderr ---\n%s"
            % (
                self.returncode,
                self.status.get("result"),
                self.status.get("mount_opts"),
                self.stdout,
                self.stderr,
            )
        )


def prepare_environment(cache_dir=None, rebuild=False):
    """Find (as root: install) qemu and build the kernel/busybox cache.
    Returns a dict (kernel_version, modules, cache_dir, qemu, ...).
    Raises HarnessError with a readable message if anything is missing."""
    ns = argparse.Namespace(qemu="", cache_dir=cache_dir or "", rebuild=rebuild)
    qemu = ensure_qemu(ns)
    cdir, info = prepare(ns)
    return dict(info, cache_dir=cdir, qemu=qemu)


def run_guest_script(
    script,
    *,
    port,
    version="9p2000.L",
    opts="",
    timeout=120.0,
    no_mount=False,
    env=None,
    include=(),
    mnt="/db",
    split_stderr=True,
    cache_dir=None,
    extra_args=(),
    log=None,
):
    """Boot the VM, mount 127.0.0.1:port (guest 10.0.2.2) with the kernel 9p
    client and run `script` (busybox sh text) with the mount as cwd.

    version=None mounts with NO version= option (the kernel default, 9P2000.L).
    env: {NAME: VALUE} exported in the guest; include: host paths (SRC or
    SRC:DEST) copied into the guest.  Runs the harness as a subprocess, so the
    caller's stdout/stderr are untouched."""
    work = tempfile.mkdtemp(prefix="vm9p-api-")
    try:
        spath = os.path.join(work, "script.sh")
        with open(spath, "wb") as f:
            f.write(script.encode() if isinstance(script, str) else script)
        status_path = os.path.join(work, "status.json")
        argv = [
            sys.executable,
            os.path.abspath(__file__),
            "--port",
            str(port),
            "--timeout",
            str(timeout),
            "--status-file",
            status_path,
            "--mnt",
            mnt,
        ]
        argv += ["--version", version if version else "none"]
        if opts:
            argv += ["--opts", opts]
        if no_mount:
            argv.append("--no-mount")
        if split_stderr:
            argv.append("--split-stderr")
        if cache_dir:
            argv += ["--cache-dir", cache_dir]
        if log:
            argv += ["--log", str(log)]
        for k, v in (env or {}).items():
            argv += ["--env", "%s=%s" % (k, v)]
        for inc in include:
            argv += ["--include", str(inc)]
        argv += list(extra_args)
        argv.append(spath)
        try:
            p = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout + 120,
            )
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = (
                EXIT_TIMEOUT,
                e.stdout or b"",
                (e.stderr or b"") + b"\nvm9p: harness subprocess did not finish",
            )
        status = {}
        try:
            with open(status_path) as f:
                status = json.load(f)
        except (OSError, ValueError):
            pass
        return GuestResult(
            rc, out.decode(errors="replace"), err.decode(errors="replace"), status, argv
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
