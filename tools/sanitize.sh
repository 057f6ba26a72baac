#!/usr/bin/env bash
# Build the compiled extension with AddressSanitizer and UndefinedBehaviorSanitizer and
# run the test suite against it, in a temporary copy of the repository (the checkout's
# own build is left alone).
#
#   tools/sanitize.sh                  # the whole suite
#   tools/sanitize.sh tests/test_kernels.py -k gil   # arguments go to pytest
#
# Needs gcc (or clang) with the sanitizer runtimes, and the test requirements installed
# in the Python that runs it ($PYTHON, default python3).  The interpreter itself is not
# instrumented, so the ASan runtime is preloaded; leak detection is off because CPython
# keeps objects alive at exit by design.  -fno-wrapv undoes the -fwrapv that CPython's
# build flags add, which would hide signed overflow from UBSan.  Any sanitizer report
# fails the run, and the reports are printed.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparsetconv-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "sanitize: copying the repository to $WORK/src"
mkdir -p "$WORK/src" "$WORK/logs"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/src")
rm -f "$WORK"/src/sparsetconv/*.so "$WORK"/src/sparsetconv/_kernels.c "$WORK"/src/sparsetconv/_openmp.c

FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-wrapv -g"
echo "sanitize: building with CFLAGS=$FLAGS"
(cd "$WORK/src" && CC="$CC" CFLAGS="$FLAGS" LDFLAGS="-fsanitize=address,undefined" \
    "$PYTHON" setup.py build_ext --inplace > "$WORK/build.log" 2>&1) || {
    tail -40 "$WORK/build.log"; echo "sanitize: build failed"; exit 1; }
if grep -q "OpenMP not available" "$WORK/build.log"; then
    echo "sanitize: the OpenMP probe failed under the sanitizer flags; building serially" >&2
fi
# (nm into a file: `nm | grep -q` fails under pipefail when grep's early exit kills nm)
nm -D "$WORK"/src/sparsetconv/_kernels*.so > "$WORK/symbols"
grep -q __asan_ "$WORK/symbols" || {
    echo "sanitize: the extension is not instrumented"; exit 1; }

# libstdc++ too: ASan intercepts __cxa_throw, and must find the real one at start-up
# for C++ extensions (matplotlib's) that throw.
LIBASAN="$("$CC" -print-file-name=libasan.so) $("$CC" -print-file-name=libstdc++.so)"
echo "sanitize: running the tests with LD_PRELOAD=$LIBASAN"
status=0
(cd "$WORK/src" &&
    LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$WORK/logs/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:log_path=$WORK/logs/ubsan" \
    PYTHONPATH="$WORK/src" SPARSETCONV_SANITIZED=1 \
    "$PYTHON" -m pytest -q -p no:cacheprovider "$@") || status=$?

reports=$(find "$WORK/logs" -type f | sort)
if [ -n "$reports" ]; then
    for report in $reports; do echo "=== $report"; cat "$report"; done
    echo "sanitize: sanitizer reports found"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize: the tests failed (exit $status), no sanitizer report"
    exit "$status"
fi
echo "sanitize: clean (no AddressSanitizer or UndefinedBehaviorSanitizer report)"
