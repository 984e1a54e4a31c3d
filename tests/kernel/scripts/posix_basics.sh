# Guest script (busybox sh) for tests/kernel/test_example_tree.py.
#
# Runs with the 9p mount root as cwd; the mount must be a writable,
# tmpfs-like tree (datakit serve --example-tree, or diod on a temp dir).
# Everything it creates is removed again at the end.  On failure it prints
# "FAIL: <step>: <detail>" and exits non-zero.
#
# Optional environment: BIG_MIB (default 3) = size of the large-file test.
set -e

STEP="start"
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAIL: step \"$STEP\" (exit status $rc)"; \
  echo "--- dmesg (tail) ---"; dmesg | tail -n 15; fi' EXIT

step() { STEP="$*"; echo "== $*"; }
fail() { echo "FAIL: $STEP: $*"; exit 1; }
# expect_eq WHAT ACTUAL EXPECTED
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
size_of() { stat -c %s "$1"; }

BIG_MIB=${BIG_MIB:-3}
echo "kernel $(uname -r); mount: $(grep " $VM9P_MNT " /proc/mounts || echo '?')"
echo "cwd $(pwd)"

step "ls of the mount root"
ls -la . || fail "ls -la failed"
ROOT_BEFORE=$(ls -a . | sort | tr '\n' ' ')

step "create a file with echo"
echo "hello" > hello.txt
[ -f hello.txt ] || fail "hello.txt is not a regular file after creation"
ls -la | grep -q ' hello.txt$' || fail "hello.txt not listed by ls -la"

step "cat back and compare"
expect_eq "content of hello.txt" "$(cat hello.txt)" "hello"
expect_eq "size of hello.txt (stat -c %s)" "$(size_of hello.txt)" 6

step "overwrite (write with O_TRUNC)"
echo "goodbye, world" > hello.txt
expect_eq "content after overwrite" "$(cat hello.txt)" "goodbye, world"
expect_eq "size after overwrite" "$(size_of hello.txt)" 15

step "append with >>"
echo "second line" >> hello.txt
printf 'third' >> hello.txt
expect_eq "content after append" "$(cat hello.txt)" "goodbye, world
second line
third"
expect_eq "size after append" "$(size_of hello.txt)" 32

step "write in the middle of a file (dd conv=notrunc)"
printf 'GOOD' | dd of=hello.txt bs=1 seek=0 conv=notrunc 2>/dev/null
expect_eq "first line after in-place write" "$(head -n 1 hello.txt)" "GOODbye, world"
expect_eq "size after in-place write" "$(size_of hello.txt)" 32

step "truncate -s (shrink)"
truncate -s 4 hello.txt
expect_eq "size after truncate -s 4" "$(size_of hello.txt)" 4
expect_eq "content after truncate -s 4" "$(cat hello.txt)" "GOOD"

step "truncate -s (extend with zeros)"
truncate -s 10 hello.txt
expect_eq "size after truncate -s 10" "$(size_of hello.txt)" 10
expect_eq "zero tail after extension" "$(tail -c 6 hello.txt | od -An -tx1 | tr -d ' \n')" "000000000000"

step "truncate with ': > file'"
: > hello.txt
expect_eq "size after ': >'" "$(size_of hello.txt)" 0
expect_eq "content after ': >'" "$(cat hello.txt)" ""

step "create an empty file (touch)"
touch empty.txt
[ -f empty.txt ] || fail "touch did not create empty.txt"
expect_eq "size of empty.txt" "$(size_of empty.txt)" 0

step "rename with mv (same directory)"
echo "moved content" > before.txt
mv before.txt after.txt
[ ! -e before.txt ] || fail "before.txt still exists after mv"
[ -f after.txt ] || fail "after.txt missing after mv"
expect_eq "content after mv" "$(cat after.txt)" "moved content"
ls | grep -q '^after.txt$' || fail "after.txt not listed after mv"
if ls | grep -q '^before.txt$'; then fail "before.txt still listed after mv"; fi

