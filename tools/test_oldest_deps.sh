#!/usr/bin/env bash
# Test sparsetconv against the OLDEST NumPy and SciPy that pyproject.toml declares
# (`dependencies`), on the oldest Python that `requires-python` allows.
#
#   tools/test_oldest_deps.sh            # Python from $PYTHON, else python3.X on PATH or pyenv
#   PYTHON=/path/to/python3.10 tools/test_oldest_deps.sh
#
# The package is built as users build it (an isolated build, against a current NumPy:
# an extension built against NumPy 2 runs on NumPy 1.23+), installed into a fresh venv
# with numpy==<floor> and scipy==<floor> pinned exactly, and the tests run against the
# installed copy from outside the source tree (tools/run_installed_tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

# The floors, read from pyproject.toml (no TOML parser needed: the lines are plain).
floor() { sed -n "s/^dependencies = .*\"$1>=\([0-9.]*\)\".*/\1/p" pyproject.toml; }
numpy=${NUMPY:-$(floor numpy)}     # NUMPY=1.24 tools/test_oldest_deps.sh: another version
scipy=${SCIPY:-$(floor scipy)}
oldest_python=$(sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)
[ -n "$numpy" ] && [ -n "$scipy" ] && [ -n "$oldest_python" ] || {
    echo "could not read the floors from pyproject.toml" >&2; exit 1; }

if [ -z "${PYTHON:-}" ]; then
    for candidate in "python$oldest_python" \
            "$(pyenv root 2>/dev/null)"/versions/"$oldest_python".*/bin/python"$oldest_python"; do
        if "$candidate" -c pass 2>/dev/null; then PYTHON=$candidate; break; fi
    done
fi
[ -n "${PYTHON:-}" ] || { echo "no python$oldest_python found: set PYTHON" >&2; exit 1; }

venv="${TMPDIR:-/tmp}/sparsetconv-oldest-venv"
rm -rf "$venv"
"$PYTHON" -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
echo "== Python $(python -c 'import platform; print(platform.python_version())'), numpy==$numpy, scipy==$scipy"
python -m pip install --quiet build
dist=$(mktemp -d "${TMPDIR:-/tmp}/sparsetconv-oldest-dist.XXXXXX")
python -m build --sdist --outdir "$dist" "$src" > "$dist/build.log"
sdist=$(ls "$dist"/sparsetconv-*.tar.gz)
python -m pip install --quiet "numpy==$numpy" "scipy==$scipy" "$sdist[test,plot,dask]"
(cd / && python -c "import numpy, scipy, sparsetconv; print('installed: numpy', \
numpy.__version__, 'scipy', scipy.__version__, 'sparsetconv', sparsetconv.__version__)")
bash "$src/tools/run_installed_tests.sh" "$src" -q
rm -rf "$venv" "$dist"
