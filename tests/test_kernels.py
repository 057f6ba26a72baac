"""The compiled kernels: every algorithm against the reference, the benchmark layers
against an oracle, thread counts, concurrent callers, the GIL, the OpenMP build."""

import concurrent.futures
import math
import os
import sys
import threading
import types
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import LAYOUTS, assert_matches, conv_configs, relayout
from reference import conv_reference, conv_transpose_reference, weight_gradient_reference
from sparsetconv import _compiled
from sparsetconv import _layout as _layout_module
from sparsetconv._plan import make_plan

ALGORITHMS = dict(_compiled.ALGORITHMS)

# The layers of benchmarks/bench_suite.py: (input, weight, stride, padding, output_padding, dilation, groups)
SUITE = {
    "dcgan1": ((16, 100, 1, 1), (100, 512, 4, 4), 1, 0, 0, 1, 1),
    "dcgan2": ((16, 512, 4, 4), (512, 256, 4, 4), 2, 1, 0, 1, 1),
    "dcgan3": ((16, 256, 8, 8), (256, 128, 4, 4), 2, 1, 0, 1, 1),
    "dcgan4": ((16, 128, 16, 16), (128, 64, 4, 4), 2, 1, 0, 1, 1),
    "dcgan5": ((16, 64, 32, 32), (64, 3, 4, 4), 2, 1, 0, 1, 1),
    "unet_up1": ((4, 256, 32, 32), (256, 128, 2, 2), 2, 0, 0, 1, 1),
    "unet_up2": ((4, 128, 64, 64), (128, 64, 2, 2), 2, 0, 0, 1, 1),
    "fcn32": ((1, 21, 16, 16), (21, 21, 64, 64), 32, 16, 0, 1, 1),
    "melgan1d": ((8, 512, 256), (512, 256, 16), 8, 4, 0, 1, 1),
    "vnet3d": ((2, 64, 12, 16, 12), (64, 32, 3, 3, 3), 2, 1, 1, 1, 1),
    "depthwise": ((8, 64, 32, 32), (64, 1, 4, 4), 2, 1, 0, 1, 64),
    "dilated": ((8, 32, 32, 32), (32, 32, 3, 3), 1, 2, 0, 2, 1),
    "tiny_seed": ((1, 1, 2, 2), (1, 1, 2, 2), 2, 0, 0, 1, 1),
    "small_seed": ((1, 1, 4, 4), (1, 1, 4, 4), 2, 1, 0, 1, 1),
}


def _plan(transposed, x, w, b, stride, padding, output_padding, groups, dilation):
    return make_plan(transposed, None, x.shape, x.dtype, w.shape, w.dtype,
                     None if b is None else b.shape, None if b is None else b.dtype,
                     stride, padding, output_padding, groups, dilation, None)


def _algorithms(plan):
    """The algorithms whose stated domain includes ``plan`` (the domains themselves are
    pinned by test_algorithms_refuse_outside_their_domain)."""
    direction = _layout_module.TRANSPOSE if plan.transposed else _layout_module.CONVOLVE
    return [name for name, algorithm in ALGORITHMS.items()
            if _layout_module.unsupported(plan, direction, algorithm) is None]


@settings(max_examples=150, deadline=None)
@given(cfg=st.one_of(conv_configs(transposed=True), conv_configs(transposed=False)),
       dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(LAYOUTS))
def test_every_algorithm_matches_reference(cfg, dtype, layout):
    x, w, b = cfg.arrays(dtype)
    want = cfg.reference(x, w, b)
    x_in, w_in = relayout(x, layout), relayout(w, layout)
    before = (x_in.copy(), w_in.copy())
    plan = cfg.plan(x, w, b)
    for name in _algorithms(plan):
        got = _compiled.Executor(plan, ALGORITHMS[name])(x_in, w_in, b)
        assert got.shape == want.shape and got.dtype == dtype, name
        assert_matches(got, want)
    np.testing.assert_array_equal(x_in, before[0])
    np.testing.assert_array_equal(w_in, before[1])


