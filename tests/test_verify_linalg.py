"""The dot test, gradcheck, the linear operator and deconvolve.

Expected values come from the plain-loop reference (``reference.py``), the sparse
matrices (``conv_matrix``/``conv_transpose_matrix``, dense on small
cases), ``numpy.linalg.lstsq`` and closed-form NumPy, never from the code under test.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import assert_matches, available_backends, conv_configs, explicit_padding
from reference import conv_reference, conv_transpose_reference

FLOATS = (np.float32, np.float64)
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}
CONV_KINDS = ("int", "ints", "pairs", "valid")


def _conv_args(cfg):
    return dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation,
                groups=cfg.groups)


# ---------------------------------------------------------------------------
# adjoint_check

@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_adjoint_check_passes(rank, data, dtype):
    cfg = data.draw(conv_configs(rank, transposed=False, padding_kinds=CONV_KINDS,
                                 max_batch=1))
    _, w, _ = cfg.arrays(dtype)
    input_shape = (cfg.in_channels,) + cfg.in_size
    for backend in available_backends():
        result = stc.adjoint_check(input_shape, w, **_conv_args(cfg), dtype=dtype,
                                   backend=backend, rng=cfg.seed)
        assert isinstance(result, stc.AdjointCheck)
        assert result.ok is True, (backend, cfg, result)
        assert 0 <= result.rel_gap <= TOLERANCE[dtype], (backend, cfg, result)
        assert result.lhs == pytest.approx(result.rhs, rel=1e-3, abs=1e-3)


def _reference_pair(input_shape, w, cfg):
    """forward/adjoint from the plain-loop reference (unbatched arrays)."""
    pairs = [list(p) for p in cfg.pairs]
    out_size = cfg.out_size
    # The transposed convolution that maps out_size back to input_shape[1:].
    output_padding = [
        n - ((o - 1) * s - pb - pe + d * (k - 1) + 1)
        for n, o, s, (pb, pe), d, k in zip(
            input_shape[1:], out_size, np.broadcast_to(cfg.stride, (cfg.rank,)), cfg.pairs,
            np.broadcast_to(cfg.dilation, (cfg.rank,)), cfg.kernel)
    ]

    def forward(x):
        return conv_reference(x[None], w, None, cfg.stride, pairs, cfg.dilation,
                              cfg.groups)[0]

    def adjoint(y):
        return conv_transpose_reference(y[None], w, None, cfg.stride, pairs, output_padding,
                                        cfg.groups, cfg.dilation)[0]
    return forward, adjoint


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_adjoint_check_values_match_reference(rank, data):
    # Same rng seed -> same x and y: lhs and rhs must equal those of the reference pair.
    cfg = data.draw(conv_configs(rank, transposed=False, padding_kinds=CONV_KINDS,
                                 max_batch=1))
    _, w, _ = cfg.arrays()
    input_shape = (cfg.in_channels,) + cfg.in_size
    forward, adjoint = _reference_pair(input_shape, w, cfg)
    expected = stc.adjoint_check(input_shape, w, **_conv_args(cfg), rng=cfg.seed,
                                 forward=forward, adjoint=adjoint)
    assert expected.ok
    for backend in available_backends():
        got = stc.adjoint_check(input_shape, w, **_conv_args(cfg), rng=cfg.seed,
                                backend=backend)
        scale = max(1.0, abs(expected.lhs))
        assert abs(got.lhs - expected.lhs) <= 1e-12 * scale * 10, (backend, cfg)
        assert abs(got.rhs - expected.rhs) <= 1e-12 * scale * 10, (backend, cfg)


def test_adjoint_check_accepts_a_correct_hand_written_pair():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 2))
    input_shape, kw = (3, 7, 6), dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2))
    A = stc.conv_matrix(input_shape, w, **kw).tocsr()
    out_shape = stc.conv(np.zeros(input_shape), w, **kw).shape
    result = stc.adjoint_check(
        input_shape, w, **kw, rng=2,
        forward=lambda x: (A @ x.ravel()).reshape(out_shape),
        adjoint=lambda y: (A.T @ y.ravel()).reshape(input_shape))
    assert result.ok is True
    assert result.rel_gap <= 1e-12


def _broken_cases(eps=1e-6):
    """(name, input_shape, weight, conv kwargs, {"forward"/"adjoint": broken callable});
    ``eps`` is the size of the kernel perturbations."""
    rng = np.random.default_rng(7)
    w2 = rng.standard_normal((4, 3, 3, 3))
    w1 = rng.standard_normal((4, 3, 3))
    noise = rng.standard_normal(w1.shape)
    cases = []
    # 2-D, stride 2, padding 1: (3, 9, 8) -> (4, 5, 4).
    kw2 = dict(stride=2, padding=1)
    cases.append(("flipped kernel", (3, 9, 8), w2, kw2, dict(
        adjoint=lambda y: stc.conv_transpose(y, w2[..., ::-1, ::-1], stride=2, padding=1,
                                             output_size=(9, 8)))))
    cases.append(("channels swapped", (3, 9, 8), w2, kw2, dict(
        adjoint=lambda y: stc.conv_transpose(y, w2[::-1], stride=2, padding=1,
                                             output_size=(9, 8)))))
    # 1-D, stride 2, padding (1, 1): (3, 9) -> (4, 5); padding (0, 2) also gives 9.
    kw1 = dict(stride=2, padding=1)
    cases.append(("shifted padding", (3, 9), w1, kw1, dict(
        adjoint=lambda y: stc.conv_transpose(y, w1, stride=2, padding=((0, 2),),
                                             output_size=(9,)))))
    cases.append(("perturbed kernel", (3, 9), w1, kw1, dict(
        adjoint=lambda y: stc.conv_transpose(y, w1 + eps * noise, stride=2, padding=1,
                                             output_size=(9,)))))
    cases.append(("scaled adjoint", (3, 9), w1, kw1, dict(
        adjoint=lambda y: 1.001 * stc.conv_transpose(y, w1, stride=2, padding=1,
                                                     output_size=(9,)))))
    # forward= variants against the library's own transposed convolution.
    cases.append(("forward with shifted padding", (3, 9), w1, kw1, dict(
        forward=lambda x: stc.conv(x, w1, stride=2, padding=((0, 2),)))))
    cases.append(("forward with perturbed kernel", (3, 9), w1, kw1, dict(
        forward=lambda x: stc.conv(x, w1 + eps * noise, stride=2, padding=1))))
    cases.append(("forward with flipped kernel", (3, 9, 8), w2, kw2, dict(
        forward=lambda x: stc.conv(x, w2[..., ::-1, ::-1], stride=2, padding=1))))
    # Stride 1, dilation 2: padding (2, 2) against (1, 3), same size.
    kw3 = dict(padding=2, dilation=2)
    cases.append(("dilated, shifted", (3, 8), w1, kw3, dict(
        adjoint=lambda y: stc.conv_transpose(y, w1, padding=((1, 3),), dilation=2))))
    return cases


BROKEN_NAMES = [c[0] for c in _broken_cases()]


@pytest.mark.parametrize("index", range(len(BROKEN_NAMES)), ids=BROKEN_NAMES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_adjoint_check_detects_a_broken_pair(index, dtype):
    # Perturbations well above each dtype's tolerance (1e-12 / 1e-5), far below O(1).
    eps = 1e-6 if dtype == np.float64 else 1e-2
    name, input_shape, w, kw, broken = _broken_cases(eps)[index]
    for backend in available_backends():
        correct = stc.adjoint_check(input_shape, w, **kw, dtype=dtype, backend=backend,
                                    rng=3)
        assert correct.ok is True, (backend, correct)
        result = stc.adjoint_check(input_shape, w, **kw, dtype=dtype, backend=backend,
                                   rng=3, **broken)
        assert result.ok is False, (name, backend, result)
        assert result.rel_gap > TOLERANCE[dtype]


def test_adjoint_check_rejects_an_adjoint_of_the_wrong_shape():
    w = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="shape"):
        stc.adjoint_check((3, 9), w, stride=2, padding=1,
                          adjoint=lambda y: np.zeros((3, 10)))


# conv padding "same" is valid at any stride (output ceil(n / stride)).
# Its adjoint exists for every input size, so the dot test must run for it.
SAME_CASES = [
    # input_shape, weight shape, stride, dilation
    ((3, 8), (2, 3, 3), 1, 2),
    ((3, 8), (2, 3, 3), 2, 1),
    ((3, 7), (2, 3, 3), 2, 1),
    ((3, 9), (2, 3, 4), 2, 1),
    ((2, 7, 5), (2, 2, 3, 2), (2, 3), 1),
]


@pytest.mark.parametrize("case", SAME_CASES, ids=str)
def test_adjoint_check_same_padding(case):
    input_shape, w_shape, stride, dilation = case
    w = np.random.default_rng(0).standard_normal(w_shape)
    for backend in available_backends():
        result = stc.adjoint_check(input_shape, w, stride=stride, padding="same",
                                   dilation=dilation, backend=backend, rng=1)
        assert result.ok is True, (backend, result)


# ---------------------------------------------------------------------------
# gradcheck

def _elementwise():
    """phi(a, b) = a * b + a**2: gradients known in closed form."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))

    def fn(a, b):
        return a * b + a ** 2

    def grad_fn(g, a, b):
        return g * (b + 2 * a), g * a
    return fn, (a, b), grad_fn


