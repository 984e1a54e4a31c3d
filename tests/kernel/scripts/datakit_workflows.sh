# Guest script (busybox sh) for tests/kernel/test_datakit_workflows.py.
#
# Runs in the root of a mounted `datakit serve --git REPO` and drives it the
# way a user would from a shell.  The host checks the Git repository after.
# Environment: DIALECT (9p2000, 9p2000.u, 9p2000.L), GIT_URL (a git daemon on
# the host's loopback, as seen by the server), METRICS (host:port of /metrics
# as seen from the guest).
set -e

STEP="start"
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAIL: step \"$STEP\" (exit status $rc)"; \
  echo "--- dmesg (tail) ---"; dmesg | tail -n 15; fi' EXIT
step() { STEP="$*"; echo "== $*"; }
fail() { echo "FAIL: $STEP: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
# wait_for FILE TEXT: poll until FILE contains TEXT (background readers)
wait_for() {
  i=0
  while ! grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "timed out waiting for '$2' in $1: $(cat "$1")"
    sleep 0.1
  done
}
live_readers() {
  wget -qO- "http://$METRICS/metrics" | grep '^datakit_live_readers ' | cut -d' ' -f2
}

step "root listing"
expect_eq "ls /" "$(ls | tr '\n' ' ')" "branch commits debug remotes snapshots trees "

step "create a branch and a transaction with nested directories"
mkdir branch/master
T=branch/master/transactions/first
mkdir $T
expect_eq "ls T" "$(ls $T | tr '\n' ' ')" "ctl diff merge msg origin parents rw "
mkdir -p $T/rw/src/lib/deep
echo 'all: build' > $T/rw/src/Makefile
echo 'int x;' > $T/rw/src/lib/deep/x.c
printf '#!/bin/sh\necho hi\n' > $T/rw/run.sh
chmod +x $T/rw/run.sh
[ -x $T/rw/run.sh ] || fail "run.sh is not executable after chmod +x"
if [ "$DIALECT" != 9p2000 ]; then
  ln -s src/Makefile $T/rw/link
  expect_eq "readlink" "$(readlink $T/rw/link)" "src/Makefile"
fi
mkdir $T/rw/empty-dir
mkdir $T/rw/many  # enough new objects for the commit to be written as a pack
i=0
while [ $i -lt 100 ]; do echo "file $i" > $T/rw/many/$i; i=$((i + 1)); done
printf 'First commit' > $T/msg
echo commit > $T/ctl
[ ! -e $T ] || fail "transaction still exists after commit"

step "read head and the committed tree"
H1=$(cat branch/master/head)
expect_eq "head length" "${#H1}" 40
expect_eq "ro/src/Makefile" "$(cat branch/master/ro/src/Makefile)" "all: build"
expect_eq "ro/src/lib/deep/x.c" "$(cat branch/master/ro/src/lib/deep/x.c)" "int x;"
[ -x branch/master/ro/run.sh ] || fail "run.sh lost its executable bit"
[ ! -e branch/master/ro/empty-dir ] || fail "an empty directory was committed"
if [ "$DIALECT" != 9p2000 ]; then
  expect_eq "readlink ro/link" "$(readlink branch/master/ro/link)" "src/Makefile"
fi
expect_eq "ls ro/many | wc -l" "$(ls branch/master/ro/many | wc -l)" 100
expect_eq "ro/many/99" "$(cat branch/master/ro/many/99)" "file 99"
expect_eq "snapshot msg" "$(cat snapshots/$H1/msg)" "First commit"
echo "HEAD1=$H1"

step "fork a branch with fast-forward"
mkdir branch/feature
cp branch/master/head branch/feature/fast-forward
expect_eq "feature head" "$(cat branch/feature/head)" "$H1"

step "head.live in the background sees the next commit"
cat branch/master/head.live > /tmp/live.out &
LIVE=$!
wait_for /tmp/live.out "$H1"
cat branch/master/watch/src.node/Makefile.node/tree.live > /tmp/watch.out &
WATCH=$!
wait_for /tmp/watch.out "^F-"
WATCH1=$(head -n 1 /tmp/watch.out)
T=branch/master/transactions/second
mkdir $T
echo 'all: build test' > $T/rw/src/Makefile
echo commit > $T/ctl
H2=$(cat branch/master/head)
wait_for /tmp/live.out "$H2"
step "tree.live on the watched path"
i=0
while [ "$(wc -l < /tmp/watch.out)" -lt 2 ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "tree.live printed no second line: $(cat /tmp/watch.out)"
  sleep 0.1
done
WATCH2=$(sed -n 2p /tmp/watch.out)
[ "$WATCH1" != "$WATCH2" ] || fail "tree.live repeated its line"
expect_eq "trees lookup of the watched blob" "$(cat trees/$WATCH2)" "all: build test"

step "interrupted live readers leave nothing running on the server"
kill $LIVE $WATCH
wait $LIVE 2>/dev/null || true
wait $WATCH 2>/dev/null || true
i=0
while [ "$(live_readers)" != "0.0" ]; do
  i=$((i + 1)); [ $i -lt 50 ] || fail "server still has $(live_readers) live readers"
  sleep 0.1
done

step "snapshots and trees by hash"
expect_eq "snapshot parents" "$(cat snapshots/$H2/parents)" "$H1"
expect_eq "snapshot ro" "$(cat snapshots/$H1/ro/src/Makefile)" "all: build"
ROOT_TREE=$(head -n 1 branch/master/watch/tree.live)
case "$ROOT_TREE" in D-*) ;; *) fail "root tree.live line: '$ROOT_TREE'" ;; esac
ls trees/$ROOT_TREE | grep -q '^src$' || fail "trees/$ROOT_TREE lacks src"
expect_eq "diff" "$(cat snapshots/$H2/diff/$H1)" "* src/Makefile"

