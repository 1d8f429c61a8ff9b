#!/usr/bin/env bash
# The C API from C: builds libnormcl.so (scripts/build-c-library.sh; NORMCL_LIBRARY picks
# another), compiles Tests/C/normcl_client.c with the system cc as strict C99 against
# include/normcl.h, and runs it. Exits non-zero when a check fails.
#
#   bash Tests/C/run.sh      (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
library=$(bash scripts/build-c-library.sh)
[ -f "$library" ] || { echo "Tests/C/run.sh: no library at $library" >&2; exit 1; }
work=$(mktemp -d /tmp/normcl-c-client.XXXXXX)
trap 'rm -rf "$work"' EXIT
libdir=$(dirname "$library")
cc -std=c99 -pedantic -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -I include \
    Tests/C/normcl_client.c -o "$work/normcl_client" \
    -L "$libdir" -Wl,-rpath,"$libdir" -l:"$(basename "$library")" -lOpenCL -lm
"$work/normcl_client"