step "rm"
rm after.txt
[ ! -e after.txt ] || fail "after.txt still exists after rm"
if ls | grep -q '^after.txt$'; then fail "after.txt still listed after rm"; fi
if cat after.txt 2>/dev/null; then fail "cat of a removed file succeeded"; fi

step "mkdir / rmdir"
mkdir d1
[ -d d1 ] || fail "d1 is not a directory after mkdir"
expect_eq "listing of new empty dir" "$(ls -A d1)" ""
rmdir d1
[ ! -e d1 ] || fail "d1 still exists after rmdir"

step "nested directories (mkdir -p)"
mkdir -p a/b/c/d
echo deep > a/b/c/d/file.txt
echo mid > a/b/mid.txt
expect_eq "deep file" "$(cat a/b/c/d/file.txt)" "deep"
expect_eq "ls a/b" "$(ls a/b | tr '\n' ' ')" "c mid.txt "
expect_eq "find a -type f" "$(find a -type f | sort | tr '\n' ' ')" "a/b/c/d/file.txt a/b/mid.txt "
(cd a/b/c && expect_eq "relative read from cwd in a subdir" "$(cat d/file.txt)" "deep")

step "rmdir of a non-empty directory must fail"
if rmdir a/b/c 2>/dev/null; then fail "rmdir of non-empty a/b/c succeeded"; fi
[ -d a/b/c ] || fail "a/b/c vanished after a failed rmdir"

step "rename a file within a nested directory"
mv a/b/mid.txt a/b/mid2.txt
expect_eq "renamed nested file" "$(cat a/b/mid2.txt)" "mid"

step "mv a file to another directory"
mv a/b/mid2.txt a/b/c/moved.txt
[ ! -e a/b/mid2.txt ] || fail "source still exists after cross-directory mv"
expect_eq "moved file" "$(cat a/b/c/moved.txt)" "mid"

step "rename a directory"
mv a/b/c a/b/c2
[ ! -e a/b/c ] || fail "a/b/c still exists after renaming the directory"
expect_eq "file under renamed directory" "$(cat a/b/c2/d/file.txt)" "deep"

step "rm -r of a directory tree"
rm -r a
[ ! -e a ] || fail "a still exists after rm -r"

step "large file (${BIG_MIB} MiB > msize): write, stat, read back"
dd if=/dev/urandom of=/tmp/big.src bs=1048576 count="$BIG_MIB" 2>/dev/null
SUM=$(md5sum < /tmp/big.src | cut -d' ' -f1)
cp /tmp/big.src big.bin
expect_eq "size of big.bin" "$(size_of big.bin)" $((BIG_MIB * 1048576))
cmp /tmp/big.src big.bin || fail "cmp: big.bin differs from the source"
expect_eq "md5sum of big.bin" "$(md5sum < big.bin | cut -d' ' -f1)" "$SUM"
cat big.bin > /tmp/big.back
cmp /tmp/big.src /tmp/big.back || fail "cat big.bin returned different bytes"
dd if=big.bin of=/tmp/big.dd bs=1048576 2>/dev/null
cmp /tmp/big.src /tmp/big.dd || fail "dd bs=1M read of big.bin returned different bytes"

step "copy the large file on the mount"
cp big.bin big2.bin
cmp big.bin big2.bin || fail "cp big.bin big2.bin: copies differ"
expect_eq "md5sum of big2.bin" "$(md5sum < big2.bin | cut -d' ' -f1)" "$SUM"

step "read at an offset past the first msize chunk"
expect_eq "bytes at 2 MiB + 5" \
  "$(dd if=big.bin bs=1 skip=$((2 * 1048576 + 5)) count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')" \
  "$(dd if=/tmp/big.src bs=1 skip=$((2 * 1048576 + 5)) count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')"
rm -f /tmp/big.src /tmp/big.back /tmp/big.dd

step "clean up"
rm big.bin big2.bin hello.txt empty.txt
expect_eq "root listing after clean-up" "$(ls -a . | sort | tr '\n' ' ')" "$ROOT_BEFORE"

STEP="done"
echo "posix_basics: OK"