def _suite_arrays(name, batch=1, dtype=np.float64):
    x_shape, w_shape = SUITE[name][:2]
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal((batch,) + x_shape[1:]).astype(dtype)
    w = (rng.standard_normal(w_shape) / math.sqrt(w_shape[0] * math.prod(w_shape[2:])))
    b = rng.standard_normal(w_shape[1] * SUITE[name][6])
    return x, w.astype(dtype), b.astype(dtype)


def _suite_oracle(name, x, w, b):
    """PyTorch when installed, else the sparse matrix (the cases it fits)."""
    stride, padding, output_padding, dilation, groups = SUITE[name][2:]
    try:
        import torch
    except ImportError:
        try:
            return stc.conv_transpose(x, w, b, stride, padding, output_padding, groups,
                                      dilation, backend="sparse")
        except ValueError:  # over max_nnz
            pytest.skip("needs PyTorch: the matrix is over max_nnz")
    fn = getattr(torch.nn.functional, f"conv_transpose{w.ndim - 2}d")
    return fn(*(torch.from_numpy(a) for a in (x, w, b)), stride, padding, output_padding,
              groups, dilation).numpy()


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_layers_every_algorithm(name):
    """Every benchmark layer (batch 1 or 2), every algorithm, against the oracle."""
    batch = 2 if math.prod(SUITE[name][0][1:]) * math.prod(SUITE[name][1][1:]) < 2**24 else 1
    x, w, b = _suite_arrays(name, batch)
    stride, padding, output_padding, dilation, groups = SUITE[name][2:]
    want = _suite_oracle(name, x, w, b)
    got = stc.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation)
    assert_matches(got, want)
    plan = _plan(True, x, w, b, stride, padding, output_padding, groups, dilation)
    for algorithm in _algorithms(plan):
        got = _compiled.Executor(plan, ALGORITHMS[algorithm])(x, w, b)
        assert_matches(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width, kernel, padding, output_padding", [
    (8, 2, 0, 0), (16, 3, 1, 1), (17, 3, 0, 0), (17, 4, 1, 1), (9, 5, 2, 0)])
def test_stride_two_rows_interleave(width, kernel, padding, output_padding, dtype):
    """Stride-2 output rows are un-phased by interleaving their two phases (vector
    blocks of 16 and a scalar tail, odd lengths included): every algorithm against
    the plain-loop reference."""
    rng = np.random.default_rng(width * kernel)
    x = rng.standard_normal((2, 3, 3, width)).astype(dtype)
    w = rng.standard_normal((3, 2, 2, kernel)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    want = conv_transpose_reference(x, w, b, 2, padding, output_padding)
    assert want.shape[-1] in (16, 17, 32, 35)
    plan = _plan(True, x, w, b, 2, padding, output_padding, 1, 1)
    for name in _algorithms(plan):
        assert_matches(_compiled.Executor(plan, ALGORITHMS[name])(x, w, b), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width, kernel, padding", [
    (16, 2, 0), (17, 3, 1), (32, 4, 1), (35, 3, 0), (35, 5, 2)])
def test_stride_two_rows_deinterleave(width, kernel, padding, dtype):
    """The direct convolution and weight gradient lay stride-2 input rows out phase by
    phase by de-interleaving them (vector blocks of 16 and a scalar tail): against
    the plain-loop reference, every algorithm."""
    rng = np.random.default_rng(width * kernel + 1)
    x = rng.standard_normal((2, 3, 5, width)).astype(dtype)
    w = rng.standard_normal((2, 3, 2, kernel)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    want = conv_reference(x, w, b, 2, padding)
    plan = _plan(False, x, w, b, 2, padding, 0, 1, 1)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_w = weight_gradient_reference(g, x, w.shape[2:], 2, padding)
    for name in _algorithms(plan):
        assert_matches(_compiled.Executor(plan, ALGORITHMS[name])(x, w, b), want)
        assert_matches(_compiled.WeightGradient(plan, ALGORITHMS[name])(g, x), want_w)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("transposed", [True, False])
def test_one_and_two_threads_agree(algorithm, transposed):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 20, 24))
    if transposed:
        w, args = rng.standard_normal((8, 6, 5, 30)), (2, 1, 1, 2, 1)
    else:
        x = rng.standard_normal((4, 8, 64, 64))
        w, args = rng.standard_normal((16, 4, 5, 5)), (2, 1, 0, 2, 1)
        if algorithm == "kernel_rows":
            pytest.skip("kernel rows is a transposed-convolution algorithm")
    stride, padding, output_padding, groups, dilation = args
    plan = _plan(transposed, x, w, None, stride, padding, output_padding, groups, dilation)
    executor = _compiled.Executor(plan, ALGORITHMS[algorithm])
    assert executor.max_threads >= 2  # big enough that two threads are really used
    with stc.threads(1):
        one = executor(x, w, None)
    with stc.threads(2):
        two = executor(x, w, None)
    np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12 * np.abs(one).max())


