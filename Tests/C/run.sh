#!/usr/bin/env bash
# The C API from C: builds libnormcl.so (scripts/build-c-library.sh; NORMCL_LIBRARY picks
# another), compiles Tests/C/normcl_client.c, the example of docs/C-API.md and the README's
# C example (inside Tests/C/readme_example.c) with the system cc as strict C99 against
# include/normcl.h, and runs them. Exits non-zero when a check fails.
#
#   bash Tests/C/run.sh      (CI runs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
library=$(bash scripts/build-c-library.sh)
[ -f "$library" ] || { echo "Tests/C/run.sh: no library at $library" >&2; exit 1; }
work=$(mktemp -d /tmp/normcl-c-client.XXXXXX)
trap 'rm -rf "$work"' EXIT
libdir=$(dirname "$library")
compile() {  # compile SOURCE OUTPUT
    cc -std=c99 -pedantic -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -I include "$1" -o "$2" \
        -L "$libdir" -Wl,-rpath,"$libdir" -l:"$(basename "$library")" -lOpenCL -lm
}
# The ```c block after "<!-- example: minimal -->" in docs/C-API.md.
awk '/<!-- example: minimal -->/ { found = 1; next }
     found && /^```c/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' docs/C-API.md >"$work/example.c"
[ -s "$work/example.c" ] || { echo "Tests/C/run.sh: no example block in docs/C-API.md" >&2; exit 1; }
# The ```c block after "<!-- example: c-api -->" in README.md, inside Tests/C/readme_example.c.
awk '/<!-- example: c-api -->/ { found = 1; next }
     found && /^```c/ { inside = 1; next }
     inside && /^```/ { exit }
     inside { print }' README.md >"$work/readme_example.inc"
[ -s "$work/readme_example.inc" ] || { echo "Tests/C/run.sh: no c-api example in README.md" >&2; exit 1; }
compile Tests/C/normcl_client.c "$work/normcl_client"
cc -std=c99 -pedantic -Wall -Wextra -Werror -I include -I "$work" Tests/C/readme_example.c -o "$work/readme_example" \
    -L "$libdir" -Wl,-rpath,"$libdir" -l:"$(basename "$library")" -lOpenCL -lm
compile "$work/example.c" "$work/example"
"$work/normcl_client"
echo "docs/C-API.md example: $("$work/example")"
"$work/readme_example"