def test_gradcheck_true_on_correct_gradients():
    fn, inputs, grad_fn = _elementwise()
    assert stc.gradcheck(fn, inputs, grad_fn, rng=0) is True

    rng = np.random.default_rng(6)
    M = rng.standard_normal((7, 5))
    assert stc.gradcheck(lambda x: M @ x, (rng.standard_normal(5),),
                         lambda g, x: (M.T @ g,), rng=1) is True

    # A transposed convolution, its gradients from the matrix form.
    x, w = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 2, 3))
    kw = dict(stride=2, padding=1)

    def grads(g, x, w):
        gx = (stc.conv_transpose_matrix(x.shape[1:], w, **kw).T @ g[0].ravel())
        gw = np.zeros(w.shape)
        for e in np.ndindex(*w.shape):
            basis = np.zeros(w.shape)
            basis[e] = 1
            gw[e] = g[0].ravel() @ (stc.conv_transpose_matrix(x.shape[1:], basis, **kw)
                                    @ x[0].ravel())
        return gx.reshape(x.shape), gw
    assert stc.gradcheck(lambda x, w: stc.conv_transpose(x, w, **kw), (x, w), grads,
                         rng=2) is True


def test_gradcheck_rejects_twice_the_gradient():
    fn, inputs, grad_fn = _elementwise()
    with pytest.raises(AssertionError, match=r"input 0\b.*element \("):
        stc.gradcheck(fn, inputs, lambda g, a, b: (2 * grad_fn(g, a, b)[0], None), rng=0)
    with pytest.raises(AssertionError, match=r"input 1\b.*element \("):
        stc.gradcheck(fn, inputs, lambda g, a, b: (grad_fn(g, a, b)[0],
                                                   2 * grad_fn(g, a, b)[1]), rng=0)


