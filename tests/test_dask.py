"""Dask arrays in, lazy dask arrays out: every public array function on chunked input.

The oracle is the NumPy call itself (tested against PyTorch, the sparse matrix and the
plain-loop reference elsewhere): for random configurations and random chunkings -- single
elements, chunks smaller than the kernel, the stride and the halo, uneven chunks, chunked
channels -- the dask result must equal it to float64 round-off.
"""

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import sparsetconv as stc  # noqa: E402
from conftest import assert_matches, conv_configs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@contextlib.contextmanager
def halos(cut):
    """Graphs built inside cut every partly needed chunk into a halo slab (``cut``), or
    move such chunks whole (what small chunks get by default)."""
    import sparsetconv._dask as module

    saved = module.SLAB_MIN_BYTES
    module.SLAB_MIN_BYTES = 0 if cut else 1 << 60
    try:
        yield
    finally:
        module.SLAB_MIN_BYTES = saved


def _run(transposed, x, w, b, cfg, **extra):
    op = stc.conv_transpose if transposed else stc.conv
    return op(x, w, b, **cfg.kwargs(), **extra)


def _backward(cfg, g, x, w, **extra):
    op = stc.conv_transpose_backward if cfg.transposed else stc.conv_backward
    return op(g, x, w, **cfg.kwargs(), **extra)


# ---------------------------------------------------------------------------
# Chunkings

@st.composite
def chunking(draw, size):
    """A partition of ``size``: whole, all single elements, or random cut points."""
    kind = draw(st.sampled_from(["whole", "ones", "random"]))
    if kind == "whole" or size == 1:
        return (size,)
    if kind == "ones":
        return (1,) * size
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), min_size=1)))
    bounds = [0] + cuts + [size]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def proportional(chunks, size_out):
    """The documented default: input chunk boundaries scaled by out/in, rounded down."""
    edges = np.cumsum((0,) + tuple(chunks)) * size_out // sum(chunks)
    edges[-1] = size_out
    return tuple(int(s) for s in np.diff(edges) if s > 0)


@st.composite
def dask_cases(draw, transposed):
    cfg = draw(conv_configs(transposed=transposed, max_batch=3))
    chunks = ((draw(chunking(cfg.batch)), draw(chunking(cfg.in_channels)))
              + tuple(draw(chunking(n)) for n in cfg.in_size))
    unbatched = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))
    out_chunks = None
    if draw(st.booleans()):  # an explicit chunks= for the output's spatial axes
        spatial = {a + 2: draw(chunking(n)) for a, n in enumerate(cfg.out_size)}
        out_chunks = spatial if draw(st.booleans()) else (
            (draw(chunking(cfg.batch)), -1) + tuple(spatial.values()))
    return cfg, chunks, unbatched, dtype, out_chunks


def _drop_batch(chunks, unbatched):
    return chunks[1:] if unbatched else chunks


def _expected_chunks(cfg, chunks, out_chunks):
    if out_chunks is None:
        return ((chunks[0], (cfg.out_channels,))
                + tuple(proportional(c, n) for c, n in zip(chunks[2:], cfg.out_size)))
    if isinstance(out_chunks, dict):
        return (chunks[0], (cfg.out_channels,)) + tuple(out_chunks.values())
    return (out_chunks[0], (cfg.out_channels,)) + tuple(out_chunks[2:])


