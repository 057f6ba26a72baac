"""The weight gradient over the phase copy (GEMM with column source IMPLICIT): the
large side copied phase by phase as for the implicit convolution, the small side
channels-last, and a GEMM reducing over the small side's positions -- no im2col."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import LAYOUTS, assert_matches, conv_configs, relayout
from reference import weight_gradient_reference
from sparsetconv import _compiled, _kernels, _layout
from sparsetconv._plan import make_plan


def _route(monkeypatch, implicit):
    monkeypatch.setattr(_layout, "implicit_weight_gradient", lambda plan: implicit)
    _layout._build_layout.cache_clear()
    yield
    monkeypatch.undo()
    _layout._build_layout.cache_clear()


@pytest.fixture
def implicit(monkeypatch):
    """Every GEMM weight gradient (im2col source) runs over the phase copy."""
    yield from _route(monkeypatch, True)


@pytest.fixture(params=[True, False], ids=["implicit", "im2col"])
def either(monkeypatch, request):
    yield from _route(monkeypatch, request.param)


def _gradient(plan):
    gradient = _compiled.WeightGradient(plan, "gemm")
    return gradient, gradient.layout.column_source


def _reference(cfg, small, large):
    return weight_gradient_reference(small, large, cfg.kernel, cfg.stride,
                                     [list(p) for p in cfg.pairs], cfg.groups, cfg.dilation)


# the fixture holds for every draw (it only routes the GEMM weight gradient)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=st.one_of(conv_configs(transposed=True, max_batch=3),
                     conv_configs(transposed=False, max_batch=3)),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS), threads=st.sampled_from([1, 2]))
def test_implicit_weight_gradient_matches_reference(either, cfg, dtype, layout, threads):
    """Rank 1-3, stride, dilation, every padding form, output_padding, groups, both
    directions and dtypes, memory layouts, 1 and 2 threads: against the plain-loop
    reference, operands untouched."""
    x, w, _ = cfg.arrays(dtype)
    g = np.random.default_rng(cfg.seed + 1).standard_normal(cfg.output_shape).astype(dtype)
    small, large = (x, g) if cfg.transposed else (g, x)
    plan = cfg.plan(x, w)
    gradient, source = _gradient(plan)
    if source not in (_layout.POINTWISE, _layout.WHOLE_INPUT):  # (of the live taps)
        assert (source == _layout.IMPLICIT) == _layout.implicit_weight_gradient(None)
    small_in, large_in = relayout(small, layout), relayout(large, layout)
    with stc.threads(threads):
        got = gradient(small_in, large_in)
    assert got.shape == w.shape and got.dtype == dtype
    assert_matches(got, _reference(cfg, small, large))
    np.testing.assert_array_equal(small_in, small)
    np.testing.assert_array_equal(large_in, large)


def _plan(transposed, x_shape, w_shape, dtype=np.float32, **kw):
    return make_plan(transposed, None, x_shape, np.dtype(dtype), w_shape, np.dtype(dtype),
                     None, None, kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("output_padding", 0), kw.get("groups", 1), kw.get("dilation", 1),
                     None)


@pytest.mark.parametrize("transposed, x_shape, w_shape, kw", [
    # 40 small channels (a tile and a padded one), 27 x 3 rows: several reduction
    # blocks per sample, the last one short; 3-D, stride 2
    (True, (2, 40, 3, 27, 14), (40, 3, 3, 3, 3), dict(stride=2, padding=1,
                                                      output_padding=1)),
    # 1-D rows of 300: three samples per reduction block and chunk, three chunks
    (True, (9, 70, 300), (70, 33, 3), dict(stride=2, padding=1)),
    # groups, 1-D, dilation, long rows: (channel, tap) rows not a multiple of twelve
    (False, (3, 12, 1500), (36, 4, 5), dict(stride=1, padding=4, dilation=2, groups=3)),
    # 300 small channels: positions padded to an odd number of cache lines, pieces
    # split over the (channel, tap) rows
    (True, (2, 300, 9, 20), (300, 8, 3, 3), dict(stride=1, padding=1)),
    # few (channel, tap) rows: pieces split over the small channels too
    (True, (4, 96, 24, 24), (96, 1, 2, 2), dict(stride=2)),
])
def test_implicit_weight_gradient_larger_layers(implicit, transposed, x_shape, w_shape, kw):
    rng = np.random.default_rng(sum(x_shape))
    plan = _plan(transposed, x_shape, w_shape, np.float64, **kw)
    # The same values (exact in float32) for both dtypes, so the slow definitional
    # reference runs once.
    x = rng.standard_normal(x_shape).astype(np.float32).astype(np.float64)
    g = rng.standard_normal(plan.output_shape).astype(np.float32).astype(np.float64)
    geometry = plan.geometry
    small, large = (x, g) if transposed else (g, x)
    want = weight_gradient_reference(
        small, large, w_shape[2:], geometry.stride,
        [list(p) for p in zip(geometry.pad_begin, geometry.pad_end)],
        kw.get("groups", 1), geometry.dilation)
    for dtype in (np.float32, np.float64):
        gradient, source = _gradient(_plan(transposed, x_shape, w_shape, dtype, **kw))
        assert source == _layout.IMPLICIT
        for threads in (1, 2):
            with stc.threads(threads):
                assert_matches(gradient(small.astype(dtype), large.astype(dtype)), want)


@pytest.mark.parametrize("x_shape, w_shape, kw, whole", [
    # three chunks of 4 samples (the last one short): two threads take whole chunks
    ((9, 32, 16, 16), (32, 16, 3, 3), dict(stride=2, padding=1, output_padding=1), True),
    ((5, 16, 24, 40), (16, 12, 3, 5), dict(stride=1, padding=(2, 1), groups=2,
                                          dilation=(1, 2)), True),
    # one chunk: the threads share its pieces
    ((2, 32, 16, 16), (32, 16, 3, 3), dict(stride=2, padding=1, output_padding=1), False),
])
def test_implicit_weight_gradient_threads_take_whole_chunks(implicit, x_shape, w_shape, kw,
                                                             whole):
    """With as many chunks as threads, each thread reduces whole chunks into a product of
    its own and the products are summed; with fewer, the threads share each chunk.
    Against the sparse matrix's weight gradient, at two threads."""
    rng = np.random.default_rng(sum(x_shape))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        plan = _plan(True, x_shape, w_shape, dtype, **kw)
        gradient, source = _gradient(plan)
        assert source == _layout.IMPLICIT
        g = rng.standard_normal(plan.output_shape).astype(dtype)
        want = stc.conv_transpose_backward(g.astype(np.float64), x.astype(np.float64),
                                           w.astype(np.float64), backend="sparse", **kw)[1]
        with stc.threads(2):
            n_threads, whole_chunks, _ = gradient._workspaces()
            assert n_threads == 2 and whole_chunks == whole
            assert gradient.layout.n_chunks >= 2 if whole else gradient.layout.n_chunks == 1
            assert_matches(gradient(x, g), want)