@pytest.mark.parametrize("position, element", [(0, (1, 2)), (1, (0, 1)), (1, (1, 0))])
def test_gradcheck_names_the_wrong_element(position, element):
    fn, inputs, grad_fn = _elementwise()
    seen = {}

    def wrong(g, a, b):
        grads = [np.array(v) for v in grad_fn(g, a, b)]
        grads[position][element] += 0.5
        seen["value"] = grads[position][element]
        return grads

    with pytest.raises(AssertionError) as info:
        stc.gradcheck(fn, inputs, wrong, rng=0)
    message = str(info.value)
    assert f"input {position}" in message
    assert str(tuple(element)) in message
    assert repr(float(seen["value"])) in message        # the analytic value
    assert "numerical" in message and "analytic" in message


def test_gradcheck_none_skips_an_input():
    fn, inputs, grad_fn = _elementwise()
    calls = []

    def counted(a, b):
        calls.append(1)
        return fn(a, b)

    # Input 0's gradient would be wrong, but it is skipped.
    assert stc.gradcheck(counted, inputs,
                         lambda g, a, b: (None, grad_fn(g, a, b)[1]), rng=0) is True
    assert len(calls) == 1 + 2 * inputs[1].size     # shape probe + 2 per checked element
    with pytest.raises(AssertionError, match="input 1"):
        stc.gradcheck(fn, inputs, lambda g, a, b: (None, 3 * grad_fn(g, a, b)[1]), rng=0)
    assert stc.gradcheck(fn, inputs, lambda g, a, b: (None, None), rng=0) is True