# ---------------------------------------------------------------------------
# Forward: both directions equal the NumPy call, with the documented chunks


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@SETTINGS
@given(data=st.data())
def test_forward_equals_numpy(transposed, data):
    cfg, chunks, unbatched, dtype, out_chunks = data.draw(dask_cases(transposed))
    x, w, b = cfg.arrays(dtype)
    if unbatched:
        x = x[0]
    xd = da.from_array(x, chunks=_drop_batch(chunks, unbatched))
    user = out_chunks
    if unbatched and out_chunks is not None:
        user = ({a - 1: c for a, c in out_chunks.items()} if isinstance(out_chunks, dict)
                else out_chunks[1:])
    with halos(data.draw(st.booleans())):
        got = _run(transposed, xd, w, b, cfg, chunks=user)
    expected = _run(transposed, x, w, b, cfg)
    assert isinstance(got, da.Array)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert got.chunks == _drop_batch(_expected_chunks(cfg, chunks, out_chunks), unbatched)
    value = got.compute()
    assert type(value) is np.ndarray and value.dtype == expected.dtype
    assert_matches(value, expected)


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@SETTINGS
@given(data=st.data())
def test_gradients_equal_numpy(transposed, data):
    cfg, chunks, unbatched, dtype, _ = data.draw(dask_cases(transposed))
    x, w, _ = cfg.arrays(dtype)
    g = np.random.default_rng(cfg.seed ^ 1).standard_normal(cfg.output_shape).astype(dtype)
    g_chunks = ((data.draw(chunking(cfg.batch)), data.draw(chunking(cfg.out_channels)))
                + tuple(data.draw(chunking(n)) for n in cfg.out_size))
    if unbatched:
        x, g = x[0], g[0]
    xd = da.from_array(x, chunks=_drop_batch(chunks, unbatched))
    gd = da.from_array(g, chunks=_drop_batch(g_chunks, unbatched))
    with halos(data.draw(st.booleans())):
        got = _backward(cfg, gd, xd, w)
    expected = _backward(cfg, g, x, w)
    for name, lazy, value in zip(("input", "weight", "bias"), got, expected):
        assert isinstance(lazy, da.Array), name
        assert lazy.shape == value.shape and lazy.dtype == value.dtype, name
        computed = lazy.compute()
        assert computed.dtype == value.dtype, name
        assert_matches(computed, value)
    # The input gradient is chunked like the input (channels whole).
    assert got[0].chunks == _drop_batch((chunks[0], (cfg.in_channels,)) + chunks[2:],
                                        unbatched)


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
def test_single_element_chunks_3d(transposed):
    # Every chunk smaller than the kernel (3), the stride (3) and the halo (span 5).
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 4, 3, 3))
    kw = dict(stride=(3, 2, 1), padding="same", dilation=(2, 1, 2), groups=2)
    if transposed:
        w, kw["output_padding"] = rng.standard_normal((4, 3, 3, 2, 3)), (1, 0, 1)
        op, back = stc.conv_transpose, stc.conv_transpose_backward
    else:
        w = rng.standard_normal((6, 2, 3, 2, 3))
        op, back = stc.conv, stc.conv_backward
    b = rng.standard_normal(6)
    xd = da.from_array(x, chunks=(1, 2, 1, 1, 1))
    expected = op(x, w, b, **kw)
    g = rng.standard_normal(expected.shape)
    with halos(True):
        got = op(xd, w, b, **kw, chunks={2: 1, 3: 1, 4: 1})
        grads = back(da.from_array(g, chunks=(2, 6, 1, 1, 1)), xd, w, **kw)
    assert got.chunks[2:] == tuple((1,) * n for n in expected.shape[2:])
    assert_matches(got.compute(), expected)
    for lazy, value in zip(grads, back(g, x, w, **kw)):
        assert_matches(lazy.compute(), value)


def test_output_size_and_dask_weight_and_bias():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(2)
    expected = stc.conv_transpose2d(x, w, b, 2, 1, output_size=(12, 10))
    got = stc.conv_transpose2d(da.from_array(x, chunks=(1, 3, 2, 3)),
                               da.from_array(w, chunks=1), da.from_array(b, chunks=1), 2, 1,
                               output_size=(12, 10))
    assert got.shape == expected.shape == (2, 2, 12, 10)
    assert_matches(got.compute(), expected)
    # A NumPy input with a dask weight is lazy too.
    lazy = stc.conv2d(x, da.from_array(w.transpose(1, 0, 2, 3).copy()), padding=1)
    assert isinstance(lazy, da.Array)
    assert_matches(lazy.compute(), stc.conv2d(x, w.transpose(1, 0, 2, 3), padding=1))


def test_mixed_dtypes_follow_numpy():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((1, 2, 7)) * 10).astype(np.int16)
    w = rng.standard_normal((2, 2, 3)).astype(np.float32)
    for op in (stc.conv_transpose, stc.conv):
        expected = op(x, w, None, 2)
        got = op(da.from_array(x, chunks=(1, 1, 2)), w, None, 2)
        assert got.dtype == expected.dtype == np.float64
        assert_matches(got.compute(), expected)
    g = rng.standard_normal((1, 2, 15)).astype(np.float32)
    expected = stc.conv_transpose_backward(g, x.astype(np.float16), w, 2)
    got = stc.conv_transpose_backward(da.from_array(g, chunks=4),
                                      da.from_array(x.astype(np.float16), chunks=2), w, 2)
    for lazy, value in zip(got, expected):
        assert lazy.dtype == value.dtype == np.float32
        assert_matches(lazy.compute(), value)


