#!/usr/bin/env bash
# Installs what Tests/Python needs: pyopencl (numpy comes with it) and pytest, with pip
# from PyPI, and python3-pip with apt-get when pip itself is missing. Does nothing when
# both import already. Prints nothing on standard output (as scripts/install-dependencies.sh).
#
#   bash scripts/install-python-test-dependencies.sh      (CI runs it)
#
# Debian's own Python is "externally managed" (PEP 668): pip refuses to install into it
# unless given --break-system-packages, which is tried when the plain install is refused.
set -euo pipefail
exec 1>&2
python=${PYTHON:-python3}
"$python" -c "import pyopencl, pytest" 2>/dev/null && exit 0

if ! "$python" -m pip --version >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    echo "install-python-test-dependencies: installing python3-pip"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
fi
echo "install-python-test-dependencies: pip install pyopencl pytest"
"$python" -m pip install -q pyopencl pytest ||
    "$python" -m pip install -q --break-system-packages pyopencl pytest
"$python" -c "import pyopencl, pytest"
