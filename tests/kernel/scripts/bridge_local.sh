# Guest script (busybox sh) for tests/kernel/test_bridge_local.py (issue 10's
# "done when": docs/bridges.md followed as a new user would). The host runs
# `datakit serve` and `datakit bridge local me/p:REPO`; this reads the branch
# heads under /db, tells the host it is ready, waits until the host's
# `git commit` on master shows up, then sets a status with the shell example
# of docs/bridges.md exactly as written there.
# Environment: MASTER, FEATURE (the repository's shas when the VM starts).
set -e

STEP="start"
trap 'rc=$?; if [ $rc != 0 ]; then echo "FAIL: step \"$STEP\" (exit status $rc)"; \
  echo "--- dmesg (tail) ---"; dmesg | tail -n 15; fi' EXIT
step() { STEP="$*"; echo "== $*"; }
fail() { echo "FAIL: $STEP: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }

HEADS=/db/branch/github-metadata/ro/me/p/ref/heads

step "the branch heads are under /db, as docs/bridges.md shows"
expect_eq "master/head" "$(cat /db/branch/github-metadata/ro/me/p/ref/heads/master/head)" "$MASTER"
expect_eq "feature/x/head" "$(cat $HEADS/feature/x/head)" "$FEATURE"
expect_eq "ls ref/heads" "$(ls $HEADS | tr '\n' ' ')" "feature master "
expect_eq "ls ref/heads/feature" "$(ls $HEADS/feature | tr '\n' ' ')" "x "
expect_eq "ls ref/heads/master" "$(ls $HEADS/master | tr '\n' ' ')" "head "

step "tell the host we are ready (a commit on branch vm-ready)"
# A branch made by mkdir alone is only listed on this 9p connection until it
# has a commit, so the host could not see it: commit a file to it.
mkdir /db/branch/vm-ready
T=/db/branch/vm-ready/transactions/ready
mkdir $T
echo "$MASTER" > $T/rw/seen
printf 'VM ready' > $T/msg
echo commit > $T/ctl

step "wait (60 s at most) until master/head changes"
i=0
while [ "$(cat $HEADS/master/head)" = "$MASTER" ]; do
  i=$((i + 1))
  [ $i -le 120 ] || fail "master/head still $MASTER after 60 s"
  sleep 0.5
done
NEW=$(cat $HEADS/master/head)
echo "NEW_MASTER=$NEW"
expect_eq "feature/x/head after the commit" "$(cat $HEADS/feature/x/head)" "$FEATURE"

step "git log of the branch tells what happened (docs/bridges.md)"
H=$(cat /db/branch/github-metadata/head)
expect_eq "snapshot msg" "$(cat /db/snapshots/$H/msg)" \
  "Updating existing branch to {me/p heads/master[$NEW]}"

step "the docs' example: setting a status from a script"
# Exactly as docs/bridges.md ("Setting a status from a script") has it:
B=/db/branch/github-metadata
SHA=$(cat $B/ro/me/p/ref/heads/master/head)
T=$B/transactions/status-$$
mkdir $T
S=$T/rw/me/p/commit/$SHA/status/ci/datakit/test
mkdir -p $S
echo pending          > $S/state
echo "Running tests"  > $S/description
echo http://ci/run/1  > $S/target_url
printf 'Set status' > $T/msg
echo commit > $T/ctl
# (end of the docs' example)
echo "STATUS_SHA=$SHA"
expect_eq "state through ro/" "$(cat $B/ro/me/p/commit/$SHA/status/ci/datakit/test/state)" pending
echo "bridge_local: OK"
