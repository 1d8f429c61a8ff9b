# shellcheck shell=bash
# Sourced (not run) by the scripts: puts the Swift toolchain on PATH.
#
#   source scripts/lib/swift-path.sh
#
# Uses the `swift` already on PATH, else the toolchain in /opt/swift (where the project's
# machines have it). This is a file to source rather than a command whose output is
# eval'ed: the scripts once did `eval "$(bash scripts/install-dependencies.sh)"`, and
# apt-get's progress lines on stdout ("Selecting previously unselected package …") were
# run as shell commands on any machine that still had packages to install.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "error: no Swift toolchain: 'swift' is not on PATH and /opt/swift/usr/bin/swift does not exist." >&2
    echo "       Install Swift 6 (https://www.swift.org/install/linux/) and put its usr/bin on PATH." >&2
    return 1 2>/dev/null || exit 1
fi