def test_gradcheck_does_not_modify_inputs():
    rng = np.random.default_rng(8)
    base = rng.standard_normal((2, 3, 4))
    x = base[:, :, ::2]                                # a non-contiguous view
    w = rng.standard_normal((3, 2, 2)).astype(np.float32)
    x_before, w_before, base_before = x.copy(), w.copy(), base.copy()

    def fn(x, w):
        return stc.conv_transpose(x, w)

    def grads(g, x, w):
        gi, gw, _ = stc.conv_transpose_backward(g, x, w)
        return gi, gw

    assert stc.gradcheck(fn, (x, w), grads, rng=0) is True
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(w, w_before)
    np.testing.assert_array_equal(base, base_before)
    assert w.dtype == np.float32


# ---------------------------------------------------------------------------
# as_linear_operator



def _matrix_for(cfg, in_shape, w):
    kw = cfg.kwargs()
    if cfg.transposed:
        return stc.conv_transpose_matrix(in_shape, w, **kw)
    return stc.conv_matrix(in_shape, w, **kw)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_linear_operator(rank, transpose, data):
    # "same" has its own explicit cases below (test_linear_operator_dense_equals_matrix).
    cfg = data.draw(conv_configs(rank, transposed=transpose, max_batch=1,
                                 padding_kinds=("int", "ints", "pairs", "valid")))
    x, w, _ = cfg.arrays()
    x = x[0]
    in_shape, out_shape = x.shape, cfg.output_shape[1:]
    A = stc.as_linear_operator(in_shape, w, **cfg.kwargs(), transpose=transpose)
    assert A.shape == (int(np.prod(out_shape)), int(np.prod(in_shape)))

    # matvec is the operation on the reshaped vector.
    expected = cfg.reference(x[None], w, None)[0]
    assert_matches(A.matvec(x.ravel()), expected.ravel())
    assert_matches(A @ x.ravel(), expected.ravel())

    # rmatvec is the adjoint.
    rng = np.random.default_rng(cfg.seed)
    u, v = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    Au, ATv = A @ u, A.T @ v
    assert ATv.shape == (A.shape[1],)
    scale = max(np.linalg.norm(v) * np.linalg.norm(Au), np.linalg.norm(ATv) * np.linalg.norm(u))
    assert abs(v @ Au - ATv @ u) <= 1e-12 * scale
    M = _matrix_for(cfg, in_shape, w).tocsr()
    assert_matches(A.rmatvec(v), M.T @ v)

    # matmat / rmatmat: column by column.
    U = rng.standard_normal((A.shape[1], 3))
    V = rng.standard_normal((A.shape[0], 2))
    AU, ATV = A @ U, A.T @ V
    assert AU.shape == (A.shape[0], 3) and ATV.shape == (A.shape[1], 2)
    for j in range(3):
        column = cfg.reference(U[:, j].reshape((1,) + in_shape), w, None)[0].ravel()
        assert_matches(AU[:, j], column)
    for j in range(2):
        assert_matches(ATV[:, j], M.T @ V[:, j])


DENSE_CASES = [
    # transpose, input_shape, weight shape, keyword arguments
    (False, (2, 7), (3, 2, 3), dict(stride=2, padding=((0, 2),), dilation=1)),
    (False, (4, 5, 4), (4, 2, 2, 3), dict(stride=(1, 2), padding=((1, 0), (2, 1)),
                                          dilation=(2, 1), groups=2)),
    (True, (2, 4), (2, 3, 3), dict(stride=2, padding=((1, 0),), output_padding=1)),
    (True, (2, 4), (2, 3, 3), dict(stride=1, padding=1, output_padding=2, dilation=3)),
    (True, (4, 3, 2), (4, 1, 2, 3), dict(stride=(1, 2), padding=((0, 1), (1, 1)),
                                         output_padding=(2, 1), dilation=(3, 1), groups=2)),
    (True, (2, 2, 2, 3), (2, 2, 2, 1, 2), dict(stride=(2, 1, 1), padding=0,
                                               output_padding=(1, 2, 1), dilation=(1, 3, 2))),
    # "same", for both operators; with output_padding for the transpose
    (False, (2, 8), (2, 2, 3), dict(stride=2, padding="same")),
    (False, (2, 6, 5), (2, 2, 2, 3), dict(stride=1, padding="same", dilation=(2, 1))),
    (True, (2, 3), (2, 2, 3), dict(stride=2, padding="same")),
    (True, (2, 3), (2, 2, 3), dict(stride=2, padding="same", output_padding=1)),
    (True, (1, 1, 1), (1, 1, 1, 2), dict(stride=(1, 2), padding="same",
                                         output_padding=(0, 1), dilation=(1, 2))),
    (True, (2, 3, 2), (2, 1, 2, 3), dict(stride=(3, 1), padding="same",
                                         output_padding=(2, 0))),
]


