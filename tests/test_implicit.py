"""The implicit-GEMM convolution (column source IMPLICIT of the GEMM algorithm): the
columns read straight from a phase-by-phase copy of the input, never built."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import LAYOUTS, assert_matches, conv_configs, relayout
from reference import conv_reference
from sparsetconv import _compiled, _kernels, _layout
from sparsetconv._plan import make_plan

pytestmark = pytest.mark.skipif(not _kernels.own_gemm_available(),
                                reason="the implicit convolution runs on the own GEMM")


def _route(monkeypatch, implicit):
    previous = _kernels.set_gemm_kernel("own")
    monkeypatch.setattr(_layout, "implicit_convolution", lambda plan: implicit)
    _layout._build_layout.cache_clear()
    yield
    monkeypatch.undo()
    _layout._build_layout.cache_clear()
    _kernels.set_gemm_kernel(previous)


@pytest.fixture
def implicit(monkeypatch):
    """Every GEMM convolution (im2col source) runs IMPLICIT, whatever the rule says."""
    yield from _route(monkeypatch, True)


@pytest.fixture(params=[True, False], ids=["implicit", "im2col"])
def either(monkeypatch, request):
    """Each GEMM convolution runs IMPLICIT, then im2col + the own GEMM (which the rule
    would otherwise leave to the layers it does not take)."""
    yield from _route(monkeypatch, request.param)


def _executor(plan):
    executor = _compiled.Executor(plan, "gemm")
    return executor, executor.layout.column_source


# the fixture holds for every draw (it only routes the GEMM to IMPLICIT)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(transposed=False, max_batch=3),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS), threads=st.sampled_from([1, 2]))
def test_implicit_matches_reference(either, cfg, dtype, layout, threads):
    """Rank 1-3, stride, dilation, every padding form, groups, both dtypes, memory
    layouts, 1 and 2 threads: against the plain-loop reference, input untouched."""
    x, w, b = cfg.arrays(dtype)
    plan = cfg.plan(x, w, b)
    executor, source = _executor(plan)
    want = cfg.reference(x, w, b)
    x_in = relayout(x, layout)
    with stc.threads(threads):
        got = executor(x_in, w, b)
    if source == _layout.IMPLICIT:
        assert got.dtype == dtype
    assert_matches(got, want)
    np.testing.assert_array_equal(x_in, x)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    # wide enough for whole tiles, several blocks of grid positions and channels
    ((1, 3, 40, 37), (30, 3, 3, 3), dict(stride=1, padding=2, dilation=2)),
    ((3, 6, 33, 30), (14, 3, 4, 4), dict(stride=2, padding=1, groups=2)),
    ((2, 4, 9, 12, 11), (5, 4, 3, 3, 3), dict(stride=2, padding=1)),
    ((4, 16, 301), (24, 16, 16), dict(stride=8, padding=((4, 11),))),
    ((1, 3, 17, 19), (2, 3, 5, 2), dict(stride=(3, 1), padding=((0, 4), (1, 0)))),
])
def test_implicit_larger_layers(either, x_shape, w_shape, kw):
    rng = np.random.default_rng(sum(x_shape))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype,
                         kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
                         kw.get("dilation", 1), None)
        executor, source = _executor(plan)
        assert (source == _layout.IMPLICIT) == _layout.implicit_convolution(plan)
        want = conv_reference(x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                              kw.get("dilation", 1), kw.get("groups", 1))
        for threads in (1, 2):
            with stc.threads(threads):
                assert_matches(executor(x, w, b), want)


@pytest.mark.parametrize("x_shape, w_shape, kw, restart", [
    # 32-wide output rows (one whole tile each) against a 36-wide padded grid
    ((3, 8, 36, 36), (16, 8, 3, 3), dict(dilation=2), _layout.TILES_PER_ROW),
    # 48-wide rows: a whole tile and a one-vector tile each (against 50 of the grid);
    # one sample (threads share its blocks of rows), groups
    ((1, 16, 42, 50), (32, 8, 3, 3), dict(padding=0, groups=2), _layout.TILES_PER_ROW),
    # 32-wide rows of a stride-2 3-D layer
    ((2, 8, 8, 10, 64), (16, 8, 3, 3, 3), dict(stride=2, padding=1), _layout.TILES_PER_ROW),
    # 12-wide rows, 16 of them per plane: restarting at each plane skips its tail row
    ((2, 8, 24, 32, 24), (16, 8, 3, 3, 3), dict(stride=2, padding=1), _layout.TILES_PER_PLANE),
    # 12 x 12 outputs on a 13-wide grid: along the grid
    ((2, 32, 24, 24), (32, 32, 3, 3), dict(stride=2, padding=1), _layout.TILES_ALONG_GRID),
])
def test_implicit_tiles_along_the_grid_or_restarted(implicit, x_shape, w_shape, kw, restart):
    """The tiles run along the padded grid, or restart at each output plane or row,
    whichever computes fewest positions (_layout.implicit_tiling); each way against
    the sparse matrix, one and two threads."""
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    # the sparse matrix (the plain-loop reference is too slow at these sizes)
    want = stc.conv(x, w, b, backend="sparse", **kw)
    for dtype in (np.float32, np.float64):
        plan = _plan(x_shape, w_shape, dtype, **kw)
        executor = _compiled.Executor(plan, "gemm")
        assert executor.layout.column_source == _layout.IMPLICIT
        assert executor.layout.tile_restart == restart
        # never more than the grid in whole tiles, never fewer than the outputs
        computed = _layout.implicit_tiling(plan)[1]
        mr = _kernels.own_gemm_tile(np.dtype(dtype).itemsize)[0]
        assert computed <= -(-_layout.implicit_extents(plan)[0] // mr) * mr
        assert computed >= np.prod(plan.geometry.small)
        for threads in (1, 2):
            with stc.threads(threads):
                assert executor._workspaces()[0] == threads
                assert_matches(executor(x.astype(dtype), w.astype(dtype), b.astype(dtype)),
                               want)


def _plan(x_shape, w_shape, dtype=np.float32, **kw):
    return make_plan(False, None, x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None,
                     None, kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
                     kw.get("dilation", 1), None)


@pytest.mark.parametrize("x_shape, w_shape, kw, expected", [
    # overlapping taps, a 36 KiB weight: chosen
    ((8, 32, 36, 36), (32, 32, 3, 3), dict(dilation=2), True),
    ((2, 32, 24, 32, 24), (64, 32, 3, 3, 3), dict(stride=2, padding=1), True),
    # kernel = stride: im2col copies each input element once, as the phase copy would
    ((4, 64, 128, 128), (128, 64, 2, 2), dict(stride=2), False),
    # 2 MiB of weight per group: its panels leave L2 between blocks of positions
    ((16, 128, 16, 16), (256, 128, 4, 4), dict(stride=2, padding=1), False),
    # a stride beyond the input: the phase copy would be mostly zero planes
    ((1, 4, 10, 10), (4, 4, 3, 3), dict(stride=9, padding=4), False),
    # 4 x 4 outputs on a 6 x 6 padded grid: too many positions computed and dropped
    ((16, 64, 8, 8), (64, 64, 4, 4), dict(stride=2, padding=1), False),
])
def test_implicit_rule(x_shape, w_shape, kw, expected):
    previous = _kernels.set_gemm_kernel("own")
    try:
        plan = _plan(x_shape, w_shape, **kw)
        assert _layout.implicit_convolution(plan) == expected
        _layout._build_layout.cache_clear()
        source = _compiled.Executor(plan, "gemm").layout.column_source
        assert (source == _layout.IMPLICIT) == expected
        _kernels.set_gemm_kernel("blas")
        assert not _layout.implicit_convolution(plan)
    finally:
        _kernels.set_gemm_kernel(previous)
        _layout._build_layout.cache_clear()


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((8, 32, 36, 36), (32, 32, 3, 3), dict(dilation=2)),
    ((2, 4, 9, 12, 11), (5, 4, 3, 3, 3), dict(stride=2, padding=1)),
    ((4, 16, 301), (24, 16, 16), dict(stride=8, padding=4)),
])
def test_implicit_workspace_is_bounded_by_the_call(implicit, x_shape, w_shape, kw):
    """Each thread's phase copy holds one sample (at most twice its input, by the
    rule, each phase plane skewed by under two cache lines, plus a tile), the panels
    the weight padded to whole NR channels."""
    plan = _plan(x_shape, w_shape, **kw)
    executor = _compiled.Executor(plan, "gemm")
    ws = executor.layout.workspace
    channels, sample = x_shape[1], np.prod(x_shape[1:])
    phases = np.prod([axis.stride for axis in executor.layout.axes])
    nr = _kernels.own_gemm_tile(4)[1]
    assert ws.phased == 0
    assert ws.scratch <= 2 * sample + channels * phases * 31 + _kernels.PHASE_TAIL
    # a second thread adds at most its own copy (none where the work keeps one thread)
    assert executor.workspace_bytes(2) - executor.workspace_bytes(1) in (0, ws.scratch * 4)
    assert ws.packed == -(-w_shape[0] // nr) * nr * np.prod(w_shape[1:])
    assert ws.columns == 0 and ws.product == 0
