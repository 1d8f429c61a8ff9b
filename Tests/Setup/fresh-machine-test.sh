#!/usr/bin/env bash
# The set-up path of a fresh machine, tested on a machine that has everything installed:
# stand-ins for dpkg, dpkg-query, apt-get, id and sudo come first on PATH and pretend
# that the OpenCL packages are missing until the stand-in apt-get "installs" them.
#
#   bash Tests/Setup/fresh-machine-test.sh      (CI runs it after the tests and the benchmark)
#
# Why: the scripts once did `eval "$(bash scripts/install-dependencies.sh)"`, and on a
# machine without the packages apt-get's progress on stdout ("Selecting previously
# unselected package …") was run as shell: the README's first command failed with
# "Selecting: command not found". CI never saw it, since there the packages are installed.
#
# The stand-in apt-get prints what the real one prints (progress on stdout, a debconf
# line on stderr) and records the packages in a marker file; the stand-in dpkg-query
# then reports them installed. Nothing on the real machine is installed or removed.
#
# It runs the README's two commands for real (the benchmark's --help, and one small test
# suite), reusing the builds CI made before it, so it takes seconds when they are there.
# Ends with "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$PWD

# One small, fast suite for the README's test command (no OpenCL work beyond set-up).
test_filter="${NORMCL_SETUP_TEST_FILTER:-RMSNormErrorTests}"
packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd)

work=$(mktemp -d /tmp/normcl-fresh-machine.XXXXXX)
trap 'rm -rf "$work"' EXIT
standins=$work/standins      # dpkg, dpkg-query, apt-get, id
sudo_dir=$work/sudo          # a stand-in sudo, on PATH only where a scenario has one
system=$work/system          # the machine's own commands, minus those the stand-ins replace and sudo
state=$work/state            # what the stand-ins share: installed packages, the calls made
mkdir -p "$standins" "$sudo_dir" "$system" "$state"

# --- Stand-ins ---------------------------------------------------------------------------
# $FAKE_STATE/installed: one package a line, "installed" by the stand-in apt-get.
# $FAKE_STATE/config-files: packages removed with their configuration kept (dpkg status
#   "deinstall ok config-files", where `dpkg -s` still exits 0).
# $FAKE_STATE/calls: every apt-get and sudo call, one a line.

cat >"$standins/dpkg-query" <<'EOF'
#!/usr/bin/env bash
# Stand-in dpkg-query: -W [-f FORMAT] and -s for the packages in $FAKE_STATE.
format='${Package}\t${Version}\n' mode="" names=()
while (($#)); do
    case $1 in
        -W|--show) mode=show ;;
        -s|--status) mode=status ;;
        -f) format=$2; shift ;;
        -f*|--showformat=*) format=${1#-f}; format=${format#--showformat=} ;;
        -*) echo "stand-in dpkg-query: unsupported option $1" >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
status_of() {
    if grep -qxF "$1" "$FAKE_STATE/installed" 2>/dev/null; then echo "install ok installed"
    elif grep -qxF "$1" "$FAKE_STATE/config-files" 2>/dev/null; then echo "deinstall ok config-files"
    fi
}
rc=0
for name in "${names[@]}"; do
    status=$(status_of "$name")
    if [ -z "$status" ]; then
        echo "dpkg-query: package '$name' is not installed and no information is available" >&2
        rc=1
    elif [ "$mode" = status ]; then
        printf 'Package: %s\nStatus: %s\nVersion: 1.0\n\n' "$name" "$status"
    else
        out=${format//'${Package}'/$name}
        out=${out//'${Status}'/$status}
        out=${out//'${db:Status-Status}'/${status##* }}
        out=${out//'${Version}'/1.0}
        printf "$out"
    fi
done
exit $rc
EOF

cat >"$standins/dpkg" <<'EOF'
#!/usr/bin/env bash
# Stand-in dpkg: -s/--status as dpkg-query does (exit 0 for config-files too, as the real one).
case ${1:-} in
    -s|--status) exec dpkg-query "$@" ;;
    *) echo "stand-in dpkg: unsupported: dpkg $*" >&2; exit 2 ;;
esac
EOF

cat >"$standins/apt-get" <<'EOF'
#!/usr/bin/env bash
# Stand-in apt-get: prints what the real one prints, records the installed packages.
echo "apt-get $*" >>"$FAKE_STATE/calls"
if [ "$(id -u)" -ne 0 ]; then
    echo "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)" >&2
    exit 100
fi
[ -z "${FAKE_APT_FAILS:-}" ] || { echo "E: Unable to locate package pocl-opencl-icd" >&2; exit 100; }
command="" names=()
for arg; do
    case $arg in
        -*) ;;
        *) if [ -z "$command" ]; then command=$arg; else names+=("$arg"); fi ;;
    esac