def test_implicit_weight_gradient_blocks_and_chunks(implicit):
    """What the larger layers above exercise: several reduction blocks of one sample,
    several samples per block, pieces split both ways."""
    layout = _compiled.WeightGradient(
        _plan(True, (2, 40, 3, 27, 14), (40, 3, 3, 3, 3), stride=2, padding=1,
              output_padding=1), "gemm").layout
    rows = 3 * 27
    assert layout.column_source == _layout.IMPLICIT
    assert layout.block_rows < rows and rows % layout.block_rows
    layout = _compiled.WeightGradient(_plan(True, (9, 70, 300), (70, 33, 3), stride=2,
                                            padding=1), "gemm").layout
    assert layout.chunk == layout.block_rows == 3
    layout = _compiled.WeightGradient(_plan(True, (2, 300, 9, 20), (300, 8, 3, 3),
                                            padding=1), "gemm").layout
    assert layout.depth_block < 8 * 9 and layout.grid_pitch * 4 // 64 % 2 == 1
    layout = _compiled.WeightGradient(_plan(True, (4, 96, 24, 24), (96, 1, 2, 2),
                                            stride=2), "gemm").layout
    assert layout.grid_channels < 96


@pytest.mark.parametrize("x_shape, w_shape, kw, expected", [
    # dilated 3x3, 32 channels: im2col replicates every element 9 times
    ((8, 32, 32, 32), (32, 32, 3, 3), dict(padding=2, dilation=2), True),
    # a 3-D decoder layer
    ((2, 64, 12, 16, 12), (64, 32, 3, 3, 3), dict(stride=2, padding=1, output_padding=1),
     True),
    # rows of three positions and 512 channels: im2col's columns are the input itself
    ((13, 512, 4, 3), (512, 512, 1, 1), dict(), False),
    # 3 small channels: mostly padding lanes
    ((4, 3, 32, 32), (3, 16, 3, 3), dict(padding=1), False),
    # a stride beyond the large side: a phase copy mostly of zero planes
    ((1, 32, 3, 3), (32, 32, 2, 2), dict(stride=9), False),
])
def test_implicit_weight_gradient_rule(x_shape, w_shape, kw, expected):
    plan = _plan(True, x_shape, w_shape, **kw)
    assert _layout.implicit_weight_gradient(plan) == expected
    _layout._build_layout.cache_clear()
    assert (_gradient(plan)[1] == _layout.IMPLICIT) == expected


def test_implicit_weight_gradient_keeps_nan_where_it_belongs(implicit):
    """Only real positions are visited (no grid tails, no padding lanes read into the
    gradient): a NaN in the large side reaches exactly the weights whose taps meet it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 40, 6, 7))
    w_shape = (40, 3, 3, 3)
    plan = _plan(True, x.shape, w_shape, np.float64, stride=2)
    g = rng.standard_normal(plan.output_shape)
    g[1, 2, 0, 0] = np.nan  # met only by tap (0, 0) of output channel 2
    got = _gradient(plan)[0](x, g)
    want = weight_gradient_reference(x, g, (3, 3), 2)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:, 2, 0, 0]).all() and np.isnan(got).sum() == 40
    assert_matches(np.nan_to_num(got), np.nan_to_num(want))


def test_implicit_weight_gradient_workspace():
    """A chunk's phase copies and channels-last small side, and a weight-sized product."""
    plan = _plan(True, (16, 64, 32, 32), (64, 3, 4, 4), stride=2, padding=1)
    layout = _compiled.WeightGradient(plan, "gemm").layout
    ws = layout.workspace
    assert layout.column_source == _layout.IMPLICIT
    large_sample = 3 * 64 * 64
    assert ws.phased <= layout.chunk * 2 * large_sample + _kernels.PHASE_TAIL
    assert ws.packed == layout.chunk * 32 * 32 * layout.grid_pitch
    assert layout.grid_pitch == 64 and ws.product == 64 * 3 * 16
    assert ws.columns == ws.scratch == 0
    assert math.prod(plan.geometry.small) * layout.chunk <= 2 * _layout.WEIGHT_GRADIENT_BLOCK_POSITIONS
