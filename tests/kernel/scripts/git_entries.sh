# Guest script (busybox sh) for tests/kernel/test_git_entries.py (issue #8,
# points 3 and 4). The mount serves a repository git wrote: `plain`, a file
# named \377\376-latin1, a symlink `badlink` to caf\351/\377 and a submodule
# `sub` (a gitlink). Environment: DIALECT, SUB (the submodule's commit id).
set -e

STEP="start"
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAIL: step \"$STEP\" (exit status $rc)"; \
  echo "--- dmesg (tail) ---"; dmesg | tail -n 15; fi' EXIT
step() { STEP="$*"; echo "== $*"; }
fail() { echo "FAIL: $STEP: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }

RO=branch/master/ro
BAD=$(printf '\377\376-latin1')
TARGET=$(printf 'caf\351/\377')

step "a name that is not UTF-8 is listed with every other entry"
# (busybox ls prints other bytes than ASCII as '?': the glob shows the names)
expect_eq "ls ro" "$(ls $RO | wc -l)" 4
expect_eq "names in ro" "$(cd $RO && printf '%s ' *)" "badlink plain sub $BAD "

step "stat and read it"
expect_eq "stat -c %s" "$(stat -c %s "$RO/$BAD")" 6
expect_eq "cat" "$(cat "$RO/$BAD")" "hello"

step "stat and readlink a symlink whose target is not UTF-8"
stat "$RO/badlink" > /dev/null
if [ "$DIALECT" != 9p2000 ]; then
  expect_eq "readlink" "$(readlink $RO/badlink)" "$TARGET"
fi

step "the mount is still there"
expect_eq "cat plain" "$(cat $RO/plain)" "hello"

step "the submodule is a read-only file holding its commit id"
expect_eq "stat sub" "$(stat -c '%A %s' $RO/sub)" "-r--r--r-- 41"
expect_eq "cat sub" "$(cat $RO/sub)" "$SUB"

step "a transaction: names that are not UTF-8, the submodule untouched"
T=branch/master/transactions/t1
mkdir $T
printf 'x' > "$T/rw/$(printf 'k\351\377')"
if [ "$DIALECT" != 9p2000 ]; then
  ln -s "$(printf '\377t')" $T/rw/l2
  expect_eq "readlink l2" "$(readlink $T/rw/l2)" "$(printf '\377t')"
fi
expect_eq "cat rw/sub" "$(cat $T/rw/sub)" "$SUB"
if echo x > $T/rw/sub 2>/dev/null; then fail "wrote to a submodule"; fi
expect_eq "rw/sub unchanged" "$(cat $T/rw/sub)" "$SUB"
echo commit > $T/ctl
echo "FIRST=$(cat branch/master/head)"

step "rm of the submodule in a transaction removes it"
T=branch/master/transactions/t2
mkdir $T
rm $T/rw/sub
[ ! -e $T/rw/sub ] || fail "sub still there after rm"
echo commit > $T/ctl
[ ! -e $RO/sub ] || fail "sub still in ro/ after the commit"
echo "git_entries: OK"