def test_concurrent_calls_match_serial_calls():
    rng = np.random.default_rng(4)
    jobs = []
    for i in range(24):
        shape = [(3, 16, 9, 9), (2, 4, 17, 13), (1, 1, 4, 4)][i % 3]
        x = rng.standard_normal(shape).astype([np.float32, np.float64][i % 2])
        w = rng.standard_normal((shape[1], 5, 4, 4)).astype(x.dtype)
        jobs.append((x, w, dict(stride=2, padding=1)))
    serial = [stc.conv_transpose(x, w, **kw) for x, w, kw in jobs]
    serial_conv = [stc.conv(s, w, stride=2, padding=1) for s, (x, w, kw) in zip(serial, jobs)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: stc.conv_transpose(job[0], job[1], **job[2]), jobs))
        parallel_conv = list(pool.map(lambda a: stc.conv(a[0], a[1][1], stride=2, padding=1),
                                      zip(serial, jobs)))
    for a, b in zip(serial + serial_conv, parallel + parallel_conv):
        np.testing.assert_array_equal(a, b)


def _progress_during(call):
    """How many steps of pure Python the main thread makes while another thread runs
    ``call()`` -- with the interpreter told never to force a GIL switch.

    With a 100 s switch interval, a thread that holds the GIL keeps it until it blocks
    or releases it, so the main thread (waiting for the worker to start ``call``) can
    only run while ``call`` has released the GIL.  A kernel that holds it gives 0
    steps, whatever its duration or the machine's load; one that releases it gives as
    many as the main thread can make while it runs.  No timing is measured.
    """
    inside, done = threading.Event(), threading.Event()

    def work():
        inside.set()
        try:
            call()
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        inside.wait()
        steps = 0
        while not done.is_set():
            steps += 1
            sum(range(50))   # pure Python: needs the GIL
            # hand the GIL back for a moment: a worker waiting for it to return from
            # the kernel takes it now (sleep(0) may give it straight back to this
            # thread, and the 100 s interval would then starve the worker)
            time.sleep(1e-4)
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    return steps