done
case $command in
    update)  # quiet with -qq, as the real one
        [[ " $* " == *" -qq "* ]] || echo "Hit:1 http://deb.debian.org/debian bookworm InRelease" ;;
    install)
        echo "debconf: delaying package configuration, since apt-utils is not installed" >&2
        for name in "${names[@]}"; do
            echo "Selecting previously unselected package $name."
            echo "(Reading database ... 23456 files and directories currently installed.)"
            echo "Preparing to unpack .../${name}_1.0_amd64.deb ..."
            echo "Unpacking $name (1.0) ..."
        done
        for name in "${names[@]}"; do
            echo "Setting up $name (1.0) ..."
            [ -n "${FAKE_APT_INSTALLS_NOTHING:-}" ] || echo "$name" >>"$FAKE_STATE/installed"
        done
        echo "Processing triggers for libc-bin (2.36-9+deb12u10) ..." ;;
    *) echo "E: stand-in apt-get: unsupported command '$command'" >&2; exit 100 ;;
esac
EOF

cat >"$standins/id" <<'EOF'
#!/usr/bin/env bash
# Stand-in id: `id -u` is $FAKE_UID; anything else is the real id.
if [ "${1:-}" = -u ] && [ $# -eq 1 ]; then echo "${FAKE_UID:-0}"; exit 0; fi
exec /usr/bin/id "$@"
EOF

cat >"$sudo_dir/sudo" <<'EOF'
#!/usr/bin/env bash
# Stand-in sudo: records the call and runs the command as the (stand-in) root.
echo "sudo $*" >>"$FAKE_STATE/calls"
FAKE_UID=0 exec "$@"
EOF
chmod +x "$standins"/* "$sudo_dir/sudo"

# The machine's commands as symlinks, so that sudo (and the commands stood in for) can be
# left out whatever the real PATH holds. The Swift toolchain is not among them when it is in
# /opt/swift: then scripts/lib/swift-path.sh has to find it, as on a fresh machine.
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    for path in "$dir"/*; do
        name=${path##*/}
        case $name in sudo|dpkg|dpkg-query|apt-get|id) continue ;; esac
        [ -x "$path" ] && [ ! -d "$path" ] && [ ! -e "$system/$name" ] && ln -s "$path" "$system/$name"
    done
done
path_without_sudo=$standins:$system
swift_on_path=$(command -v swift || true)
if [ -n "$swift_on_path" ] && [ "${swift_on_path%/swift}" != /opt/swift/usr/bin ] && [ ! -e "$system/swift" ]; then
    path_without_sudo=$path_without_sudo:${swift_on_path%/swift}  # a toolchain the helper would not look for
fi
path_with_sudo=$sudo_dir:$path_without_sudo

# --- Running scenarios -------------------------------------------------------------------
passed=0 failed=0 log="" rc=0 started=$SECONDS