@pytest.mark.parametrize("case", DENSE_CASES, ids=str)
def test_linear_operator_dense_equals_matrix(case):
    transpose, in_shape, w_shape, kw = case
    w = np.random.default_rng(len(str(case))).standard_normal(w_shape)
    A = stc.as_linear_operator(in_shape, w, **kw, transpose=transpose)
    if transpose:
        M = stc.conv_transpose_matrix(in_shape, w, **kw).toarray()
    else:
        M = stc.conv_matrix(in_shape, w, **kw).toarray()
    assert A.shape == M.shape
    np.testing.assert_allclose(A @ np.eye(A.shape[1]), M, rtol=0, atol=1e-13)
    np.testing.assert_allclose(A.T @ np.eye(A.shape[0]), M.T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(
        np.column_stack([A.matvec(e) for e in np.eye(A.shape[1])]), M, rtol=0, atol=1e-13)
    # and the matrix, in turn, is the reference operation column by column
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    pairs = [list(p) for p in explicit_padding(kw.get("padding", 0), in_shape[1:], w_shape[2:],
                                               stride, dilation, transposed=transpose)]
    basis = np.eye(M.shape[1]).reshape((-1,) + in_shape)
    if transpose:
        ref = conv_transpose_reference(basis, w, None, stride, pairs,
                                       kw.get("output_padding", 0), kw.get("groups", 1),
                                       dilation)
    else:
        ref = conv_reference(basis, w, None, stride, pairs, dilation, kw.get("groups", 1))
    np.testing.assert_allclose(ref.reshape(M.shape[1], -1).T, M, rtol=0, atol=1e-13)


def test_linear_operator_float32():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((3, 2, 3, 3))
    A = stc.as_linear_operator((2, 6, 5), w, stride=2, padding=1, dtype=np.float32)
    assert A.dtype == np.float32
    u = rng.standard_normal(A.shape[1])
    got = A @ u
    assert got.dtype == np.float32
    M = stc.conv_matrix((2, 6, 5), w, stride=2, padding=1)
    expected = M @ u.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1, np.abs(expected).max()))


@pytest.mark.parametrize("output_padding", [1, (0, 1), (1, 0)])
def test_linear_operator_output_padding_needs_transpose(output_padding):
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        stc.as_linear_operator((2, 6, 6), w, stride=2, output_padding=output_padding)


@pytest.mark.parametrize("size", [7, 8, 9])
def test_linear_operator_conv_same_padding_is_adjoint(size):
    # conv "same" at stride 2 is valid for every input size.
    rng = np.random.default_rng(size)
    w = rng.standard_normal((2, 3, 3))
    A = stc.as_linear_operator((3, size), w, stride=2, padding="same")
    M = stc.conv_matrix((3, size), w, stride=2, padding="same").toarray()
    np.testing.assert_allclose(A @ np.eye(A.shape[1]), M, rtol=0, atol=1e-13)
    np.testing.assert_allclose(A.T @ np.eye(A.shape[0]), M.T, rtol=0, atol=1e-13)



def test_linear_operator_hyper_parameters_are_keyword_only():
    w = np.ones((1, 1, 2))
    with pytest.raises(TypeError, match="positional"):
        stc.as_linear_operator((1, 5), w, 2)
    A = stc.as_linear_operator((1, 5), w, stride=2, groups=1, dilation=1, padding=0)
    assert A.shape == (2, 5)


