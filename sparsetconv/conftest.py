"""pytest configuration for the package's own docstring examples (``--doctest-modules``).

``_dask`` needs the optional dask extra at import: without dask it is not collected
(the dask tests in ``tests/test_dask.py`` skip themselves the same way).
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") is not None else ["_dask.py"]
