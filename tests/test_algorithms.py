"""The compiled algorithms as a family: each one forced (weight gradients included)
against the plain-loop reference, each one's stated domain, and the bounds on their
workspaces and index arithmetic."""

import dataclasses
import math
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import LAYOUTS, assert_matches, conv_configs, relayout
from reference import conv_reference, conv_transpose_reference, weight_gradient_reference
from sparsetconv import _compiled, _cost, _kernels, _layout, _plan
from sparsetconv._plan import make_plan


@pytest.fixture
def im2col(monkeypatch):
    """GEMM weight gradients by im2col, not over the phase copy (tests/test_implicit.py)."""
    monkeypatch.setattr(_layout, "implicit_weight_gradient", lambda plan: False)
    _layout._build_layout.cache_clear()
    yield
    monkeypatch.undo()
    _layout._build_layout.cache_clear()


@settings(max_examples=120, deadline=None)
@given(cfg=st.one_of(conv_configs(transposed=True), conv_configs(transposed=False)),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS))
def test_every_weight_gradient_algorithm_matches_reference(cfg, dtype, layout):
    x, w, _ = cfg.arrays(dtype)
    g = np.random.default_rng(cfg.seed + 1).standard_normal(cfg.output_shape).astype(dtype)
    small, large = (x, g) if cfg.transposed else (g, x)
    want = weight_gradient_reference(small, large, cfg.kernel, cfg.stride,
                                     [list(p) for p in cfg.pairs], cfg.groups, cfg.dilation)
    plan = cfg.plan(x, w)
    ran = []
    for name, algorithm in _layout.ALGORITHMS.items():
        if _layout.unsupported(plan, _layout.WEIGHT_GRADIENT, algorithm) is not None:
            continue
        small_in, large_in = relayout(small, layout), relayout(large, layout)
        got = _compiled.WeightGradient(plan, algorithm)(small_in, large_in)
        assert got.shape == w.shape and got.dtype == dtype, name
        assert_matches(got, want)
        np.testing.assert_array_equal(small_in, small)
        ran.append(name)
    assert ran == ["direct", "gemm"]


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((3, 4, 600), (4, 3, 3), dict(stride=2, padding=1)),
    ((2, 4, 16, 34), (4, 2, 3, 2), dict(stride=(1, 2), padding=(1, 0), groups=2)),
    ((1, 2, 6, 8, 7), (2, 3, 2, 3, 3), dict(dilation=(1, 2, 1), padding=1)),
])
def test_weight_gradient_gemm_per_sample(im2col, x_shape, w_shape, kw, transposed):
    # planes of >= 256 positions: one GEMM per sample, reading the small side in place
    rng = np.random.default_rng(sum(x_shape))
    if not transposed:
        w_shape = (w_shape[1] * kw.get("groups", 1), w_shape[0] // kw.get("groups", 1)) \
            + w_shape[2:]
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    args = (kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
            kw.get("dilation", 1), None)
    plan = make_plan(transposed, None, x_shape, x.dtype, w_shape, w.dtype, None, None, *args)
    assert _layout.weight_gradient_per_sample(plan)
    layout = _compiled.WeightGradient(plan, "gemm").layout
    assert layout.workspace.packed == 0
    g = rng.standard_normal(plan.output_shape)
    small, large = (x, g) if transposed else (g, x)
    want = weight_gradient_reference(small, large, w_shape[2:], args[0], args[1],
                                     args[3], args[4])
    for threads in (1, 2):
        with stc.threads(threads):
            assert_matches(_compiled.WeightGradient(plan, "gemm")(small, large), want)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    # conv outputs of 615 (41 rows of 15) and 550 (55 rows of 10) positions: blocks of
    # 35 and 52 rows, the last one short
    ((8, 2, 82, 31), (3, 2, 3, 3), dict(stride=(2, 2), padding=1, dilation=(1, 2))),
    ((2, 2, 6, 11, 21), (2, 2, 2, 3, 3), dict(stride=(1, 1, 2), padding=1)),
    ((1, 4, 9, 304), (4, 1, 1, 3), dict(stride=1, padding=(0, 2), groups=4, dilation=2)),
])
def test_gemm_blocks_of_rows_match_the_reference(im2col, x_shape, w_shape, kw, monkeypatch):
    """A one-sample GEMM chunk runs im2col + GEMM a block of small-side rows at a time:
    the convolution (which is also the transposed convolution's input gradient) and
    its weight gradient against the plain-loop reference, 1 and 2 threads -- two
    threads even on these small layers, so that with several samples each thread takes
    whole chunks in its own share of the (block-sized) workspaces."""
    monkeypatch.setattr(_compiled, "FLOPS_PER_THREAD", 1)
    # the convolution by im2col, not by the implicit GEMM (tests/test_implicit.py)
    monkeypatch.setattr(_layout, "implicit_convolution", lambda plan: False)
    _layout._build_layout.cache_clear()
    rng = np.random.default_rng(sum(x_shape))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[0])
    args = (kw.get("stride", 1), kw.get("padding", 0), 0, kw.get("groups", 1),
            kw.get("dilation", 1), None)
    plan = make_plan(False, None, x_shape, x.dtype, w_shape, w.dtype, bias.shape,
                     bias.dtype, *args)
    layout = _compiled.Executor(plan, "gemm").layout
    rows = math.prod(plan.output_shape[2:-1])
    assert layout.chunk == 1 and layout.block_rows < rows and rows % layout.block_rows
    assert _compiled.WeightGradient(plan, "gemm").layout.block_rows == layout.block_rows
    want = conv_reference(x, w, bias, args[0], args[1], args[4], args[3])
    g = rng.standard_normal(want.shape)
    want_w = weight_gradient_reference(g, x, w_shape[2:], args[0], args[1], args[3],
                                       args[4])
    for threads in (1, 2):
        with stc.threads(threads):
            executor = _compiled.Executor(plan, "gemm")
            n_threads, whole_chunks = executor._call_split()[:2]
            assert n_threads == threads
            assert whole_chunks == (threads == 2 and x_shape[0] > 1
                                    and _kernels.blas_thread_hook_installed())
            assert_matches(executor(x, w, bias), want)
            assert_matches(_compiled.WeightGradient(plan, "gemm")(g, x), want_w)
    _layout._build_layout.cache_clear()


