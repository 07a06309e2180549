#!/bin/sh
# Fuzz the OTLP wire walker with libFuzzer + AddressSanitizer + UBSan.
#   tests/fuzz/run.sh [SECONDS]        (default 300; needs clang, e.g. apt-get install clang)
# Builds build/fuzz/fuzz_wire (never committed), seeds build/fuzz/corpus from valid and hostile
# requests, runs libFuzzer for SECONDS and prints its summary. Findings land in build/fuzz/.
set -eu
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-300}
PY=${PYTHON:-.venv/bin/python}
INCLUDE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
LIBDIR=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
VERSION=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')
mkdir -p build/fuzz/corpus
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$INCLUDE" tests/fuzz/fuzz_wire.c -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" \
    -lpython"$VERSION" -lm -o build/fuzz/fuzz_wire
if [ -z "$(ls build/fuzz/corpus)" ]; then
    PYTHONPATH=. $PY tests/fuzz/seeds.py build/fuzz/corpus 200
fi
# CPython's own allocations at start are not the walker's leaks.
ASAN_OPTIONS=detect_leaks=0 ./build/fuzz/fuzz_wire -max_total_time="$SECONDS_TO_RUN" \
    -max_len=65536 -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/corpus
