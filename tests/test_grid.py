"""The direct convolution over the padded grid (DIRECT with column source IMPLICIT):
the input copied phase by phase per (sample, group), every (channel, tap) a run of
that copy, each output channel computed on the whole grid at once."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import LAYOUTS, assert_matches, conv_configs, relayout
from reference import conv_reference, conv_transpose_reference
from sparsetconv import _compiled, _kernels, _layout
from sparsetconv._plan import make_plan


def _route(monkeypatch, grid):
    monkeypatch.setattr(_layout, "grid_convolution", lambda plan: grid)
    _layout._build_layout.cache_clear()
    yield
    monkeypatch.undo()
    _layout._build_layout.cache_clear()


@pytest.fixture(params=[True, False], ids=["grid", "rows"])
def either(monkeypatch, request):
    """Each DIRECT convolution runs over the grid (whatever its size), then by rows."""
    yield from _route(monkeypatch, request.param)


@pytest.fixture
def grid(monkeypatch):
    yield from _route(monkeypatch, True)


def _source(executor):
    return executor.layout.column_source


# the fixture holds for every draw (it only routes the direct convolution)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(transposed=False, max_batch=3),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS), threads=st.sampled_from([1, 2]))
def test_grid_matches_reference(either, cfg, dtype, layout, threads):
    """Rank 1-3, stride, dilation, every padding form, groups, both dtypes, memory
    layouts, 1 and 2 threads: against the plain-loop reference, input untouched."""
    x, w, b = cfg.arrays(dtype)
    executor = _compiled.Executor(cfg.plan(x, w, b), "direct")
    assert (_source(executor) == _layout.IMPLICIT) == _layout.grid_convolution(None)
    want = cfg.reference(x, w, b)
    x_in = relayout(x, layout)
    with stc.threads(threads):
        got = executor(x_in, w, b)
    assert got.dtype == dtype
    assert_matches(got, want)
    np.testing.assert_array_equal(x_in, x)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    # depthwise, several 64-position blocks and a partial one
    ((3, 6, 37, 29), (6, 1, 5, 5), dict(stride=1, padding=3, groups=6)),
    # output channels per group 1-6: passes of four and the single-channel rest
    ((2, 6, 21, 18), (18, 2, 3, 4), dict(stride=2, padding=1, groups=3)),
    ((2, 4, 19, 20), (20, 2, 3, 3), dict(stride=(2, 1), padding=(1, 2), groups=2,
                                         dilation=(1, 2))),
    # stride 2 on rows of 70 and 71: the copy's 16- and 8-wide de-interleaving, from
    # even and odd starts, up to the row's last element
    ((2, 3, 9, 70), (3, 1, 4, 4), dict(stride=2, padding=1, groups=3)),
    ((1, 2, 8, 71), (2, 1, 3, 5), dict(stride=2, padding=(1, 2), groups=2)),
    # 3-D strides 3 and 4: 27 and 64 phase planes
    ((2, 4, 12, 12, 12), (4, 1, 4, 4, 4), dict(stride=3, padding=1, groups=4)),
    ((1, 3, 16, 20, 30), (3, 1, 5, 5, 5), dict(stride=4, padding=3, groups=3)),
    # 1-D, long rows, dilation
    ((4, 8, 1001), (8, 2, 4), dict(stride=1, padding=3, dilation=2, groups=4)),
    # dense: one group, every channel of it in the copy
    ((2, 5, 13, 11), (7, 5, 3, 3), dict(stride=1, padding=1)),
])
def test_grid_larger_layers(either, x_shape, w_shape, kw):
    rng = np.random.default_rng(sum(x_shape))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype,
                         kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
                         kw.get("dilation", 1), None)
        executor = _compiled.Executor(plan, "direct")
        want = conv_reference(x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                              kw.get("dilation", 1), kw.get("groups", 1))
        for threads in (1, 2):
            with stc.threads(threads):
                assert_matches(executor(x, w, b), want)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((1, 8, 64, 64), (10, 8, 5, 5), dict(padding=2)),  # shares of 8 and 2 channels
    ((1, 4, 20, 40, 40), (4, 2, 3, 3, 3), dict(padding=1, groups=2)),  # 2 items
    ((1, 3, 120, 120), (3, 3, 7, 7), dict(dilation=2)),  # one share of 3, one empty
])
def test_grid_threads_share_fewer_items_than_threads(x_shape, w_shape, kw):
    """With fewer (sample, group) items than threads, the threads copy each item
    together and split its output channels (and still match the reference)."""
    rng = np.random.default_rng(sum(x_shape))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        groups = kw.get("groups", 1)
        plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype,
                         kw.get("stride", 1), kw.get("padding", 0), 0, groups,
                         kw.get("dilation", 1), None)
        executor = _compiled.Executor(plan, "direct")
        assert executor.layout.column_source == _layout.IMPLICIT
        # the sparse matrix (the plain-loop reference is too slow at these sizes)
        want = stc.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                        backend="sparse", **kw)
        with stc.threads(2):
            n_threads, whole_items, _ = executor._workspaces()
            assert n_threads == 2 and whole_items == (x_shape[0] * groups >= 2)
            assert_matches(executor(x, w, b), want)


def test_grid_serves_the_stride_one_transposed_convolution(grid):
    """A stride-1 direct transposed convolution runs as the convolution it equals, so
    over the grid too; with its input gradient and weight gradient."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 11, 9))
    w = rng.standard_normal((6, 1, 5, 3))
    b = rng.standard_normal(6)
    got = stc.conv_transpose(x, w, b, padding=(3, 1), groups=6, backend="direct")
    assert_matches(got, conv_transpose_reference(x, w, b, 1, (3, 1), 0, 6, 1))
    g = rng.standard_normal(got.shape)
    gx, gw, _ = stc.conv_transpose_backward(g, x, w, padding=(3, 1), groups=6,
                                            backend="direct")
    ex, ew, _ = stc.conv_transpose_backward(g, x, w, padding=(3, 1), groups=6,
                                            backend="sparse")
    assert_matches(gx, ex)
    assert_matches(gw, ew)