@pytest.mark.parametrize("batch, groups", [(1, 1), (3, 1), (3, 2), (6, 2), (12, 1)])
def test_whole_input_convolution_either_gemm_side(batch, groups):
    """A kernel covering the whole input: one GEMM over the samples' planes, with the
    samples or the output channels as BLAS's m side (fewer samples than a group's
    channels: samples, through a transposed product) -- both against the reference."""
    rng = np.random.default_rng(batch + groups)
    x = rng.standard_normal((batch, 4, 3, 5))
    w = rng.standard_normal((8, 4 // groups, 3, 5))
    bias = rng.standard_normal(8)
    plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, bias.shape,
                     bias.dtype, 1, 0, 0, groups, 1, None)
    layout = _compiled.Executor(plan, "gemm").layout
    assert layout.column_source == _layout.WHOLE_INPUT
    assert (layout.workspace.product > 0) == (batch < 8 // groups)
    want = conv_reference(x, w, bias, groups=groups)
    for threads in (1, 2):
        with stc.threads(threads):
            assert_matches(_compiled.Executor(plan, "gemm")(x, w, bias), want)
            assert_matches(stc.conv(x, w, bias, groups=groups), want)


@pytest.mark.parametrize("by_channels", [False, True])
@pytest.mark.parametrize("channels", [4, 40])
@pytest.mark.parametrize("batch, plane, groups", [
    (3, (6, 7), 1),      # small planes: the samples' small sides packed side by side
    (3, (16, 17), 2),    # >= 256 positions: one GEMM per sample
    (1, (24, 26), 1),    # >= 512 positions: a block of rows at a time
])
def test_weight_gradient_gemm_either_side(im2col, batch, plane, groups, channels,
                                          by_channels, monkeypatch):
    """The GEMM weight gradient runs with the output channels (into a transposed
    product) or (channels x taps) as the GEMM's m side: both, forced, on each of its
    three paths, with more and fewer output channels than 2 x 9 taps, against the
    reference."""
    monkeypatch.setattr(_layout, "weight_gradient_by_channels", lambda plan: by_channels)
    _layout._build_layout.cache_clear()
    rng = np.random.default_rng(batch + channels)
    x = rng.standard_normal((batch, 2 * groups) + plane)
    w_shape = (channels * groups, 2, 3, 3)
    plan = make_plan(False, None, x.shape, x.dtype, w_shape, x.dtype, None, None,
                     1, 1, 0, groups, 1, None)
    layout = _compiled.WeightGradient(plan, "gemm").layout
    assert (layout.workspace.product > 0) == by_channels
    assert (layout.workspace.packed > 0) == (math.prod(plane) < 256)
    g = rng.standard_normal(plan.output_shape)
    want = weight_gradient_reference(g, x, (3, 3), 1, 1, groups)
    for threads in (1, 2):
        with stc.threads(threads):
            assert_matches(_compiled.WeightGradient(plan, "gemm")(g, x), want)
    monkeypatch.undo()
    _layout._build_layout.cache_clear()


@pytest.mark.parametrize("kernel, x_shape, w_shape, expected", [
    # SciPy's BLAS: the fewer of the output channels and channels x taps
    ("blas", (16, 512, 4, 4), (512, 256, 4, 4), True),
    ("blas", (16, 64, 32, 32), (64, 3, 4, 4), False),
    # own GEMM, float32 tiles 32 x 12: 4096 x 512 pads alike either way -> no transpose
    ("own", (16, 512, 4, 4), (512, 256, 4, 4), False),
    # 48 x 64 pads to 64 x 72, 64 x 48 not at all, over 16 x 32 x 32 positions
    ("own", (16, 64, 32, 32), (64, 3, 4, 4), True),
    # 288 x 32 pads to 288 x 36, 32 x 288 not at all, but over only 4 positions
    ("own", (1, 32, 2, 2), (32, 32, 3, 3), False),
])
def test_weight_gradient_orientation(im2col, kernel, x_shape, w_shape, expected):
    """Which side of the weight-gradient GEMM is m, per GEMM kernel (transposed layers,
    float32: the small side is the input, its channels w_shape[0])."""
    if kernel == "own" and not _kernels.own_gemm_available():
        pytest.skip("the own GEMM needs AVX-512")
    previous = _kernels.set_gemm_kernel(kernel)
    try:
        plan = make_plan(True, None, x_shape, np.float32, w_shape, np.float32, None, None,
                         2, 1, 0, 1, 1, None)
        assert _layout.weight_gradient_by_channels(plan) == expected
        layout = _compiled.WeightGradient(plan, "gemm").layout
        assert (layout.workspace.product > 0) == expected
    finally:
        _kernels.set_gemm_kernel(previous)


# Each case was timed with both algorithms forced (1 thread, batch 8, 32x32, 3x3, own
# GEMM), direct against GEMM: 4 and 8 outputs of 64 inputs 0.36 / 0.70 and 0.53 /
# 0.70 ms, transposed 4 -> 64 0.25 / 1.32, 2 -> 4 0.02 / 0.09, depthwise 0.44 / 2.27;
# the wide layers 256 -> 256 66 / 59 ms, transposed 256 -> 128 31 / 25 (128 -> 512 ran
# 57 / 64, within the margin DIRECT must beat GEMM by).
@pytest.mark.parametrize("transposed, small, large, groups, expected", [
    (False, 4, 64, 1, "direct"),
    (False, 8, 64, 1, "direct"),
    (True, 4, 64, 1, "direct"),
    (True, 2, 4, 1, "direct"),
    (True, 64, 64, 64, "direct"),    # depthwise
    (False, 256, 256, 1, "gemm"),
    (True, 256, 128, 1, "gemm"),
    (False, 128, 512, 1, "gemm"),
])
def test_auto_picks_the_measured_faster_algorithm(transposed, small, large, groups, expected):
    x_channels = small if transposed else large
    w_shape = (small, large // groups, 3, 3)
    plan = make_plan(transposed, None, (8, x_channels, 32, 32), np.dtype(np.float32),
                     w_shape, np.dtype(np.float32), None, None, 1, 1, 0, groups, 1, None)
    assert _compiled.choose_algorithm(plan) == _layout.ALGORITHMS[expected]


@pytest.mark.parametrize("transposed, x_shape, w_shape, padding", [
    (False, (1, 1, 4, 4), (1, 1, 2, 2), 0),   # the tiny seed's adjoint
    (False, (1, 1, 8, 8), (1, 1, 4, 4), 1),   # the small seed's
    (True, (1, 1, 2, 2), (1, 1, 2, 2), 0),
])
def test_auto_runs_seed_sized_layers_direct(transposed, x_shape, w_shape, padding):
    # one GEMM call costs its fixed set-up (_cost.GEMM_CALL, 0.8-1.4 us measured) where
    # the direct kernels take 1.5 us in all: the estimates must see it
    plan = make_plan(transposed, None, x_shape, np.dtype(np.float32), w_shape,
                     np.dtype(np.float32), None, None, 2, padding, 0, 1, 1, None)
    assert _cost.gemm_counts(plan)["call"] == 1
    assert _compiled.choose_algorithm(plan) == _layout.DIRECT


def test_auto_counts_the_implicit_convolutions_tiles():
    # 3 -> 64 channels, 4x4 / 2 on 64x64 (the DCGAN output layer's adjoint): 48 rows per
    # tile, so each tile's scatter of its outputs counts (measured: implicit 0.90-1.14
    # ms, the direct grid 0.66-1.03); 432 rows per tile (a 3-D decoder layer) do not flip
    plan = make_plan(False, None, (16, 3, 64, 64), np.dtype(np.float32), (64, 3, 4, 4),
                     np.dtype(np.float32), None, None, 2, 1, 0, 1, 1, None)
    if not _layout.implicit_convolution(plan):
        pytest.skip("the implicit convolution runs on the own GEMM")
    # 32 x 32 outputs: a whole tile per output row, fewer than along the 33-wide grid
    assert _layout.implicit_tiling(plan) == (_layout.TILES_PER_ROW, 32 * 32, 32)
    assert _cost.gemm_counts(plan)["tile"] == 16 * 32 * 6
    assert _compiled.choose_algorithm(plan) == _layout.DIRECT
    decoder = make_plan(False, None, (2, 32, 24, 32, 24), np.dtype(np.float32),
                        (64, 32, 3, 3, 3), np.dtype(np.float32), None, None, 2, 1, 0, 1, 1,
                        None)
    assert _compiled.choose_algorithm(decoder) == _layout.GEMM


def test_auto_sends_wide_dense_layers_to_gemm():
    # 256-512 channels each way, any rank, kernel, stride and direction, a few samples:
    # BLAS runs these 5-20x faster than the row kernels (dcgan2 transposed: 12.5 ms
    # against 269 ms forced direct), so the estimates must never pick DIRECT there.
    rng = np.random.default_rng(11)
    sides = {1: (64, 2048), 2: (8, 64), 3: (4, 16)}
    checked = 0
    for _ in range(150):
        rank = int(rng.integers(1, 4))
        channels = int(rng.choice([256, 384, 512]))
        kernel = tuple(int(k) for k in rng.integers(1, 6, rank))
        transposed = bool(rng.integers(2))
        x_shape = (int(rng.integers(2, 9)), channels) + tuple(
            int(n) for n in rng.integers(*sides[rank], rank))
        plan = make_plan(transposed, None, x_shape, np.dtype(np.float32),
                         (channels, channels) + kernel, np.dtype(np.float32), None, None,
                         int(rng.integers(1, 4)), 0, 0, 1, 1, None)
        direction = _layout.TRANSPOSE if transposed else _layout.CONVOLVE
        if _layout.unsupported(plan, direction, _layout.GEMM) is not None:
            continue
        assert _compiled.choose_algorithm(plan) == _layout.GEMM, plan
        checked += 1
    assert checked > 100


def test_cost_counts_grow_with_the_work():
    # twice the batch: every count doubles (the chunks too), so both estimates do
    def plans(batch):
        return [make_plan(t, None, (batch, 16, 20, 20), np.dtype(np.float32),
                          (16, 16, 3, 3), np.dtype(np.float32), None, None, 2, 1, 0, 1, 1,
                          None) for t in (True, False)]
    for one, two in zip(plans(600), plans(1200)):
        assert _cost.direct_seconds(two) == pytest.approx(2 * _cost.direct_seconds(one))
        assert _cost.gemm_seconds(two) == pytest.approx(2 * _cost.gemm_seconds(one))


@pytest.mark.parametrize("length", range(0, 70))
def test_vector_steps_count_the_row_blocks(length):
    # 16-wide blocks, then 4-wide blocks, then single elements, covering the row once
    steps, covered = 0, 0
    for width in (16, 4, 1):
        while length - covered >= width:
            covered += width
            steps += 1
    assert covered == length
    assert _cost._vector_steps(length) == steps


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (3, 2), (1, 3)])
@pytest.mark.parametrize("pad", [1, 12, 40])
def test_direct_convolution_with_padding_wider_than_the_row(pad, stride, dilation):
    # Rows padded by more than their own length are not copied zero-padded, so each x
    # tap meets real input over its own range (and a short row has taps that meet
    # none): the gather must add every tap's run, not only their common part.
    rng = np.random.default_rng(pad + 10 * stride + 100 * dilation)
    x = rng.standard_normal((2, 3, 3, 9))
    w = rng.standard_normal((4, 3, 2, 3))
    b = rng.standard_normal(4)
    kw = dict(stride=(1, stride), padding=(1, pad), dilation=(1, dilation))
    want = conv_reference(x, w, b, **kw)
    for threads in (1, 2):
        with stc.threads(threads):
            got = stc.conv(x, w, b, backend="direct", **kw)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_out, groups", [(1, 1), (6, 1), (13, 1), (40, 1), (18, 2)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_direct_convolution_splits_channels_among_threads(c_out, groups, threads):
    # One sample, one row: the only parallel work is the output channels, which the
    # gather splits into parts of whole 4-channel blocks (the last part partial or
    # empty); every channel must be computed exactly once, with its own weight.
    rng = np.random.default_rng(c_out + 100 * threads)
    x = rng.standard_normal((1, 4 * groups, 37))
    w = rng.standard_normal((c_out, 4, 3))
    b = rng.standard_normal(c_out)
    want = conv_reference(x, w, b, padding=1, groups=groups)
    plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype, 1, 1,
                     0, groups, 1, None)
    with stc.threads(threads):
        got = _compiled.Executor(plan, "direct")(x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# Kernels with taps that meet only padding: a 7x3 kernel on a 2x4 plane (rows 2..4 of
# 7 are live), a 3x3 kernel on a 1x1 plane (the centre only), a dilated 1-D kernel on
# a row of 3 (taps 1..3 of 5), a strided 3-D layer with a dead z tap at each end.
DEAD_TAP_CASES = [
    ((3, 5, 2, 4), (5, 4, 7, 3), dict(padding=(3, 1))),
    ((2, 4, 1, 1), (4, 6, 3, 3), dict(padding=1)),
    ((2, 3, 3), (3, 2, 5), dict(padding=4, dilation=2)),
    ((2, 4, 2, 3, 4), (4, 4, 5, 2, 3), dict(padding=(2, 0, 1), stride=(1, 2, 1))),
]


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kw", DEAD_TAP_CASES)
def test_taps_that_meet_only_padding_are_cut(x_shape, w_shape, kw, transposed):
    rng = np.random.default_rng(len(x_shape) + 7 * w_shape[-1])
    if not transposed:  # the convolution's weight: (C_out, C_in, *kernel)
        w_shape = (w_shape[1], w_shape[0]) + w_shape[2:]
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] if transposed else w_shape[0])
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    padding = kw["padding"]
    plan = make_plan(transposed, None, x_shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype,
                     stride, padding, 0, 1, dilation, None)
    if transposed:
        want = conv_transpose_reference(x, w, b, stride, padding, dilation=dilation)
    else:
        want = conv_reference(x, w, b, stride, padding, dilation)
    g = rng.standard_normal(want.shape)
    small, large = (x, g) if transposed else (g, x)
    want_w = weight_gradient_reference(small, large, w_shape[2:], stride, padding,
                                       dilation=dilation)
    for name, algorithm in _layout.ALGORITHMS.items():
        direction = _layout.TRANSPOSE if transposed else _layout.CONVOLVE
        if _layout.unsupported(plan, direction, algorithm) is None:
            executor = _compiled.Executor(plan, algorithm)
            # the kernels run the live taps only, and give the full map's numbers
            assert math.prod(executor.kernel_plan.geometry.kernel) < math.prod(w_shape[2:])
            assert_matches(executor(x, w, b), want)
        if _layout.unsupported(plan, _layout.WEIGHT_GRADIENT, algorithm) is None:
            assert_matches(_compiled.WeightGradient(plan, algorithm)(small, large), want_w)


