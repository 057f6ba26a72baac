"""Packaging and introspection: the source-tree import error, ``show_config``, public
signatures (type hints, no private parameters) and the files a distribution ships.
"""

import inspect
import io
import os
import shutil
import subprocess
import sys
import typing

import pytest

import sparsetconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(sparsetconv.__file__))
SOURCE_TREE_MESSAGE = (
    "sparsetconv is being imported from its source tree, which has no compiled "
    "extension: run `pip install -e .`, or run from another directory"
)


# An editable install's finder (setuptools' ``__editable__`` module) would resolve the
# copied package's ``_kernels`` to the checkout's compiled module; take it out, so the
# copy is imported as it would be beside a regular install.
_NO_EDITABLE_FINDER = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if '__editable__' not in str(getattr(f, '__module__', ''))]\n"
)


def _python(code, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", _NO_EDITABLE_FINDER + code],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


# ---------------------------------------------------------------------------
# Importing from a source tree that has no compiled extension

def _copy_sources(destination, with_setup=True):
    """The package's Python and Cython sources -- no compiled modules -- under destination."""
    package = destination / "sparsetconv"
    package.mkdir()
    for name in os.listdir(PACKAGE):
        if name.endswith((".py", ".pyx", ".h")) and name != "_build_info.py":
            shutil.copy(os.path.join(PACKAGE, name), package / name)
    if with_setup:
        (destination / "setup.py").write_text("# stands for the repository's setup.py\n")
    return package


def test_import_from_unbuilt_source_tree_says_how_to_fix(tmp_path):
    _copy_sources(tmp_path)
    result = _python("import sparsetconv", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: " + SOURCE_TREE_MESSAGE), result.stderr
    assert str(tmp_path / "sparsetconv") in last
    # The misleading wording of the underlying failure is not shown.
    assert "circular import" not in result.stderr


def test_import_from_a_folder_without_extension_that_is_not_a_source_tree(tmp_path):
    _copy_sources(tmp_path, with_setup=False)
    result = _python("import sparsetconv", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "compiled extension is missing" in last and "reinstall" in last, result.stderr


def test_a_broken_built_extension_keeps_its_own_error(tmp_path):
    # A compiled module that is present but fails to load: its own error says why.
    from importlib.machinery import EXTENSION_SUFFIXES

    package = _copy_sources(tmp_path)
    (package / ("_kernels" + EXTENSION_SUFFIXES[0])).write_bytes(b"not a shared library")
    result = _python("import sparsetconv", cwd=tmp_path)
    assert result.returncode == 1
    assert SOURCE_TREE_MESSAGE not in result.stderr
    assert "ImportError" in result.stderr


# ---------------------------------------------------------------------------
# show_config

def test_show_config_prints_and_returns_every_section():
    out = io.StringIO()
    config = sparsetconv.show_config(file=out)
    text = out.getvalue()
    assert set(config) == {"sparsetconv", "python", "dependencies", "build", "openmp",
                           "threads", "blas", "simd"}
    for section in config:
        assert f"{section}:\n" in text
    assert config["sparsetconv"]["version"] == sparsetconv.__version__
    assert f"  version: {sparsetconv.__version__}\n" in text
    assert config["openmp"]["enabled"] == sparsetconv.openmp_enabled()
    assert config["threads"]["num_threads"] == sparsetconv.get_num_threads()
    from sparsetconv import _kernels
    assert config["blas"]["thread_hook_installed"] == _kernels.blas_thread_hook_installed()
    assert isinstance(config["simd"]["path"], str)


def test_show_config_follows_the_thread_setting():
    with sparsetconv.threads(1):
        assert sparsetconv.show_config(file=io.StringIO())["threads"]["num_threads"] == 1


def test_show_config_records_the_build():
    build = sparsetconv.show_config(file=io.StringIO())["build"]
    if not build["recorded"]:
        pytest.skip("extension built without setup.py's build record")
    assert build["openmp"] == sparsetconv.openmp_enabled()
    assert ("-fopenmp" in build["extra_compile_args"]
            or "/openmp" in build["extra_compile_args"]
            or "-Xpreprocessor" in build["extra_compile_args"]) == build["openmp"]


def test_show_config_names_the_loaded_openmp_runtime_and_blas():
    if not sys.platform.startswith("linux"):
        pytest.skip("the runtime libraries are read from /proc/self/maps")
    config = sparsetconv.show_config(file=io.StringIO())
    if sparsetconv.openmp_enabled():
        runtime = os.path.basename(config["openmp"]["runtime"])
        assert any(name in runtime for name in ("libgomp", "libomp", "libiomp")), runtime
    assert config["blas"]["library"] is not None
    # The hook can only be installed into an OpenBLAS.
    if config["blas"]["thread_hook_installed"]:
        assert "openblas" in os.path.basename(config["blas"]["library"]).lower()


# ---------------------------------------------------------------------------
# Public signatures

def _public_callables():
    for name in sparsetconv.__all__:
        obj = getattr(sparsetconv, name)
        if inspect.isfunction(obj):
            yield name, obj


TYPED = ("functional", "shapes", "matrix", "gradients", "verify", "_threads", "_config")


@pytest.mark.parametrize("name, function", list(_public_callables()))
def test_public_signatures_have_no_private_parameters(name, function):
    private = [p for p in inspect.signature(function).parameters if p.startswith("_")]
    assert not private, f"{name} has private parameters {private}"


@pytest.mark.parametrize("name, function", [
    (name, f) for name, f in _public_callables() if f.__module__.rsplit(".", 1)[-1] in TYPED
])
def test_public_functions_are_type_hinted(name, function):
    # The hints resolve (no typo in a string annotation) and cover every parameter.
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    assert set(parameters) <= set(hints), f"{name}: no hint for {set(parameters) - set(hints)}"
    assert "return" in hints, f"{name}: no return hint"


@pytest.mark.parametrize("base", ["conv_transpose", "conv"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_ranked_aliases_have_the_nd_signature_and_name(base, rank):
    nd = getattr(sparsetconv, base)
    alias = getattr(sparsetconv, f"{base}{rank}d")
    assert inspect.signature(alias) == inspect.signature(nd)
    assert typing.get_type_hints(alias) == typing.get_type_hints(nd)
    assert alias.__name__ == f"{base}{rank}d"
    with pytest.raises(TypeError, match=rf"^{base}{rank}d\(\) got an unexpected keyword"):
        alias(None, None, _rank=rank)


def test_py_typed_marker_is_installed_with_the_package():
    assert os.path.exists(os.path.join(PACKAGE, "py.typed"))


# ---------------------------------------------------------------------------
# What a source distribution ships (checked where the repository's files are at hand)

def test_manifest_ships_what_the_tests_and_docs_need():
    manifest = os.path.join(ROOT, "MANIFEST.in")
    if not os.path.exists(manifest):
        pytest.skip("not run from the repository or an unpacked sdist")
    text = open(manifest, encoding="utf-8").read()
    for line in ("include README.md LICENSE CHANGELOG.md", "recursive-include tests *.py",
                 "recursive-include docs", "recursive-include sparsetconv *.py *.pyx"):
        assert line in text
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "tests/conftest.py",
                 "tests/reference.py", "docs/conf.py"):
        assert os.path.exists(os.path.join(ROOT, name)), name


def test_license_is_declared_as_spdx_with_its_file():
    pyproject = os.path.join(ROOT, "pyproject.toml")
    if not os.path.exists(os.path.join(ROOT, "LICENSE")):
        pytest.skip("not run from the repository or an unpacked sdist")
    tomllib = pytest.importorskip("tomllib")
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    assert "Copyright (c) 2026, the sparsetconv developers" in open(
        os.path.join(ROOT, "LICENSE"), encoding="utf-8").read()


AMD_ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vp2intersect
"""


@pytest.mark.parametrize("text, expected", [
    (AMD_ZEN5, True),
    (AMD_ZEN5.replace("AuthenticAMD", "GenuineIntel"), False),  # OpenBLAS knows Intel's
    (AMD_ZEN5.replace(" avx512bw", ""), False),  # its AVX-512 kernels need BW too
    (AMD_ZEN5.replace("avx512", "avx2_"), False),
    ("", False),
])
def test_openblas_avx512_kernels_only_for_amd_cpus_with_the_subsets_they_use(text, expected):
    assert sparsetconv._amd_cpu_with_avx512(text) is expected


def _import_in_child(**env_changes):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update(env_changes)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import io, os, sparsetconv; c = sparsetconv.show_config(file=io.StringIO()); "
            "print(c['blas']['kernels_chosen_by']); print(c['blas']['kernels']); "
            "print(os.environ.get('OPENBLAS_CORETYPE'))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout.splitlines()


def test_openblas_kernels_follow_the_cpu_and_leave_the_environment_as_it_was():
    chosen, kernels, variable = _import_in_child()
    assert variable == "None"
    if sparsetconv._amd_cpu_with_avx512() and kernels != "None":
        assert chosen.startswith("SkylakeX (set by sparsetconv"), chosen
        assert kernels == "SkylakeX"
    else:
        assert chosen.startswith("OpenBLAS's own"), chosen


def test_a_users_openblas_coretype_wins():
    chosen, kernels, variable = _import_in_child(OPENBLAS_CORETYPE="Haswell")
    assert chosen == "set by the user: OPENBLAS_CORETYPE=Haswell"
    assert variable == "Haswell"
    assert kernels in ("Haswell", "None")  # None: SciPy's BLAS is not an OpenBLAS


def test_a_blas_loaded_before_sparsetconv_keeps_its_kernels():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    code = "import scipy.linalg, sparsetconv; print(sparsetconv._OPENBLAS_KERNELS)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert "loaded before sparsetconv" in result.stdout
