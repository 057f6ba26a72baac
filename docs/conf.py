"""Sphinx configuration of the sparsetconv documentation.

Build:  sphinx-build -W -b html docs docs/_build/html   (warnings are errors)

The API reference is generated from ``sparsetconv.__all__``: every public name gets a
page (``generated/``), grouped by the module that defines it, so a name added to
``__all__`` appears without editing the docs.  The examples on the pages are doctests,
run by pytest with the test suite (``--doctest-glob=*.rst``).
"""

import inspect
import os
import sys

try:
    import sparsetconv
except ImportError:  # not installed: the checkout, built in place (build_ext --inplace)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sparsetconv

project = "sparsetconv"
author = "the sparsetconv developers"
copyright = "2026, the sparsetconv developers"
version = release = sparsetconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# No network at build time: no intersphinx, and mathjax is only referenced, not fetched.
exclude_patterns = ["_build", "generated/*.inc"]
templates_path = []
html_theme = "alabaster"
html_static_path = []
html_show_sourcelink = False

autosummary_generate = False  # the stubs are written below
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_member_order = "bysource"
# The numpydoc "Parameters" sections give the types in words; the annotations are for
# type checkers and IDEs (they would repeat the aliases, expanded, in every signature).
autodoc_typehints = "none"
numpydoc_show_class_members = False  # autodoc's :members: lists them
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _api_pages(srcdir):
    """Write one page per public name and the grouped index that api.rst includes."""
    out = os.path.join(srcdir, "generated")
    os.makedirs(out, exist_ok=True)
    groups = {}
    for name in sparsetconv.__all__:
        obj = getattr(sparsetconv, name)
        groups.setdefault(_home(name, obj), []).append(name)
        if inspect.isclass(obj):
            # The layers inherit their methods from a shared base class.
            inherited = "" if issubclass(obj, tuple) else "   :inherited-members:\n"
            body = f".. autoclass:: {name}\n   :members:\n   :undoc-members:\n{inherited}"
        else:
            body = f".. autofunction:: {name}\n"
        _write(os.path.join(out, f"sparsetconv.{name}.rst"),
               f"{name}\n{'=' * len(name)}\n\n.. currentmodule:: sparsetconv\n\n{body}")
    lines = []
    for module, names in groups.items():
        doc = inspect.getdoc(sys.modules[module]) or module
        title = doc.splitlines()[0].rstrip(".")
        lines += [title, "-" * len(title), "", ".. currentmodule:: sparsetconv", "",
                  ".. autosummary::", "   :toctree: generated", "", *(f"   {n}" for n in names), ""]
    _write(os.path.join(out, "api_groups.inc"), "\n".join(lines))


def _home(name, obj):
    """The module a name is documented under: the defining module, unless another
    module of the package re-exports it in its ``__all__`` (``openmp_enabled``)."""
    module = getattr(obj, "__module__", "sparsetconv")
    if name in getattr(sys.modules.get(module), "__all__", ()):
        return module
    for other in sorted(m for m in sys.modules if m.startswith("sparsetconv.")):
        if name in getattr(sys.modules[other], "__all__", ()):
            return other
    return module


def _write(path, text):
    """Write only on change, so an unchanged page is not rebuilt."""
    if os.path.exists(path) and open(path, encoding="utf-8").read() == text:
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


_api_pages(os.path.dirname(os.path.abspath(__file__)))