@pytest.mark.parametrize("input_shape, error, match", [
    ((2, None), TypeError, r"input_shape\[1\]"),
    ((2, 4.0), TypeError, r"input_shape\[1\]"),
    ("24", TypeError, "input_shape"),
    (5, TypeError, "input_shape"),
    ((2, 0), ValueError, "input_shape"),
    ((2, 4, 4), ValueError, "input_shape"),
])
def test_linear_operator_bad_input_shape(input_shape, error, match):
    with pytest.raises(error, match=match):
        stc.as_linear_operator(input_shape, np.ones((1, 2, 2)))


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_linear_operator_complex_vectors_exactly(transpose):
    # A real operator maps real and imaginary parts separately; nothing is dropped.
    rng = np.random.default_rng(21)
    w = rng.standard_normal((2, 3, 3))
    in_shape = (3, 7) if not transpose else (2, 5)
    kw = dict(stride=2, padding=1)
    A = stc.as_linear_operator(in_shape, w, **kw, transpose=transpose)
    M = (stc.conv_transpose_matrix if transpose else stc.conv_matrix)(in_shape, w, **kw).toarray()
    u = rng.standard_normal(A.shape[1]) + 1j * rng.standard_normal(A.shape[1])
    v = rng.standard_normal(A.shape[0]) + 1j * rng.standard_normal(A.shape[0])
    U = rng.standard_normal((A.shape[1], 2)) + 1j * rng.standard_normal((A.shape[1], 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no ComplexWarning
        got = A @ u
        np.testing.assert_allclose(got, M @ u, rtol=0, atol=1e-12)
        assert np.iscomplexobj(got) and np.abs(got.imag).max() > 0
        np.testing.assert_allclose(A.rmatvec(v), M.T @ v, rtol=0, atol=1e-12)
        np.testing.assert_allclose(A.H @ v, M.conj().T @ v, rtol=0, atol=1e-12)
        np.testing.assert_allclose(A @ U, M @ U, rtol=0, atol=1e-12)


def test_linear_operator_refuses_string_vectors():
    A = stc.as_linear_operator((1, 3), np.ones((1, 1, 2)))
    with pytest.raises(TypeError, match="dtype"):
        A @ np.array(["1", "2", "3"])


# ---------------------------------------------------------------------------
# deconvolve

METHODS = ("lsqr", "cg")


def _dense(w, input_shape, **kw):
    return stc.conv_matrix(input_shape, w, **kw).toarray()


WELL_POSED = [
    # x shape (unbatched or batched), weight shape, padding
    ((2, 12), (3, 2, 3), 1),
    ((3, 2, 12), (3, 2, 3), 1),
    ((2, 5, 4), (3, 2, 3, 3), 1),
    ((2, 2, 5, 4), (3, 2, 3, 3), 1),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", WELL_POSED, ids=str)
def test_deconvolve_recovers_input(case, method):
    x_shape, w_shape, padding = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    rank = len(w_shape) - 2
    batched = len(x_shape) == rank + 2
    xb = x if batched else x[None]
    # Full column rank, reasonably conditioned (precondition of the test itself).
    A = _dense(w, xb.shape[1:], padding=padding)
    assert np.linalg.matrix_rank(A) == A.shape[1]
    assert np.linalg.cond(A) < 1e4
    y = conv_reference(xb, w, None, 1, padding)
    if not batched:
        y = y[0]
    x_hat = stc.deconvolve(y, w, padding=padding, method=method)
    assert x_hat.shape == x.shape
    assert x_hat.dtype == np.float64
    assert np.max(np.abs(x_hat - x)) < 1e-6


RANK_DEFICIENT = [
    # y shape, weight, keyword arguments (input size given), x spatial
    ((1, 5), np.array([[[1.0, -0.5, 2.0]]]), dict(stride=2, padding=1), (9,)),
    ((3, 1, 5), np.array([[[1.0, -0.5, 2.0]]]), dict(stride=2, padding=1), (9,)),
    ((1, 5), np.array([[[1.0, 1.0]]]), dict(), (6,)),
    ((2, 5), np.array([[[1.0, 1.0]], [[2.0, 2.0]]]), dict(), (6,)),   # rank 5 of 10 rows
    ((2, 2, 3), np.array([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.5, -1.0], [2.0, 0.0]]]]),
     dict(stride=(2, 1)), (5, 4)),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", RANK_DEFICIENT, ids=lambda c: str(c[0]) + str(c[2]))
def test_deconvolve_minimum_norm_least_squares(case, method):
    y_shape, w, kw, x_spatial = case
    rng = np.random.default_rng(len(str(y_shape)) + 10 * w.size)
    y = rng.standard_normal(y_shape)              # generally not in the range
    rank = w.ndim - 2
    batched = len(y_shape) == rank + 2
    in_shape = (w.shape[1],) + x_spatial
    A = _dense(w, in_shape, **kw)
    assert A.shape[0] == int(np.prod(y_shape[-rank - 1:]))
    assert np.linalg.matrix_rank(A) < A.shape[1]   # a null space: many least-squares x
    ys = y if batched else y[None]
    expected = np.stack([np.linalg.lstsq(A, yn.ravel(), rcond=None)[0] for yn in ys])
    expected = expected.reshape((len(ys),) + in_shape)
    if not batched:
        expected = expected[0]
    x_hat = stc.deconvolve(y, w, **kw, input_size=x_spatial, method=method)
    assert x_hat.shape == expected.shape
    np.testing.assert_allclose(x_hat, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_damp_shrinks_the_solution(method):
    rng = np.random.default_rng(12)
    w = rng.standard_normal((3, 2, 3))
    y = rng.standard_normal((3, 10))
    in_shape = (2, 10)
    A = _dense(w, in_shape, padding=1)
    norms = []
    for damp in (0.0, 0.5, 2.0):
        x_hat = stc.deconvolve(y, w, padding=1, method=method, damp=damp)
        # Tikhonov in closed form: (A^T A + damp^2 I) x = A^T y.
        expected = np.linalg.solve(A.T @ A + damp ** 2 * np.eye(A.shape[1]), A.T @ y.ravel())
        np.testing.assert_allclose(x_hat.ravel(), expected, rtol=0, atol=1e-6)
        norms.append(np.linalg.norm(x_hat))
    assert norms[0] > norms[1] > norms[2]


def test_deconvolve_return_info():
    rng = np.random.default_rng(13)
    w = rng.standard_normal((3, 2, 3))
    x = rng.standard_normal((2, 8))
    y = conv_reference(x[None], w, None, 1, 1)[0]
    for method in METHODS:
        x_hat, info = stc.deconvolve(y, w, padding=1, method=method, return_info=True)
        assert info["method"] == method
        assert info["converged"] is True
        assert info["residual_norm"] < 1e-6
        assert np.max(np.abs(x_hat - x)) < 1e-6


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="gmres"), "method"),
    (dict(method="LSQR"), "method"),
    (dict(damp=-1.0), "damp"),
    (dict(damp=float("nan")), "damp"),
    (dict(input_size=(7,)), "input_size"),
    (dict(input_size=(12,)), "input_size"),
    (dict(input_size=(9, 9)), "input_size"),
])
def test_deconvolve_bad_arguments(kwargs, match):
    w = np.ones((3, 2, 3))
    y = np.ones((3, 9))      # from an input of size 9 (padding 1) or 17..18 (stride 2)
    with pytest.raises(ValueError, match=match):
        stc.deconvolve(y, w, padding=1, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_conv_same_padding(method):
    # conv "same" at stride 2 maps sizes 7 and 8 both to 4.
    rng = np.random.default_rng(14)
    w = rng.standard_normal((1, 1, 3))
    y = rng.standard_normal((1, 4))
    for size in (8, 7):
        A = _dense(w, (1, size), stride=2, padding="same")
        expected = np.linalg.lstsq(A, y.ravel(), rcond=None)[0].reshape(1, size)
        x_hat = stc.deconvolve(y, w, stride=2, padding="same", input_size=(size,),
                               method=method)
        np.testing.assert_allclose(x_hat, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(damp=None), TypeError, "damp"),
    (dict(damp=True), TypeError, "damp"),
    (dict(damp="0.1"), TypeError, "damp"),
    (dict(damp=float("inf")), ValueError, "damp"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(tol=None), TypeError, "tol"),
    (dict(maxiter=0), ValueError, "maxiter"),
    (dict(maxiter=2.5), TypeError, "maxiter"),
    (dict(method=None), ValueError, "method"),
    (dict(callback=3, method="cg"), TypeError, "callback"),
    (dict(callback=print), ValueError, "callback"),          # LSQR reports no iterates
    (dict(x0=np.zeros((2, 8))), ValueError, "x0"),
    (dict(x0=np.zeros((2, 9), complex)), TypeError, "x0"),
])
def test_deconvolve_bad_keyword_types(kwargs, error, match):
    w = np.ones((3, 2, 3))
    with pytest.raises(error, match=match):
        stc.deconvolve(np.ones((3, 9)), w, padding=1, **kwargs)


