# Guest script (busybox sh) for tests/kernel/test_refused_names.py.
#
# In a transaction of a mounted `datakit serve --git REPO`: mkdir, touch, mv
# and ln -s to names git refuses fail with EINVAL and leave nothing behind;
# the transaction then commits. The host runs `git fsck --strict` after.
set -e
fail() { echo "FAIL: $*"; exit 1; }
# refused WHAT CMD...: CMD must fail with "Invalid argument"
refused() {
  what=$1; shift
  if out=$("$@" 2>&1); then fail "$what succeeded"; fi
  case "$out" in
    *"Invalid argument"*) ;;
    *) fail "$what: expected Invalid argument, got: $out" ;;
  esac
}

ROOT=$(pwd)
mkdir branch/master
T=$ROOT/branch/master/transactions/t
mkdir "$T"
cd "$T/rw"
echo keep > f
mkdir d
for n in .git .GIT git~1 .Git. GIT~1; do
  refused "mkdir $n" mkdir "$n"
  refused "mkdir -p d/$n/x" mkdir -p "d/$n/x"
  refused "touch $n" touch "$n"
  refused "redirect to d/$n" sh -c "echo x > 'd/$n'"
  refused "mv f $n" mv f "$n"
  refused "ln -s f $n" ln -s f "$n"
  [ ! -e "$n" ] || fail "$n exists after the refusals"
done
[ "$(ls | tr '\n' ' ')" = "d f " ] || fail "rw lists: $(ls | tr '\n' ' ')"
[ "$(ls d)" = "" ] || fail "d lists: $(ls d)"
[ "$(cat f)" = keep ] || fail "f holds $(cat f)"
echo good > d/good
ln -s d/good link
cd "$ROOT"
echo commit > "$T/ctl"
[ ! -e "$T" ] || fail "transaction still open after commit"
[ "$(ls branch/master/ro | tr '\n' ' ')" = "d f link " ] || fail "ro lists: $(ls branch/master/ro)"
[ "$(cat branch/master/ro/d/good)" = good ] || fail "d/good"
echo "refused_names: OK"