def test_zero_batch():
    x = da.zeros((0, 2, 5), chunks=(1, 2, 2))
    w = np.ones((2, 3, 3))
    out = stc.conv_transpose(x, w, stride=2)
    assert out.shape == (0, 3, 11) and out.compute().shape == (0, 3, 11)
    gi, gw, gb = stc.conv_transpose_backward(da.zeros((0, 3, 11)), x, w, stride=2)
    assert gi.shape == (0, 2, 5)
    np.testing.assert_array_equal(gw.compute(), np.zeros((2, 3, 3)))
    np.testing.assert_array_equal(gb.compute(), np.zeros(3))


# ---------------------------------------------------------------------------
# Laziness, locality of the graph


class Counter:
    """Counts the input chunks dask materialises."""

    def __init__(self):
        self.calls = 0

    def __call__(self, block):
        self.calls += 1
        return block


def test_nothing_computed_before_compute():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal((2, 3, 3, 3))
    counter = Counter()
    xd = da.from_array(x, chunks=(1, 2, 3, 4)).map_blocks(counter, meta=x[:0, :0, :0, :0])
    y = stc.conv_transpose2d(xd, w, None, 2, 1)
    gx, gw, gb = stc.conv_transpose_backward(y, xd, w, 2, 1)
    z = stc.conv2d(y, w, None, 2, 1)
    assert counter.calls == 0
    assert all(isinstance(a, da.Array) for a in (y, gx, gw, gb, z))
    assert y.chunks == ((1, 1), (3,), (5, 6, 6), (7, 8))   # 9 -> 17, 8 -> 15 positions
    computed = dask.compute(y, gx, gw, gb, z)
    assert counter.calls > 0
    expected_y = stc.conv_transpose2d(x, w, None, 2, 1)
    expected = (expected_y,) + stc.conv_transpose_backward(expected_y, x, w, 2, 1) + (
        stc.conv2d(expected_y, w, None, 2, 1),)
    for value, reference in zip(computed, expected):
        assert_matches(value, reference)


def test_each_block_reads_a_bounded_window():
    # 1-D, 2000 positions in chunks of 10: no task may depend on more than the chunks
    # its window overlaps, whatever the array's length.
    x = da.ones((1, 1, 2000), chunks=(1, 1, 10))
    w = np.ones((1, 1, 5))
    with halos(True):
        outs = (stc.conv_transpose(x, w, stride=3, dilation=2),
                stc.conv(x, w, stride=3, dilation=2, padding=4))
    for out in outs:
        graph = dict(out.__dask_graph__())
        layer = {k: v for k, v in graph.items() if k[0] == out.name}
        assert len(layer) == out.numblocks[2]
        inputs = [len(v[1]) for v in layer.values()]
        assert max(inputs) <= 3, inputs
        # Where a window needs part of a chunk, only that part (the halo, at most the
        # dilated kernel's span of 9) is cut out and moved: never the whole neighbour.
        cut = [v[0].keywords["index"][2] for k, v in graph.items()
               if k[0].startswith("sparsetconv-") and "-halo-" in k[0]]
        assert cut and max(h.stop - h.start for h in cut) <= 9


def test_weight_gradient_is_a_tree_sum_of_block_partials():
    x = da.ones((1, 1, 400), chunks=(1, 1, 4))
    g = da.ones((1, 1, 400), chunks=(1, 1, 4))
    gw = stc.conv_backward(g, x, np.ones((1, 1, 1)), needs=("weight",))[1]
    layers = gw.__dask_graph__().layers
    assert any(name.startswith("sparsetconv-grad_weight") for name in layers)
    # dask's tree reduction: more than one level of partial sums.
    assert sum(1 for name in layers if "sum" in name) >= 2
    assert float(gw.compute()[0, 0, 0]) == 400.0


# ---------------------------------------------------------------------------
# Errors: the NumPy call's, raised before any graph is built