step "a merge with a conflict, resolved with cat, rm and echo"
T=branch/feature/transactions/edit
mkdir $T
echo 'all: feature' > $T/rw/src/Makefile
echo 'new' > $T/rw/feature.txt
echo commit > $T/ctl
F1=$(cat branch/feature/head)
T=branch/master/transactions/merge
mkdir $T
echo "$F1" > $T/merge
expect_eq "merge output" "$(cat $T/merge)" "ok"
expect_eq "conflicts" "$(cat $T/conflicts)" "src/Makefile"
expect_eq "conflict file" "$(cat $T/rw/src/Makefile | head -n 1)" "** Conflict **"
expect_eq "theirs" "$(cat $T/theirs/src/Makefile)" "all: feature"
expect_eq "ours" "$(cat $T/ours/src/Makefile)" "all: build test"
echo commit > $T/ctl 2>/dev/null && fail "commit succeeded with conflicts"
cat $T/theirs/src/Makefile > $T/rw/src/Makefile
expect_eq "conflicts after cat" "$(cat $T/conflicts)" ""
rm $T/rw/feature.txt
echo 'merged by hand' > $T/rw/NOTES
echo commit > $T/ctl
M=$(cat branch/master/head)
expect_eq "merge parents" "$(sort snapshots/$M/parents | tr '\n' ' ')" \
  "$(printf '%s\n%s\n' "$H2" "$F1" | sort | tr '\n' ' ')"
expect_eq "merged Makefile" "$(cat branch/master/ro/src/Makefile)" "all: feature"
[ ! -e branch/master/ro/feature.txt ] || fail "feature.txt was not removed"

step "mv of a branch"
mv branch/feature branch/renamed
expect_eq "renamed head" "$(cat branch/renamed/head)" "$F1"
[ ! -e branch/feature ] || fail "old branch name still exists"

step "fetch from git daemon"
mkdir remotes/origin
echo "$GIT_URL" > remotes/origin/url
echo master > remotes/origin/fetch
FETCHED=$(head -n 1 remotes/origin/head)
expect_eq "fetched length" "${#FETCHED}" 40
ls snapshots/$FETCHED/ro | grep -q '^upstream.txt$' || fail "fetched tree lacks upstream.txt"
mkdir branch/fetched
echo "$FETCHED" > branch/fetched/fast-forward
expect_eq "fetched branch" "$(cat branch/fetched/ro/upstream.txt)" "from git daemon"

echo "MASTER=$M"
echo "datakit_workflows: OK"