# fresh: a machine without the packages (nothing installed, no calls yet).
fresh() { rm -f "$state"/*; touch "$state/calls"; }

# run_as UID PATH COMMAND...: runs COMMAND in the repository with the stand-ins first on
# PATH, stdout and stderr kept apart (stdout in $out_file, both in $log).
run_as() {
    local uid=$1 path=$2; shift 2
    log=$work/run.log out_file=$work/stdout started=$SECONDS
    (cd "$repo" && env -u NORMCL_DOCS FAKE_STATE="$state" FAKE_UID="$uid" PATH="$path" \
        "$@") >"$out_file" 2>"$work/stderr"
    rc=$?
    cat "$out_file" "$work/stderr" >"$log"
}

failures=()
check() {  # check DESCRIPTION CONDITION-COMMAND...
    local description=$1; shift
    if "$@"; then
        passed=$((passed + 1)); echo "PASS: $description ($((SECONDS - started)) s)"
    else
        failed=$((failed + 1)); failures+=("$description"); echo "FAIL: $description ($((SECONDS - started)) s)"
        echo "  --- output (last 30 lines) ---"; tail -30 "$log" | sed 's/^/  | /'
        echo "  --- apt-get/sudo calls ---"; sed 's/^/  | /' "$state/calls"
    fi
}

# Conditions on the last run.
succeeded() { [ "$rc" -eq 0 ]; }
failed_cleanly() { [ "$rc" -ne 0 ] && [ "$rc" -ne 127 ]; }
no_command_not_found() { ! grep -q "command not found" "$log"; }
stdout_empty() { [ ! -s "$out_file" ]; }
output_has() { grep -qF -- "$1" "$log"; }
apt_installed_packages() {  # apt-get install was called, with every package
    local line; line=$(grep -E '^apt-get .*install' "$state/calls") || return 1
    for p in "${packages[@]}"; do [[ " $line " == *" $p "* ]] || return 1; done
}
apt_not_called() { ! grep -q '^apt-get' "$state/calls"; }
packages_recorded() { for p in "${packages[@]}"; do grep -qxF "$p" "$state/installed" || return 1; done; }
all_of() { local c; for c; do eval "$c" || return 1; done; }

echo "== set-up path on a fresh machine (stand-in apt, as root)"
fresh
run_as 0 "$path_without_sudo" bash scripts/install-dependencies.sh
check "installer: installs every package, prints nothing on stdout (apt-get's progress goes to stderr)" \
    all_of succeeded stdout_empty apt_installed_packages packages_recorded \
    "output_has 'Selecting previously unselected package pocl-opencl-icd.'" no_command_not_found

fresh
run_as 0 "$path_without_sudo" bash scripts/benchmark.sh --help
check "README: bash scripts/benchmark.sh --help installs the packages and prints the help" \
    all_of succeeded apt_installed_packages "output_has 'USAGE: normcl-bench'" no_command_not_found

: >"$state/calls"
run_as 0 "$path_without_sudo" bash scripts/benchmark.sh --help
check "benchmark.sh --help again: packages present now, apt-get not called" \
    all_of succeeded apt_not_called "output_has 'USAGE: normcl-bench'"

fresh
run_as 0 "$path_without_sudo" bash scripts/test.sh --filter "$test_filter"
check "README: bash scripts/test.sh --filter $test_filter installs the packages and passes" \
    all_of succeeded apt_installed_packages no_command_not_found \
    "grep -qE 'Test run with [1-9][0-9]* tests? .*passed' '$log'"

fresh
printf '%s\n' ocl-icd-opencl-dev opencl-headers >"$state/installed"
echo pocl-opencl-icd >"$state/config-files"   # `apt-get remove` keeps its configuration
run_as 0 "$path_without_sudo" bash scripts/install-dependencies.sh
check "a package removed with its configuration kept counts as missing (dpkg -s would say installed)" \
    all_of succeeded "grep -qE '^apt-get .*install.* pocl-opencl-icd' '$state/calls'" \
    "! grep -qE '^apt-get .*install.* opencl-headers' '$state/calls'"

if [ -x /opt/swift/usr/bin/swift ] && [ ! -e "$system/swift" ]; then
    run_as 0 "$path_without_sudo" bash -c 'source scripts/lib/swift-path.sh && command -v swift'
    check "scripts/lib/swift-path.sh finds /opt/swift when swift is not on PATH" \
        all_of succeeded "grep -qx /opt/swift/usr/bin/swift '$out_file'"
fi

echo "== failures say what to do"
fresh
run_as 1000 "$path_without_sudo" bash scripts/benchmark.sh --help
check "non-root without sudo: benchmark.sh exits non-zero naming the packages and the apt-get command" \
    all_of failed_cleanly apt_not_called no_command_not_found \
    "output_has 'not installed: ocl-icd-opencl-dev opencl-headers pocl-opencl-icd'" \
    "output_has 'apt-get update && apt-get install -y ocl-icd-opencl-dev opencl-headers pocl-opencl-icd'" \
    "! output_has 'USAGE: normcl-bench'"

fresh
run_as 1000 "$path_without_sudo" bash scripts/test.sh --filter "$test_filter"
check "non-root without sudo: test.sh exits non-zero with the same message, before building" \
    all_of failed_cleanly apt_not_called no_command_not_found "output_has 'apt-get install -y'"

fresh
run_as 1000 "$path_with_sudo" bash scripts/install-dependencies.sh
check "non-root with sudo: installs through sudo, nothing on stdout" \
    all_of succeeded stdout_empty packages_recorded \
    "grep -qE '^sudo .*apt-get install' '$state/calls'" no_command_not_found

fresh
run_as 0 "$path_without_sudo" env FAKE_APT_INSTALLS_NOTHING=1 bash scripts/install-dependencies.sh
check "apt-get succeeds but installs nothing: non-zero exit, says which packages are still missing" \
    all_of failed_cleanly stdout_empty \
    "output_has 'still not installed: ocl-icd-opencl-dev opencl-headers pocl-opencl-icd'"

fresh
run_as 0 "$path_without_sudo" env FAKE_APT_FAILS=1 bash scripts/benchmark.sh --help
check "apt-get fails: benchmark.sh exits non-zero with the command to run" \
    all_of failed_cleanly no_command_not_found "output_has 'apt-get failed'" "! output_has 'USAGE: normcl-bench'"

echo "== no script runs another script's output as shell"
log=$work/grep.log
grep -nE '^[^#]*\beval\b' "$repo"/scripts/*.sh "$repo"/scripts/lib/*.sh "$repo"/.ci/run >"$log" 2>&1
rc=$?
check "scripts/ and .ci/run contain no eval" test "$rc" -eq 1

echo
if ((failed)); then printf 'failed: %s\n' "${failures[@]}"; fi
echo "$passed passed, $failed failed"
((failed == 0))
