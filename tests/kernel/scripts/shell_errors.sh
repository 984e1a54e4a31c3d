# Guest script (busybox sh) for tests/kernel/test_shell_errors.py (issue #8,
# re-checked as a shell user would): on a default mount of `datakit serve
# --git REPO` (REPO holds a submodule `sub`), hostile names, sizes and writes
# fail with the errno a shell user expects, legal odd names are kept, and
# the mount keeps working and committing afterwards.
set -e
fail() { echo "FAIL: $*"; exit 1; }
# refused ERRNO-TEXT WHAT CMD...: CMD must fail with ERRNO-TEXT
refused() {
  want=$1 what=$2; shift 2
  if out=$("$@" 2>&1); then fail "$what succeeded"; fi
  case "$out" in
    *"$want"*) ;;
    *) fail "$what: expected $want, got: $out" ;;
  esac
}

ROOT=$(pwd)
T=$ROOT/branch/master/transactions/t
mkdir "$T"
cd "$T/rw"
N255=$(printf '%0255d' 0)
NL=$(printf 'a\nb')
TAB=$(printf 'a\tb')
HIGH=$(printf 'd\351')
echo 255 > "$N255"
echo nl > "$NL"
echo tab > "$TAB"
mkdir "$HIGH"
echo high > "$HIGH/$(printf '\377')"
refused "File name too long" "a 256-byte name" touch "$(printf '%0256d' 0)"
refused "Invalid argument" "a .gitmodules symlink" ln -s "$N255" .gitmodules
refused "Read-only file system" "a write to a submodule" sh -c 'echo x > sub'
refused "Read-only file system" "an append to a submodule" sh -c 'echo x >> sub'
refused "Read-only file system" "chmod of a submodule" chmod 755 sub
refused "Read-only file system" "truncate of a submodule" truncate -s 0 sub
refused "File too large" "a write at 2^40" dd if=/dev/zero of=big bs=1 count=1 seek=$((1 << 40))
refused "File too large" "a write at 2^63-2" dd if=/dev/zero of=big bs=1 count=1 seek=9223372036854775806
refused "File too large" "truncate -s 2^62" truncate -s $((1 << 62)) big
rm -f big
[ "$(cat "$HIGH/$(printf '\377')")" = high ] || fail "the non-UTF-8 file"
cd "$ROOT"
echo commit > "$T/ctl"
RO=$ROOT/branch/master/ro
[ "$(cat "$RO/$N255")" = 255 ] || fail "the 255-byte name"
[ "$(cat "$RO/$NL")" = nl ] || fail "the name with a newline"
[ "$(cat "$RO/$TAB")" = tab ] || fail "the name with a tab"
[ "$(cat "$RO/sub")" = "$SUB" ] || fail "sub reads $(cat "$RO/sub")"
T=$ROOT/branch/master/transactions/t2
mkdir "$T"
echo ok > "$T/rw/x"
[ "$(cat "$T/rw/x")" = ok ] || fail "x after the errors"
echo commit > "$T/ctl"
[ "$(cat "$RO/x")" = ok ] || fail "x not committed"
echo "shell_errors: OK"