BAD_CALLS = [
    (stc.conv_transpose, (np.ones((1, 3, 5)), np.ones((2, 2, 3))), {}),
    (stc.conv_transpose, (np.ones((1, 2, 5)), np.ones((2, 2, 3))), dict(output_padding=2)),
    (stc.conv_transpose, (np.ones((1, 2, 5)), np.ones((2, 2, 3))), dict(output_size=(40,))),
    (stc.conv_transpose, (np.ones((1, 2, 5)), np.ones((2, 2, 3))), dict(backend="gpu")),
    (stc.conv, (np.ones((1, 2, 5), complex), np.ones((2, 2, 3))), {}),
    (stc.conv, (np.ones((1, 2, 2)), np.ones((2, 2, 3))), dict(padding="valid")),
    (stc.conv, (np.ones((1, 4, 5)), np.ones((2, 2, 3))), dict(groups=3)),
    (stc.conv, (np.ones((1, 2, 5)), np.ones((2, 2, 3)), np.ones(3)), {}),
    (stc.conv_backward, (np.ones((1, 2, 4)), np.ones((1, 2, 5)), np.ones((2, 2, 3))), {}),
    (stc.conv_backward, (np.ones((1, 2, 3)), np.ones((1, 2, 5)), np.ones((2, 2, 3))),
     dict(needs=("hessian",))),
    (stc.deconvolve, (np.ones((1, 2, 3)), np.ones((2, 2, 3))), dict(method="gmres")),
    (stc.deconvolve, (np.ones((1, 2, 3)), np.ones((2, 2, 3))), dict(input_size=(9,))),
]


@pytest.mark.parametrize("call", BAD_CALLS, ids=lambda c: f"{c[0].__name__}{c[2]}")
def test_errors_are_the_numpy_errors(call):
    function, arrays, kwargs = call
    with pytest.raises((ValueError, TypeError)) as numpy_error:
        function(*arrays, **kwargs)
    lazy = [da.from_array(a, chunks=2) if a.ndim == 3 and i != 1 else a
            for i, a in enumerate(arrays)]
    if function is stc.conv_backward:
        lazy = [da.from_array(a, chunks=2) for a in arrays[:2]] + [arrays[2]]
    with pytest.raises(numpy_error.type) as dask_error:
        function(*lazy, **kwargs)
    assert str(dask_error.value) == str(numpy_error.value)


def test_chunks_errors():
    x, w = np.ones((1, 2, 6)), np.ones((2, 3, 3))
    with pytest.raises(TypeError, match="chunks= applies to dask array input only"):
        stc.conv_transpose(x, w, chunks=4)
    xd = da.from_array(x, chunks=2)
    with pytest.raises(ValueError, match="channel axis stays whole"):
        stc.conv_transpose(xd, w, chunks=(1, 1, 4))
    with pytest.raises(ValueError, match="does not fit the output shape"):
        stc.conv_transpose(xd, w, chunks=(1, 3, (4, 3)))
    with pytest.raises(ValueError, match="not an axis"):
        stc.conv_transpose(xd, w, chunks={5: 2})
    unknown = xd[xd[:, 0, 0] > 0]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        stc.conv_transpose(unknown, w)
    # An int or "auto" applies to the batch and spatial axes: channels stay whole.
    out = stc.conv_transpose(xd, w, chunks=3)
    assert out.chunks == ((1,), (3,), (3, 3, 2))
    assert stc.conv_transpose(xd, w, chunks="auto").chunks[1] == (3,)


# ---------------------------------------------------------------------------
# deconvolve with dask vectors


DECONVOLVE = [
    # y shape, weight shape, keyword arguments, y chunks
    ((2, 3, 12), (3, 2, 3), dict(padding=1), (1, 2, 5)),
    ((3, 8, 7), (3, 2, 3, 3), dict(padding=1), (3, (3, 5), 2)),
    ((1, 2, 5, 4), (2, 2, 2, 2), dict(stride=2, padding="same", damp=0.3), (1, 1, 2, 3)),
]


@pytest.mark.parametrize("method", ["lsqr", "cg"])
@pytest.mark.parametrize("case", DECONVOLVE, ids=lambda c: str(c[0]))
def test_deconvolve_equals_numpy(case, method):
    y_shape, w_shape, kw, chunks = case
    rng = np.random.default_rng(len(str(case)))
    y, w = rng.standard_normal(y_shape), rng.standard_normal(w_shape)
    expected, info = stc.deconvolve(y, w, **kw, method=method, return_info=True)
    got, got_info = stc.deconvolve(da.from_array(y, chunks=chunks), w, **kw, method=method,
                                   return_info=True)
    assert isinstance(got, da.Array) and got.shape == expected.shape
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.compute(), expected, rtol=1e-8, atol=1e-8)
    assert got_info["method"] == method and got_info["converged"] == info["converged"]
    assert abs(got_info["iterations"] - info["iterations"]) <= 1
    np.testing.assert_allclose(got_info["residual_norm"], info["residual_norm"],
                               rtol=1e-3, atol=1e-9)