@pytest.mark.parametrize("y_shape", [(4, 9), (2, 4, 9), (2, 9)])
def test_deconvolve_channel_mismatch_is_named(y_shape):
    w = np.ones((3, 2, 3))                       # a convolution to 3 channels
    with pytest.raises(ValueError, match=r"y has \d+ channels.*weight.shape\[0\] = 3"):
        stc.deconvolve(np.ones(y_shape), w, padding=1)


def _blur(n):
    g = np.exp(-0.5 * ((np.arange(9) - 4) / 1.5) ** 2)
    w = (g / g.sum())[None, None]
    x = np.random.default_rng(n).standard_normal((1, n))
    return conv_reference(x[None], w, None, 1, 4)[0], w


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_warns_when_unconverged(method):
    y, w = _blur(40)
    with pytest.warns(stc.ConvergenceWarning, match="maxiter=3"):
        _, info = stc.deconvolve(y, w, padding=4, method=method, maxiter=3,
                                 return_info=True)
    assert info["converged"] is False and info["iterations"] == 3
    assert issubclass(stc.ConvergenceWarning, RuntimeWarning)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, limit", [(40, 100), (64, 128), (700, 1000)])
def test_deconvolve_default_iteration_limit(method, n, limit):
    # A blur never reaches tol=1e-14: the default limit is 2 * unknowns in 100 ... 1000.
    y, w = _blur(n)
    with pytest.warns(stc.ConvergenceWarning):
        _, info = stc.deconvolve(y, w, padding=4, method=method, tol=1e-14,
                                 return_info=True)
    assert info["iterations"] == limit


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_converged_does_not_warn(method):
    rng = np.random.default_rng(31)
    w = rng.standard_normal((3, 2, 3))
    y = conv_reference(rng.standard_normal((1, 2, 12)), w, None, 1, 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stc.deconvolve(y, w, padding=1, method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("damp", [0.0, 0.7])
def test_deconvolve_x0(method, damp):
    # Rank deficient: from x0 the iterations reach the least-squares solution nearest
    # x0 (damp 0), or the one Tikhonov solution whatever the start (damp > 0).
    rng = np.random.default_rng(32)
    w = np.array([[[1.0, -0.5, 2.0]]])
    y = rng.standard_normal((1, 5))
    x0 = rng.standard_normal((1, 9))
    A = _dense(w, (1, 9), stride=2, padding=1)
    if damp:
        expected = np.linalg.solve(A.T @ A + damp ** 2 * np.eye(9), A.T @ y.ravel())
    else:
        expected = x0.ravel() + np.linalg.lstsq(A, y.ravel() - A @ x0.ravel(), rcond=None)[0]
    x_hat = stc.deconvolve(y, w, stride=2, padding=1, input_size=(9,), method=method,
                           damp=damp, x0=x0)
    np.testing.assert_allclose(x_hat.ravel(), expected, rtol=0, atol=1e-6)
    assert x_hat.shape == x0.shape
    if not damp:   # and not the minimum-norm solution a zero start gives
        from_zero = stc.deconvolve(y, w, stride=2, padding=1, input_size=(9,), method=method)
        assert np.abs(from_zero - x_hat).max() > 1e-3


def test_deconvolve_x0_at_the_solution_stops_at_once():
    rng = np.random.default_rng(33)
    w = rng.standard_normal((3, 2, 3))
    x = rng.standard_normal((2, 2, 10))
    y = conv_reference(x, w, None, 1, 1)
    for method in METHODS:
        x_hat, info = stc.deconvolve(y, w, padding=1, method=method, x0=x, return_info=True)
        assert info["iterations"] <= 1, info
        np.testing.assert_allclose(x_hat, x, rtol=0, atol=1e-9)


def test_deconvolve_callback_sees_every_iterate():
    rng = np.random.default_rng(34)
    w = rng.standard_normal((3, 2, 3))
    y = rng.standard_normal((2, 3, 10))
    seen = []
    x_hat, info = stc.deconvolve(y, w, padding=1, method="cg", return_info=True,
                                 callback=lambda xk: seen.append(xk))
    assert len(seen) == info["iterations"] >= 2
    assert all(xk.shape == x_hat.shape == (2, 2, 10) for xk in seen)
    np.testing.assert_array_equal(seen[-1], x_hat)
    assert not np.array_equal(seen[0], seen[-1])
