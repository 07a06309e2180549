#!/bin/sh
# Run the fast-path tests against an AddressSanitizer + UBSan build of the wire walker.
#   tests/fuzz/asan_tests.sh [pytest args]   (default: the equivalence and router unit tests)
# Replaces src/processor/mapping/_wire*.so with the sanitized build for the run and rebuilds
# the normal one afterwards (the build hook's flags).
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
INCLUDE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SUFFIX=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
TARGET=src/processor/mapping/_wire$SUFFIX
restore() { gcc -shared -fPIC -O2 -I"$INCLUDE" src/processor/mapping/_wire.c -o "$TARGET"; }
trap restore EXIT
gcc -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=undefined -I"$INCLUDE" src/processor/mapping/_wire.c -o "$TARGET"
[ $# -gt 0 ] || set -- tests/unit/test_fastpath_equivalence.py tests/unit/test_router_traces.py \
    tests/unit/test_router_logs.py tests/unit/test_router_hostile.py \
    tests/unit/test_router_trace_identity.py tests/unit/test_privacy.py
# CPython's own allocations are not the walker's leaks; every other report aborts the run.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    $PY -m pytest -q -p no:cacheprovider "$@"