def test_deconvolve_fixed_iterations_match_numpy_closely():
    # The same iterates as scipy's LSQR: after 10 steps (not converged) the answers agree
    # to round-off, which a different solver or a bug in a step would not.
    rng = np.random.default_rng(9)
    y, w = rng.standard_normal((2, 2, 9, 8, 7)), rng.standard_normal((2, 1, 3, 3, 3))
    expected, info = stc.deconvolve(y, w, padding=1, maxiter=10, return_info=True)
    got, got_info = stc.deconvolve(da.from_array(y, chunks=(1, 2, 4, 3, 7)), w, padding=1,
                                   maxiter=10, return_info=True)
    assert info["iterations"] == got_info["iterations"] == 10
    np.testing.assert_allclose(got.compute(), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# A real cluster: two worker processes


def test_local_cluster_two_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, 6, 5, 4))
    w = rng.standard_normal((2, 3, 3, 3, 2))
    expected = stc.conv_transpose3d(x, w, None, 2, 1, 1)
    y = rng.standard_normal((1, 2, 6, 6, 5))
    wd = rng.standard_normal((2, 2, 3, 3, 3))
    expected_x = stc.deconvolve(y, wd, padding=1, maxiter=8)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = stc.conv_transpose3d(da.from_array(x, chunks=(1, 2, 3, 3, 2)), w, None, 2,
                                   1, 1)
        assert_matches(client.compute(got).result(), expected)
        got_x = stc.deconvolve(da.from_array(y, chunks=(1, 2, 3, 3, 5)), wd, padding=1,
                               maxiter=8)
        np.testing.assert_allclose(got_x.compute(), expected_x, rtol=1e-10, atol=1e-12)
        # Both worker processes took part.
        assert len(client.scheduler_info()["workers"]) == 2


# ---------------------------------------------------------------------------
# Without dask


def _python(code, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_core_never_imports_dask():
    result = _python("""
        import sys
        import numpy as np
        import sparsetconv as st
        x, w = np.ones((1, 1, 5)), np.ones((1, 1, 3))
        st.conv(x, w); st.conv_transpose([[[1.0, 2.0]]], w)
        st.conv_backward(np.ones((1, 1, 3)), x, w); st.deconvolve(np.ones((1, 1, 3)), w)
        st.ConvTranspose1d(1, 1, 3)(x)
        print("dask" in sys.modules, "dask.array" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_without_dask_installed():
    # dask made unimportable: the library works and array-likes behave as before.
    result = _python("""
        import sys
        sys.modules["dask"] = sys.modules["dask.array"] = None
        import numpy as np
        import sparsetconv as st

        class ArrayLike:
            def __array__(self, dtype=None, copy=None):
                return np.arange(4.0).reshape(1, 1, 4)

        w = np.ones((1, 1, 2))
        print(st.conv_transpose(ArrayLike(), w).tolist(), st.conv(ArrayLike(), w).tolist())
        print(st.conv_transpose([[[0.0, 1.0, 2.0, 3.0]]], w).tolist())
        try:
            st.conv(np.ones((1, 1, 4)), w, chunks=2)
        except TypeError as error:
            print("TypeError", "dask array input only" in str(error))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[[[0.0, 1.0, 3.0, 5.0, 3.0]]] [[[1.0, 3.0, 5.0]]]"
    assert lines[1] == "[[[0.0, 1.0, 3.0, 5.0, 3.0]]]"
    assert lines[2] == "TypeError True"


def test_readme_beyond_one_machine_examples_run():
    """The README's dask examples (marked +SKIP there, so the README's own doctest runs
    without the optional extra) run here, where dask is installed."""
    import doctest
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("no README.md beside the tests")
    text = readme.read_text()
    section = text.split("## Beyond one machine")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    # one doctest for all blocks: the second uses the first one's names
    code = "\n".join(blocks).replace("  # doctest: +SKIP", "")
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(doctest.DocTestParser().get_doctest(code, {"np": np, "st": stc}, "README",
                                                   None, 0))
    assert runner.failures == 0 and runner.tries >= 10
