#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root, no Docker engine, no reachable container
# registry) to build and run the project's Dockerfile with podman, for
# tests/container.  Idempotent: a second run only checks (a few seconds).
#
#   scripts/container-setup.sh                  # install, configure, build the base stand-in
#   scripts/container-setup.sh --rebuild-base   # ... rebuilding the base stand-in
#   . "${DATAKIT_CONTAINER_DIR:-/var/tmp/datakit-containers}/env.sh"   # podman by hand
#
# What it does (see /work/shared/containers.md for why):
#   1. apt-get installs podman, buildah, runc, fuse-overlayfs, slirp4netns,
#      uidmap, debootstrap, mmdebstrap (only those missing).
#   2. Writes podman configuration into $DATAKIT_CONTAINER_DIR (default
#      /var/tmp/datakit-containers): storage.conf (overlay; graphroot and
#      runroot in that folder), containers.conf (runc, cgroupfs, file events,
#      lowered ulimits), registries.conf, and env.sh with the variables below.
#   3. Builds, once, a stand-in for the public base image with mmdebstrap (or
#      debootstrap) from the apt mirror this machine is configured with, and
#      tags it with the name the Dockerfile's FROM uses ($DATAKIT_BASE_IMAGE,
#      default docker.io/library/python:3.12-slim).  It stays in the folder's
#      storage, so later runs (and podman's layer cache) reuse it.
#
# stdout: only the `export NAME=value` lines of env.sh (DATAKIT_CONTAINER_DIR,
# CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF, and
# TMPDIR for podman's temporary files); progress goes to stderr.  The tests
# need none of them exported: they find the folder themselves
# (DATAKIT_CONTAINER_DIR or its default), and exporting TMPDIR into a pytest
# run would move its tmp_path folders there.
#
# Env: DATAKIT_CONTAINER_DIR, DATAKIT_BASE_IMAGE, DATAKIT_APT_MIRROR (default:
# the first bookworm URI in /etc/apt/sources.list{,.d/*}), DATAKIT_BOOTSTRAP
# (mmdebstrap, the default, or debootstrap).
set -euo pipefail

log() { echo "container-setup: $*" >&2; }
die() { log "error: $*"; exit 1; }

REBUILD_BASE=0
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) REBUILD_BASE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root (rootful podman, apt-get, mmdebstrap)"

DIR=${DATAKIT_CONTAINER_DIR:-/var/tmp/datakit-containers}
BASE_IMAGE=${DATAKIT_BASE_IMAGE:-docker.io/library/python:3.12-slim}
STANDIN_IMAGE=localhost/datakit-base-standin:bookworm
SUITE=bookworm
mkdir -p "$DIR" "$DIR/tmp" "$DIR/storage" "$DIR/run" "$DIR/cni" "$DIR/events"
DIR=$(cd "$DIR" && pwd -P)

# One setup at a time (CI and a test may both call this script).
exec 9>"$DIR/.setup.lock"
flock 9

# ---- 1. packages -------------------------------------------------------------
PACKAGES=(podman buildah runc fuse-overlayfs slirp4netns uidmap debootstrap mmdebstrap
          ca-certificates debian-archive-keyring util-linux)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y "${missing[@]}" >&2
else
  log "packages already installed"
fi

# ---- 2. podman configuration -------------------------------------------------
# Written every time (cheap), so a changed folder or script is picked up.
cat >"$DIR/storage.conf" <<EOF
# Written by scripts/container-setup.sh
[storage]
driver = "overlay"
graphroot = "$DIR/storage"
runroot = "$DIR/run"
EOF

cat >"$DIR/containers.conf" <<EOF
# Written by scripts/container-setup.sh
[containers]
# The default ulimits are higher than this machine lets a container set.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
# crun fails here with "cgroups in hybrid mode not supported".
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$DIR/events/events.log"
tmp_dir = "$DIR/run/libpod"
volume_path = "$DIR/storage/volumes"

[network]
network_config_dir = "$DIR/cni"
EOF

cat >"$DIR/registries.conf" <<EOF
# Written by scripts/container-setup.sh: short names (FROM python:3.12-slim)
# resolve to docker.io; nothing is pulled (builds use --pull=never).
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF

cat >"$DIR/env.sh" <<EOF
export DATAKIT_CONTAINER_DIR=$DIR
export CONTAINERS_CONF=$DIR/containers.conf
export CONTAINERS_STORAGE_CONF=$DIR/storage.conf
export CONTAINERS_REGISTRIES_CONF=$DIR/registries.conf
export TMPDIR=$DIR/tmp
EOF
# shellcheck disable=SC1091
. "$DIR/env.sh"

podman --version >&2
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}} {{.Store.GraphRoot}}' >&2 \
  || die "podman info failed with $CONTAINERS_CONF"

# ---- 3. the base image stand-in ----------------------------------------------
apt_mirror() {
  if [ -n "${DATAKIT_APT_MIRROR:-}" ]; then echo "$DATAKIT_APT_MIRROR"; return; fi
  local f uri
  # deb822 files: the first stanza of Types deb whose Suites include $SUITE.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^[ \t]*#/) continue
          if (line ~ /^Types:/)  { sub(/^Types:[ \t]*/, "", line);  types = line }
          if (line ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", line);   uris = line }
          if (line ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", line); suites = line }
        }
        if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  # One-line format.
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

if [ "$REBUILD_BASE" = 1 ]; then
  podman rmi -f "$BASE_IMAGE" "$STANDIN_IMAGE" >/dev/null 2>&1 || true
fi

if podman image exists "$BASE_IMAGE"; then
  log "base image $BASE_IMAGE present ($(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" | cut -c1-12))"
else
  MIRROR=$(apt_mirror)
  ROOTFS="$DIR/rootfs"
  rm -rf "$ROOTFS"
  INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
  # mmdebstrap (apt, one dpkg run) took 80 s here where debootstrap took 10
  # minutes on a loaded machine; both make the same minbase system.
  BOOTSTRAP=${DATAKIT_BOOTSTRAP:-mmdebstrap}
  command -v "$BOOTSTRAP" >/dev/null || BOOTSTRAP=debootstrap
  log "$BOOTSTRAP $SUITE from $MIRROR"
  start=$SECONDS
  if [ "$BOOTSTRAP" = mmdebstrap ]; then
    mmdebstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >&2
  else
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >&2
  fi
  log "$BOOTSTRAP took $((SECONDS - start)) s"
  # Like the official image: pip may install outside a venv, no apt lists or
  # downloaded packages, and apt trusts the same (possibly snapshot) mirror
  # the host does, whose Release files may be past Valid-Until.
  rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/tmp/*
  echo "deb $MIRROR $SUITE main" >"$ROOTFS/etc/apt/sources.list"
  cat >"$ROOTFS/etc/apt/apt.conf.d/99datakit-standin" <<'EOF'
// scripts/container-setup.sh: the host's mirror may be a dated snapshot.
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
EOF
  : >"$ROOTFS/etc/resolv.conf"
  echo localhost >"$ROOTFS/etc/hostname"
  tar -C "$ROOTFS" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$STANDIN_IMAGE" >&2
  podman tag "$STANDIN_IMAGE" "$BASE_IMAGE"
  rm -rf "$ROOTFS"
  log "base image $BASE_IMAGE built (stand-in: Debian $SUITE with its python3)"
fi

cat "$DIR/env.sh"