def _long_call(algorithm, transposed):
    """A compiled call of ~0.2 s on one thread (repeats of one kernel), and its
    executor."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 48, 48))
    w = rng.standard_normal((16, 16, 5, 64) if algorithm == "kernel_rows" else (16, 16, 5, 5))
    # stride 2: a stride-1 direct transposed call copies its weight in Python first
    # (it runs as a convolution), and NumPy's copy releases the GIL too
    plan = _plan(transposed, x, w, None, 2, 2, 0, 1, 1)
    executor = _compiled.Executor(plan, ALGORITHMS[algorithm])
    return executor, _repeated(lambda: executor(x, w, None))


LONG_CALL_SECONDS = 0.2


def _repeated(once):
    """``once`` repeated (at least 10 times) for ~LONG_CALL_SECONDS on one thread:
    the probe needs a call long enough to count steps under load, and a fixed repeat
    count stops being enough whenever a kernel gets faster."""
    with stc.threads(1):
        start = time.perf_counter()
        once()
        elapsed = time.perf_counter() - start
    repeats = max(10, math.ceil(LONG_CALL_SECONDS / max(elapsed, 1e-6)))

    def call():
        with stc.threads(1):
            for _ in range(repeats):
                once()
    call.repeats = repeats
    return call


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("transposed", [True, False])
def test_kernels_release_the_gil(algorithm, transposed):
    """While one thread runs a long kernel, Python code in another keeps running."""
    if not transposed and algorithm == "kernel_rows":
        pytest.skip("kernel rows is a transposed-convolution algorithm")
    _, call = _long_call(algorithm, transposed)
    steps = _progress_during(call)
    assert steps >= 10, f"the main thread made {steps} steps during the kernel: GIL held?"


@pytest.mark.parametrize("transposed", [True, False])
def test_weight_gradient_kernels_release_the_gil(transposed):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 16, 48, 48))
    w = rng.standard_normal((16, 16, 5, 5))
    plan = _plan(transposed, x, w, None, 1, 2, 0, 1, 1)
    out = rng.standard_normal(plan.output_shape)
    small, large = (x, out) if transposed else (out, x)
    for algorithm in ("direct", "gemm"):
        gradient = _compiled.WeightGradient(plan, algorithm)

        call = _repeated(lambda: gradient(small, large))
        assert _progress_during(call) >= 10, algorithm


def test_gil_probe_catches_a_kernel_that_holds_the_gil():
    """The probe above can fail: a stand-in kernel that holds the GIL for as long as
    the real one runs (a pure-Python loop) gives the main thread no steps at all."""
    executor, call = _long_call("direct", True)
    start = time.perf_counter()
    call()
    duration = time.perf_counter() - start

    def holds_the_gil(*args):
        end = time.perf_counter() + duration / call.repeats
        while time.perf_counter() < end:
            pass

    executor.kernel = types.SimpleNamespace(forward=holds_the_gil)
    assert _progress_during(call) == 0


def test_thread_settings():
    previous = stc.get_num_threads()
    with stc.threads(1):
        assert stc.get_num_threads() == 1
    assert stc.get_num_threads() == previous
    with pytest.raises(ValueError, match="threads"):
        stc.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an int"):
        stc.set_num_threads(1.5)


@pytest.mark.skipif(os.environ.get("SPARSETCONV_SERIAL_BUILD", "0") not in ("", "0"),
                    reason="a deliberate serial build (SPARSETCONV_SERIAL_BUILD=1)")
def test_openmp_was_built_in():
    """Fails if the build silently fell back to serial kernels."""
    assert stc.openmp_enabled(), (
        "sparsetconv was built without OpenMP; rebuild with an OpenMP-capable compiler "
        "or set SPARSETCONV_SERIAL_BUILD=1 if that was deliberate")


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 300), dtype=st.sampled_from([np.float32, np.float64]),
       specials=st.lists(st.tuples(st.integers(0, 299),
                                   st.sampled_from([np.nan, np.inf, -np.inf, -np.nan])),
                         max_size=3),
       extremes=st.booleans(), step=st.sampled_from([1, 1, 2]))
def test_finite_floats_reads_the_exponent_bits(size, dtype, specials, extremes, step):
    from sparsetconv import _kernels
    from sparsetconv.functional import all_finite
    rng = np.random.default_rng(size)
    array = rng.standard_normal(size).astype(dtype)
    if extremes and size >= 4:  # the largest finite values and subnormals stay finite
        info = np.finfo(dtype)
        array[:4] = [info.max, -info.max, info.tiny / 8, -info.smallest_subnormal]
    for index, value in specials:
        if index < size:
            array[index] = value
    view = array[::step]
    want = bool(np.isfinite(view).all())
    got = _kernels.finite_floats(view)
    if step == 1 or view.size <= 1:
        assert got is want
    else:
        assert got is None  # not contiguous: the caller tests it another way
    assert all_finite(view) is want
    big = np.ones(70000, dtype)  # the path that releases the GIL
    big[-1 if specials else 0] = np.nan if specials else 1.0
    assert _kernels.finite_floats(big) is (not specials)