@pytest.mark.parametrize("transposed", [False, True])
def test_non_finite_weight_in_a_dead_tap_adds_nothing(transposed):
    # On a 1x1 plane only the centre of a 3x3 kernel meets the input: the cut plan has
    # no padding left, so the kernels never see the NaN corner -- as the matrix never
    # stores it.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 1, 1))
    w = rng.standard_normal((4, 4, 3, 3))
    w[:, :, 0, 2] = np.nan
    w[1, 2, 2, 2] = np.inf
    function = stc.conv_transpose if transposed else stc.conv
    reference = conv_transpose_reference if transposed else conv_reference
    want = reference(x, w, None, 1, 1)
    assert np.isfinite(want).all()
    for backend in ("direct", "sparse"):
        np.testing.assert_allclose(function(x, w, padding=1, backend=backend), want,
                                   rtol=1e-12, atol=1e-12)
    grads = (stc.conv_transpose_backward if transposed else stc.conv_backward)(
        np.ones_like(want), x, w, padding=1)
    assert all(np.isfinite(grad).all() for grad in grads)


@pytest.mark.parametrize("algorithm", ["direct", "kernel_rows", "gemm"])
def test_forced_algorithms_on_uneven_geometry(algorithm):
    """Kernel longer than the input, stride above the kernel, output_padding, crops
    on both sides: every supported algorithm against the reference, both dtypes."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4, 3))
    w = rng.standard_normal((6, 5, 7, 9))
    kw = dict(stride=(3, 5), padding=((2, 1), (4, 0)), output_padding=(1, 2))
    want = conv_transpose_reference(x, w, None, (3, 5), [[2, 1], [4, 0]], (1, 2))
    plan = make_plan(True, None, x.shape, x.dtype, w.shape, w.dtype, None, None,
                     kw["stride"], kw["padding"], kw["output_padding"], 1, 1, None)
    for dtype in (np.float32, np.float64):
        got = _compiled.Executor(dataclasses.replace(plan, dtype=np.dtype(dtype)),
                                 algorithm)(x, w, None)
        assert_matches(got, want.astype(dtype))


def _transposed_plan(x_shape, w_shape, **kw):
    return make_plan(True, None, x_shape, np.dtype(np.float64), w_shape, np.dtype(np.float64),
                     None, None, kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("output_padding", 0), kw.get("groups", 1), kw.get("dilation", 1),
                     None)


def test_column_cap_applies_only_where_columns_are_built(monkeypatch):
    """The GEMM's column cap refuses the transposed convolution, which builds col2im
    columns (here even one row's exceed it), but not the weight gradient of the same
    layer that runs over the phase copy (FCN-32s in float64 was refused and ran 7x
    slower by DIRECT)."""
    plan = _transposed_plan((2, 16, 6, 6), (16, 4, 4, 4), stride=2, padding=1)
    assert _layout.implicit_weight_gradient(plan)
    monkeypatch.setattr(_layout, "GEMM_MAX_COLUMN_BYTES", 1024)
    _layout._build_layout.cache_clear()
    try:
        with pytest.raises(ValueError, match="of columns per row"):
            _compiled.Executor(plan, "gemm")
        gradient = _compiled.WeightGradient(plan, "gemm")
        assert gradient.layout.column_source == _layout.IMPLICIT
        rng = np.random.default_rng(5)
        x = rng.standard_normal((2, 16, 6, 6))
        g = rng.standard_normal(plan.output_shape)
        assert_matches(gradient(x, g),
                       weight_gradient_reference(x, g, (4, 4), 2, [[1, 1], [1, 1]]))
    finally:
        monkeypatch.undo()
        _layout._build_layout.cache_clear()


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 3, 7, 5), (3, 4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 5, 9), (4, 3, 3, 6), dict(stride=(1, 3), padding=(0, 2), dilation=(2, 1))),
    ((2, 4, 3, 3, 5), (4, 2, 2, 3, 2), dict(stride=(1, 2, 2), padding=(0, 1, 1), groups=2,
                                             dilation=(2, 1, 1))),
])
def test_transposed_gemm_in_blocks_of_rows(monkeypatch, x_shape, w_shape, kw):
    """A transposed convolution whose sample's columns exceed the cap runs GEMM + col2im
    a block of input rows at a time (a short last block here), adding each into the
    sample's output planes: against the plain-loop reference, both dtypes, 1 and 2
    threads (the threads share each GEMM and own channels in col2im).  (A 1-D sample
    is one row: its columns either fit or are refused.)"""
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kw.get("groups", 1))
    want = conv_transpose_reference(x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                                    kw.get("output_padding", 0), kw.get("groups", 1),
                                    kw.get("dilation", 1))
    for dtype in (np.float32, np.float64):
        plan = make_plan(True, None, x_shape, np.dtype(dtype), w_shape, np.dtype(dtype),
                         b.shape, np.dtype(dtype), kw.get("stride", 1), kw.get("padding", 0),
                         kw.get("output_padding", 0), kw.get("groups", 1),
                         kw.get("dilation", 1), None)
        rows = int(np.prod(plan.geometry.lifted(3).small[:2]))
        # room for two rows' columns, not the sample's
        cap = 2 * _layout.row_column_bytes(plan) + 1
        monkeypatch.setattr(_layout, "GEMM_MAX_COLUMN_BYTES", cap)
        _layout._build_layout.cache_clear()
        try:
            executor = _compiled.Executor(plan, "gemm")
            assert executor.layout.block_rows == 2 < rows and rows % 2 == 1
            ws = executor.layout.workspace
            assert ws.columns * np.dtype(dtype).itemsize <= cap
            assert ws.phased == np.prod(plan.output_shape[1:]) and ws.scratch == 0
            executor.max_threads = 2  # too little work to take a second thread itself
            for threads in (1, 2):
                with stc.threads(threads):
                    assert_matches(executor(x.astype(dtype), w.astype(dtype), b.astype(dtype)),
                                   want)
        finally:
            monkeypatch.undo()
            _layout._build_layout.cache_clear()


def test_algorithms_refuse_outside_their_domain():
    dilated = _transposed_plan((1, 2, 5, 5), (2, 2, 3, 3), dilation=(1, 2))
    with pytest.raises(ValueError, match="kernel-rows algorithm needs dilation 1"):
        _compiled.Executor(dilated, "kernel_rows")
    conv = make_plan(False, None, (1, 2, 5, 5), np.dtype(np.float64), (2, 2, 3, 3),
                     np.dtype(np.float64), None, None, 1, 0, 0, 1, 1, None)
    with pytest.raises(ValueError, match="transposed convolutions only"):
        _compiled.Executor(conv, "kernel_rows")
    with pytest.raises(ValueError, match="transposed convolutions only"):
        _compiled.WeightGradient(conv, "kernel_rows")
    # FCN-32s' kernel on a 1 x 2048 input, float64: 672 MiB of GEMM columns for its
    # one row (32 of the kernel's 64 rows reach the output; FCN-32s itself, 168 MiB
    # for 16 rows, runs 12 rows at a time)
    wide = _transposed_plan((1, 21, 1, 2048), (21, 21, 64, 64), stride=32, padding=16)
    with pytest.raises(ValueError, match="672 MiB of columns per row"):
        _compiled.Executor(wide, "gemm")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        _compiled.Executor(wide, "winograd")
    # ... and auto never picks what the domain refuses
    assert _compiled.Executor(wide).algorithm != _layout.GEMM
    assert _compiled.Executor(dilated).algorithm != _layout.KERNEL_ROWS


@settings(max_examples=80, deadline=None)
@given(cfg=st.one_of(conv_configs(transposed=True), conv_configs(transposed=False)))
def test_workspaces_are_bounded_by_the_call(cfg):
    """No algorithm's workspace exceeds the call's own input, output and weight sizes
    (per thread, for scratch planes; twice the large side plus 16 per row for its
    zero-padded phased copy) plus the GEMM column cap; the implicit convolution's
    bounds are its own."""
    x, w, b = cfg.arrays()
    plan = cfg.plan(x, w, b)
    arrays = x.size + math.prod(cfg.output_shape) + w.size
    cap = _layout.GEMM_MAX_COLUMN_BYTES // 8
    for direction in (_layout.TRANSPOSE if cfg.transposed else _layout.CONVOLVE,
                      _layout.WEIGHT_GRADIENT):
        for algorithm in _layout.ALGORITHMS.values():
            if _layout.unsupported(plan, direction, algorithm) is not None:
                continue
            layout = _layout.build_layout(plan, direction, algorithm)
            ws = layout.workspace
            large_side = x if not cfg.transposed else np.empty(cfg.output_shape)
            phases = math.prod(axis.stride for axis in layout.axes)
            if layout.column_source == _layout.IMPLICIT and algorithm == _layout.DIRECT:
                # per thread: one group's phase copy (at most twice its input, planes
                # skewed by under two cache lines), a tail, one grid per channel of a
                # pass (at most twice the output plane, in whole vector pairs)
                group = (large_side.shape[1] // cfg.groups)
                small_plane = math.prod(plan.geometry.small)
                channels = _kernels.GRID_BLOCK["channels"]
                assert ws.scratch <= (group * (2 * math.prod(plan.geometry.large) + phases * 31)
                                      + _kernels.PHASE_TAIL + channels * (2 * small_plane + 32))
                assert ws.phased == ws.packed == ws.columns == ws.product == 0
                continue
            if layout.column_source == _layout.IMPLICIT and direction == _layout.CONVOLVE:
                # per thread: one sample's phase copy (at most twice its input, each
                # phase plane skewed by under two cache lines, plus a tile); the weight
                # as panels of whole NR output channels
                nr = _kernels.own_gemm_tile(8)[1]
                assert ws.scratch <= (2 * large_side[0].size + large_side.shape[1] * phases * 31
                                      + _kernels.PHASE_TAIL)
                assert ws.packed <= nr * w.size
                assert ws.phased == ws.columns == ws.product == 0
                continue
            assert ws.scratch <= math.prod(plan.geometry.large)
            if layout.column_source == _layout.IMPLICIT and direction == _layout.WEIGHT_GRADIENT:
                # per chunk of samples: their phase copies (as the convolution's), their
                # small side channels-last (a group's channels padded to whole tiles, at
                # most 4x, plus a cache line), a product of the weight's size as padded
                small_side = np.empty(cfg.output_shape) if not cfg.transposed else x
                chunk, sample = layout.chunk, large_side[0].size
                assert 1 <= chunk <= cfg.batch
                assert ws.phased <= chunk * (2 * sample + large_side.shape[1] * phases * 31) \
                    + _kernels.PHASE_TAIL
                assert ws.packed <= chunk * math.prod(plan.geometry.small) * (
                    4 * small_side.shape[1] + 8)
                assert ws.product <= 4 * w.size and ws.scratch == ws.columns == 0
                continue
            # the phase-major copy of the input, zero-padded on x by at most its row + 16
            rows = large_side.size // large_side.shape[-1]
            assert ws.phased <= 2 * large_side.size + 16 * rows
            assert ws.packed + ws.product <= arrays
            assert ws.columns <= cap


def _peak_bytes(function):
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak, elapsed


def test_huge_crop_needs_no_huge_scratch():
    """A 74 KB output from a stride-100, padding-440 call: the scratch is the output's
    size, not the 7.7 GB uncropped plane."""
    x, w = np.ones((1, 1, 10, 10, 10)), np.ones((1, 1, 1, 1, 1))
    out, peak, elapsed = _peak_bytes(
        lambda: stc.conv_transpose(x, w, stride=100, padding=440, backend="direct"))
    assert out.shape == (1, 1, 21, 21, 21)
    assert elapsed < 1.0 and peak < 100 * 2**20, (elapsed, peak)
    want = conv_transpose_reference(x, w, None, 100, 440)[0, 0]
    np.testing.assert_array_equal(out[0, 0], want)


def test_huge_padding_convolution_needs_no_huge_workspace():
    x, w = np.arange(4.0).reshape(1, 1, 1, 4), np.ones((1, 1, 1, 1))
    for algorithm in ("direct", "gemm"):
        plan = make_plan(False, None, x.shape, x.dtype, w.shape, w.dtype, None, None,
                         (1, 10**8), (0, 10**8), 0, 1, 1, None)
        out, peak, elapsed = _peak_bytes(lambda: _compiled.Executor(plan, algorithm)(x, w, None))
        assert out.shape == (1, 1, 1, 3)
        assert elapsed < 1.0 and peak < 100 * 2**20, (algorithm, elapsed, peak)
        np.testing.assert_array_equal(out, [[[[0.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("backend", ["direct", "sparse"])
def test_huge_strides_and_paddings(backend):
    """Strides, dilations and paddings near the 2**62 limit of positions: the tables
    are computed in Python integers, the kernels only see positions that exist."""
    big = 2**60
    x = np.array([[[2.0, 3.0]]])
    w = np.array([[[5.0, 7.0]]])
    kw = dict(stride=big, padding=big, dilation=big)
    got = stc.conv_transpose(x, w, backend=backend, **kw)   # one output: x0*w1 + x1*w0
    np.testing.assert_array_equal(got, [[[2.0 * 7.0 + 3.0 * 5.0]]])
    back = stc.conv(got, w, backend=backend, **kw)
    np.testing.assert_array_equal(back, [[[got[0, 0, 0] * 7.0, got[0, 0, 0] * 5.0]]])
    # a two-element output whose inputs all fall in the padding: bias only
    got = stc.conv_transpose(x, w[..., :1], np.array([1.5]), stride=big, padding=big // 2,
                             output_padding=1, backend=backend)
    np.testing.assert_array_equal(got, [[[1.5, 1.5]]])
    # at 2**62 the positions no longer fit: refused, naming the argument
    with pytest.raises(ValueError, match="stride"):
        stc.conv_transpose(x, w[..., :1], stride=2**62, padding=2**61, output_padding=1,
                           backend=backend)


@pytest.mark.parametrize("shape", [
    # (input spatial, kernel, stride, dilation): POINTWISE, then WHOLE_INPUT
    ((5, 7), (1, 1), 2, 3),          # kernel 1: stride/dilation matter only if > 1 ...
    ((16, 17), (1, 1), 1, 1),        # ... so this one is pointwise
    ((5, 7), (1, 1), 1, 1),          # (but planes this small pack samples: im2col)
    ((8, 4, 9), (1, 1, 1), 1, 1),
    ((4, 4), (4, 4), 1, 1),          # conv of a 4x4 input with a 4x4 kernel: whole input
    ((6,), (6,), 3, 1),
    ((3, 2, 5), (3, 2, 5), 2, 1),
])
@pytest.mark.parametrize("groups", [1, 2])
def test_gemm_without_columns_matches_reference(shape, groups):
    """Layers whose GEMM reads the arrays in place (kernel 1, or a kernel covering the
    whole input): all three operations, both dtypes, 1 and 2 threads."""
    spatial, kernel, stride, dilation = shape
    rng = np.random.default_rng(len(spatial) + groups)
    c_large, c_small, batch = 4 * groups, 6 * groups, 5
    large = rng.standard_normal((batch, c_large) + spatial)
    w = rng.standard_normal((c_small, c_large // groups) + kernel)
    b = rng.standard_normal(c_small)
    from reference import conv_reference
    small_want = conv_reference(large, w, b, stride, 0, dilation, groups)
    small = rng.standard_normal(small_want.shape)
    w_t = rng.standard_normal((c_small, c_large // groups) + kernel)
    b_t = rng.standard_normal(c_large)
    large_want = conv_transpose_reference(small, w_t, b_t, stride, 0, 0, groups, dilation)
    grad_want = weight_gradient_reference(small, large_want - b_t.reshape((1, -1) + (1,) * len(spatial)),
                                          kernel, stride, 0, groups, dilation)
    conv_plan = make_plan(False, None, large.shape, large.dtype, w.shape, w.dtype, b.shape,
                          b.dtype, stride, 0, 0, groups, dilation, None)
    t_plan = make_plan(True, None, small.shape, small.dtype, w_t.shape, w_t.dtype, b_t.shape,
                       b_t.dtype, stride, 0, 0, groups, dilation, None)
    for dtype in (np.float32, np.float64):
        cp = dataclasses.replace(conv_plan, dtype=np.dtype(dtype))
        tp = dataclasses.replace(t_plan, dtype=np.dtype(dtype))
        for n in (1, 2):
            with stc.threads(n):
                assert_matches(_compiled.Executor(cp, "gemm")(large, w, b), small_want.astype(dtype))
                assert_matches(_compiled.Executor(tp, "gemm")(small, w_t, b_t),
                               large_want.astype(dtype))
                got = _compiled.WeightGradient(tp, "gemm")(
                    small, large_want - b_t.reshape((1, -1) + (1,) * len(spatial)))
                assert_matches(got, grad_want.astype(dtype))


def test_column_source_is_decided_from_the_geometry():
    def source(x_shape, w_shape, **kw):
        plan = _transposed_plan(x_shape, w_shape, **kw)
        return _layout.build_layout(plan, _layout.TRANSPOSE, _layout.GEMM).column_source

    assert source((2, 8, 16, 16), (8, 4, 1, 1)) == _layout.POINTWISE
    assert source((2, 8, 5, 5), (8, 4, 1, 1)) == _layout.IM2COL         # planes too small
    assert source((2, 8, 1, 1), (8, 4, 4, 4)) == _layout.WHOLE_INPUT      # DCGAN's first layer
    assert source((2, 8, 5, 5), (8, 4, 1, 1), stride=2) == _layout.IM2COL  # zeros between
    assert source((2, 8, 1, 1), (8, 4, 4, 4), padding=1) == _layout.IM2COL  # a crop
    assert source((2, 8, 1, 1), (8, 4, 4, 4), output_padding=1, stride=2) == _layout.IM2COL
    assert source((2, 8, 1, 1), (8, 4, 2, 2), dilation=2) == _layout.IM2COL
