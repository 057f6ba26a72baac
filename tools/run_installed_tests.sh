#!/usr/bin/env bash
# Run the test suite against the *installed* sparsetconv (a wheel, not the source tree).
#
#   tools/run_installed_tests.sh [SOURCE_DIR] [pytest arguments...]
#
# SOURCE_DIR (default: this repository, or an unpacked sdist) provides tests/, README.md,
# docs/ and pyproject.toml (the pytest configuration).  They are copied into a temporary
# directory WITHOUT the sparsetconv/ source package, so `import sparsetconv` can only
# find the installed copy; the script checks that it does.  The test modules, the
# README's and docs' examples (doctests) and the installed package's docstring examples
# all run, as in the source-tree run (`python -m pytest`).
set -euo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
shift || true
run=$(mktemp -d "${TMPDIR:-/tmp}/sparsetconv-installed-tests.XXXXXX")
trap 'rm -rf "$run"' EXIT
cp -r "$src/tests" "$src/README.md" "$src/pyproject.toml" "$run/"
mkdir "$run/docs"
cp "$src"/docs/*.rst "$src"/docs/*.png "$run/docs/" 2>/dev/null || true
cd "$run"
package=$(python -c "import os, sparsetconv; print(os.path.dirname(sparsetconv.__file__))")
case "$package" in
    "$src"/*) echo "error: sparsetconv imports from the source tree ($package)" >&2; exit 1;;
esac
echo "testing the installed sparsetconv in $package"
# The package's own docstring examples: --doctest-modules on its installed folder.
python -m pytest -p no:cacheprovider -c pyproject.toml --rootdir . tests README.md docs "$package" "$@"
