# Guest script (busybox sh) for tests/kernel/test_memory_limits.py.
#
# Runs in the root of a mounted `datakit serve --git REPO --max-file-size 1G`:
# sparse writes and truncates far past the end cost the server nothing like
# their size, sizes past the maximum fail with EFBIG, and absurd offsets fail
# cleanly. The host checks the server's peak memory and the repository after.
set -e

STEP="start"
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAIL: step \"$STEP\" (exit status $rc)"; fi' EXIT
step() { STEP="$*"; echo "== $*"; }
fail() { echo "FAIL: $STEP: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
MiB=1048576

mkdir branch/master
T=branch/master/transactions/t
mkdir $T

step "one 24-byte write at 512 MiB"
printf 'twenty-four bytes, here.' | dd of=$T/rw/sparse bs=1 seek=$((512 * MiB)) conv=notrunc 2>/dev/null
expect_eq "size" "$(stat -c %s $T/rw/sparse)" $((512 * MiB + 24))
expect_eq "tail" "$(dd if=$T/rw/sparse bs=1 skip=$((512 * MiB)) count=11 2>/dev/null)" "twenty-four"

step "truncate to 768 MiB"
: > $T/rw/grown
truncate -s $((768 * MiB)) $T/rw/grown
expect_eq "size" "$(stat -c %s $T/rw/grown)" $((768 * MiB))

step "past --max-file-size: File too large"
if out=$(truncate -s 2G $T/rw/grown 2>&1); then fail "truncate -s 2G succeeded"; fi
case "$out" in *"File too large"*) ;; *) fail "truncate -s 2G: $out" ;; esac
if out=$(printf x | dd of=$T/rw/sparse bs=1 seek=$((1 << 40)) conv=notrunc 2>&1); then
  fail "a write at 2^40 succeeded"
fi
case "$out" in *"File too large"*|*"Invalid argument"*) ;; *) fail "write at 2^40: $out" ;; esac
expect_eq "size unchanged" "$(stat -c %s $T/rw/grown)" $((768 * MiB))

step "commit and read back"
echo commit > $T/ctl
expect_eq "ro size" "$(stat -c %s branch/master/ro/sparse)" $((512 * MiB + 24))
expect_eq "ro tail" "$(dd if=branch/master/ro/sparse bs=1 skip=$((512 * MiB)) count=11 2>/dev/null)" "twenty-four"
echo "memory_limits: OK"