def _plan(x_shape, w_shape, dtype=np.float32, **kw):
    return make_plan(False, None, x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None,
                     None, kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
                     kw.get("dilation", 1), None)


@pytest.mark.parametrize("x_shape, w_shape, kw, expected", [
    ((8, 64, 64, 64), (64, 1, 4, 4), dict(stride=2, padding=1, groups=64), True),
    ((5, 320, 18, 14), (320, 1, 5, 5), dict(padding=3, groups=320), True),
    ((2, 32, 24, 32, 24), (64, 32, 3, 3, 3), dict(stride=2, padding=1), True),
    # a stride beyond the input: the phase copy would be mostly zero planes
    ((1, 4, 10, 10), (4, 4, 3, 3), dict(stride=9, padding=4), False),
    # a single output position: a grid of one
    ((1, 2, 9, 9), (2, 2, 9, 9), dict(dilation=1), True),
    # rows of one output on a grid 9 wide: mostly positions computed and dropped
    ((1, 2, 6, 9), (2, 2, 3, 9), dict(), False),
])
def test_grid_rule(x_shape, w_shape, kw, expected):
    plan = _plan(x_shape, w_shape, **kw)
    positions, copy = _layout.implicit_extents(plan)
    g = plan.geometry
    assert _layout.grid_convolution(plan) == expected
    assert expected == (positions <= 2 * math.prod(g.small) and copy <= 2 * math.prod(g.large))
    _layout._build_layout.cache_clear()
    executor = _compiled.Executor(plan, "direct")
    assert (_source(executor) == _layout.IMPLICIT) == expected


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((8, 64, 32, 32), (64, 1, 4, 4), dict(stride=2, padding=1, groups=64)),
    ((2, 6, 12, 12, 12), (12, 2, 4, 4, 4), dict(stride=3, padding=1, groups=3)),
    ((4, 16, 301), (24, 16, 16), dict(stride=8, padding=4)),
])
def test_grid_workspace_is_one_groups_copy_per_thread(x_shape, w_shape, kw):
    """Per thread: one group's phase copy (at most twice its input by the rule, each
    phase plane skewed by under two cache lines), a tail, and a grid (at most twice
    the output plane) per channel of a pass; nothing else."""
    plan = _plan(x_shape, w_shape, **kw)
    assert _layout.grid_convolution(plan)
    layout = _compiled.Executor(plan, "direct").layout
    ws = layout.workspace
    group = x_shape[1] // kw.get("groups", 1)
    phases = math.prod(axis.stride for axis in layout.axes)
    plane_in, plane_out = math.prod(x_shape[2:]), math.prod(plan.geometry.small)
    # the grids of one pass: whole calls of four channels, no more than the group has,
    # and beyond four channels no more than GRID_PASS_BYTES
    per_call = _kernels.GRID_BLOCK["channels"]
    cout_g = w_shape[0] // kw.get("groups", 1)
    channels = layout.grid_channels
    assert channels % per_call == 0 and channels <= -(-cout_g // per_call) * per_call
    assert channels == per_call or channels * layout.grid_pitch * 4 <= _layout.GRID_PASS_BYTES
    assert layout.grid_pitch <= 2 * plane_out + 32
    assert ws.scratch <= (group * (2 * plane_in + phases * 31) + _kernels.PHASE_TAIL
                          + channels * (2 * plane_out + 32))
    assert ws.phased == ws.packed == ws.columns == ws.product == 0


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    # a 66 x 66 grid: 16 columns per block of the 4 x 9 = 36, and 8 channels' grids per
    # pass of the 12 (a pass of eight, then one of four)
    ((2, 4, 64, 64), (12, 4, 3, 3), dict(stride=1, padding=1)),
    # the same with two groups and a partial call in every pass (6 channels per group)
    ((1, 8, 64, 64), (12, 4, 3, 3), dict(stride=1, padding=1, groups=2)),
    # 1-D: one long grid, 16 columns per block of the 16 x 5 = 80
    ((2, 16, 12000), (6, 16, 5), dict(stride=2, padding=2)),
])
def test_grid_passes_and_column_blocks(grid, x_shape, w_shape, kw):
    """Output channels in several passes and each pass's columns in several blocks
    (the grids accumulate from the second block on; the bias is added once)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    plan = _plan(x_shape, w_shape, **kw)
    executor = _compiled.Executor(plan, "direct")
    layout = executor.layout
    assert layout.column_source == _layout.IMPLICIT
    depth = layout.a_offset.size
    cout_g = w_shape[0] // kw.get("groups", 1)
    assert layout.depth_block < depth
    assert layout.grid_channels < cout_g or cout_g % layout.grid_channels
    # the matrix form as the oracle: the plain-loop reference takes seconds here
    want = stc.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                    backend="sparse", **kw)
    for threads in (1, 2):
        with stc.threads(threads):
            assert_matches(executor(x, w, b), want)
