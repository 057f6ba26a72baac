"""Backward passes: ``conv_transpose_backward`` and ``conv_backward``.

Every expected value comes from outside the code under test: PyTorch autograd, central
finite differences (``gradcheck``, whose forward is the functional API tested against
PyTorch elsewhere), or the matrix form (``conv_matrix``) -- the input gradient is
``M.T @ grad_output`` and, the operator being linear in the weight, the weight gradient
is ``<grad_output, M(e_k) @ x>`` with ``M(e_k)`` the matrix built from a unit weight.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import (
    SYMMETRIC_PADDING_KINDS,
    ConvConfig,
    assert_matches,
    available_backends,
    conv_configs,
    explicit_padding,
    output_spatial,
)

FLOATS = (np.float32, np.float64)

# PyTorch's own performance note for padding="same" with even kernels.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _grad_output(cfg, dtype=np.float64):
    rng = np.random.default_rng(cfg.seed ^ 0x5EED)
    return rng.standard_normal(cfg.output_shape).astype(dtype)


def _backward(cfg, g, x, w, backend, **extra):
    if cfg.transposed:
        return stc.conv_transpose_backward(g, x, w, cfg.stride, cfg.padding,
                                           cfg.output_padding, cfg.groups, cfg.dilation,
                                           backend=backend, **extra)
    return stc.conv_backward(g, x, w, cfg.stride, cfg.padding, cfg.dilation, cfg.groups,
                             backend=backend, **extra)


# ---------------------------------------------------------------------------
# Against PyTorch autograd

def _torch_value(value):
    return list(value) if isinstance(value, tuple) else value


def _torch_grads(cfg, x, w, g):
    """(grad_input, grad_weight, grad_bias) of torch's op, in float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64).copy())

    xt, wt = t(x).requires_grad_(), t(w).requires_grad_()
    bt = torch.zeros(cfg.out_channels, dtype=torch.float64, requires_grad=True)
    batched = x.ndim == cfg.rank + 2
    xin = xt if batched else xt[None]
    if cfg.transposed:
        op = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[cfg.rank]
        out = op(xin, wt, bt, _torch_value(cfg.stride), _torch_value(cfg.padding),
                 _torch_value(cfg.output_padding), cfg.groups, _torch_value(cfg.dilation))
    else:
        op = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[cfg.rank]
        out = op(xin, wt, bt, _torch_value(cfg.stride), _torch_value(cfg.padding),
                 _torch_value(cfg.dilation), cfg.groups)
    if not batched:
        out = out[0]
    assert tuple(out.shape) == g.shape
    grads = torch.autograd.grad(out, (xt, wt, bt), t(g))
    return tuple(a.numpy() for a in grads)


def _assert_close_to_torch(got, expected, dtype, what):
    assert got is not None, what
    assert got.shape == expected.shape, what
    assert got.dtype == dtype, (what, got.dtype)
    if np.dtype(dtype) == np.float64:
        assert_matches(got, expected)
    else:
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale, err_msg=what)


def _check_against_torch(cfg, dtype):
    x, w, _ = cfg.arrays(dtype)
    g = _grad_output(cfg, dtype)
    expected = _torch_grads(cfg, x, w, g)
    for backend in available_backends():
        got = _backward(cfg, g, x, w, backend)
        for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, expected):
            _assert_close_to_torch(a, e, dtype, f"{name}, backend={backend}, {cfg}")


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_transpose_backward_matches_torch(rank, data, dtype):
    pytest.importorskip("torch")
    cfg = data.draw(conv_configs(rank, transposed=True,
                                 padding_kinds=SYMMETRIC_PADDING_KINDS))
    _check_against_torch(cfg, dtype)


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_backward_matches_torch(rank, data, dtype):
    pytest.importorskip("torch")
    cfg = data.draw(conv_configs(rank, transposed=False,
                                 padding_kinds=SYMMETRIC_PADDING_KINDS + ("same", "valid"),
                                 same_needs_stride_one=True))
    _check_against_torch(cfg, dtype)


def _fixed_config(transposed, x_shape, w_shape, *, stride=1, padding=0, output_padding=0,
                  groups=1, dilation=1, seed=0):
    """A ConvConfig for hand-picked shapes (the sizes from the output-size formulas)."""
    rank = len(w_shape) - 2
    in_size, kernel = tuple(x_shape[-rank:]), tuple(w_shape[2:])
    pairs = explicit_padding(padding, in_size, kernel, stride, dilation,
                             transposed=transposed)
    out_size = output_spatial(in_size, kernel, stride, pairs, dilation, output_padding,
                              transposed=transposed)
    channels = x_shape[-rank - 1]
    if transposed:
        in_per_group, out_per_group = channels // groups, w_shape[1]
    else:
        in_per_group, out_per_group = w_shape[1], w_shape[0] // groups
    assert in_per_group * groups == channels
    return ConvConfig(
        transposed=transposed, rank=rank,
        batch=x_shape[0] if len(x_shape) == rank + 2 else 1, groups=groups,
        in_per_group=in_per_group, out_per_group=out_per_group, in_size=in_size,
        kernel=kernel, stride=stride, dilation=dilation, padding=padding,
        output_padding=output_padding if transposed else 0, pairs=pairs,
        out_size=out_size, bias=True, seed=seed,
    )


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("dtype", FLOATS)
def test_unbatched_matches_torch_and_keeps_dtype(transposed, dtype):
    pytest.importorskip("torch")
    if transposed:
        cfg = _fixed_config(True, (1, 4, 3, 5), (4, 3, 3, 2), stride=(2, 1), padding=(1, 0),
                            output_padding=(1, 0), groups=2, dilation=(1, 2), seed=3)
    else:
        cfg = _fixed_config(False, (1, 4, 7, 6), (6, 2, 3, 2), stride=(2, 1), padding=(1, 0),
                            groups=2, dilation=(1, 2), seed=4)
    x, w, _ = cfg.arrays(dtype)
    x = x[0]                                       # (C, *spatial)
    g = _grad_output(cfg, dtype)[0]
    expected = _torch_grads(cfg, x, w, g)
    for backend in available_backends():
        gi, gw, gb = _backward(cfg, g, x, w, backend)
        assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (cfg.out_channels,)
        for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), (gi, gw, gb),
                              expected):
            _assert_close_to_torch(a, e, dtype, f"{name}, backend={backend}")


# ---------------------------------------------------------------------------
# Against finite differences (asymmetric padding and "same", which PyTorch lacks)

def small_configs(rank, transposed):
    """A random valid configuration small enough for gradcheck (input + weight + bias
    elements stay under ~150): every padding kind, output_padding up to its limit."""
    return conv_configs(rank, transposed=transposed,
                        padding_kinds=("pairs", "pairs", "same", "int", "valid"),
                        max_batch=2 if rank == 1 else 1, max_size={1: 5, 2: 3, 3: 2}[rank],
                        max_kernel=3 if rank < 3 else 2, max_groups=2, max_channels=2,
                        max_padding=2, padding_spread=1, bias=True)


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_backward_matches_finite_differences(rank, transposed, data):
    cfg = data.draw(small_configs(rank, transposed))
    backend = data.draw(st.sampled_from(available_backends()))
    x, w, b = cfg.arrays(np.float64)
    assert x.size + w.size + b.size <= 160
    kw = cfg.kwargs()
    forward = stc.conv_transpose if transposed else stc.conv
    backward = stc.conv_transpose_backward if transposed else stc.conv_backward

    def fn(x, w, b):
        return forward(x, w, b, **kw, backend="direct")

    def grad_fn(g, x, w, b):
        assert g.shape == cfg.output_shape
        return backward(g, x, w, **kw, backend=backend)

    assert stc.gradcheck(fn, (x, w, b), grad_fn, rng=cfg.seed) is True


# ---------------------------------------------------------------------------
# Against the matrix form

def _matrix(cfg_or_transposed, in_shape, w, kw):
    transposed = getattr(cfg_or_transposed, "transposed", cfg_or_transposed)
    if transposed:
        return stc.conv_transpose_matrix(in_shape, w, **kw).tocsr()
    return stc.conv_matrix(in_shape, w, **kw).tocsr()


def _matrix_input_gradient(transposed, x, w, g, kw):
    """grad_input[n] = M.T @ g[n] for every sample."""
    M = _matrix(transposed, x.shape[1:], w, kw)
    assert M.shape == (g[0].size, x[0].size)
    return np.stack([(M.T @ gn.ravel()).reshape(x.shape[1:]) for gn in g])


def _matrix_weight_gradient(transposed, x, w, g, kw):
    """d <out, g> / d w[e] = sum_n <g[n], M(e_k) @ x[n]>, M(e_k) the matrix of a unit
    weight -- the matrix form differentiated entry by entry."""
    expected = np.zeros(w.shape)
    for e in np.ndindex(*w.shape):
        basis = np.zeros(w.shape)
        basis[e] = 1.0
        M = _matrix(transposed, x.shape[1:], basis, kw)
        expected[e] = sum(float(gn.ravel() @ (M @ xn.ravel())) for xn, gn in zip(x, g))
    return expected


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_input_gradient_is_matrix_transpose(rank, transposed, data):
    cfg = data.draw(conv_configs(rank, transposed=transposed))
    x, w, _ = cfg.arrays(np.float64)
    g = _grad_output(cfg)
    kw = cfg.kwargs()
    expected = _matrix_input_gradient(transposed, x, w, g, kw)
    for backend in available_backends():
        gi, gw, gb = _backward(cfg, g, x, w, backend, needs=("input",))
        assert gw is None and gb is None
        assert gi.shape == x.shape
        assert_matches(gi, expected)


# output_padding >= stride (dilation > stride): the convolution that is the adjoint has
# extra positions the transposed convolution has no input for.
EXTRA_POSITION_CASES = [
    # x shape, w shape, stride, padding, output_padding, groups, dilation
    ((2, 2, 4), (2, 3, 3), 1, 0, 2, 1, 3),
    ((2, 2, 4), (2, 3, 3), 1, ((1, 2),), 2, 2, 3),
    ((1, 2, 3, 4), (2, 2, 2, 3), (2, 1), ((0, 1), (1, 0)), (2, 1), 1, (3, 2)),
    ((1, 4, 2, 3, 2), (4, 1, 2, 2, 2), (1, 2, 1), 1, (1, 2, 2), 2, (2, 3, 3)),
]


@pytest.mark.parametrize("case", EXTRA_POSITION_CASES)
def test_input_gradient_with_output_padding_beyond_stride(case):
    x_shape, w_shape, stride, padding, output_padding, groups, dilation = case
    cfg = _fixed_config(True, x_shape, w_shape, stride=stride, padding=padding,
                        output_padding=output_padding, groups=groups, dilation=dilation,
                        seed=len(str(case)))
    assert any(op >= s for op, s in zip(np.broadcast_to(output_padding, (cfg.rank,)),
                                        np.broadcast_to(stride, (cfg.rank,))))
    x, w, _ = cfg.arrays()
    g = _grad_output(cfg)
    kw = cfg.kwargs()
    expected_input = _matrix_input_gradient(True, x, w, g, kw)
    expected_weight = _matrix_weight_gradient(True, x, w, g, kw)
    for backend in available_backends():
        gi, gw, gb = _backward(cfg, g, x, w, backend)
        assert_matches(gi, expected_input)
        assert_matches(gw, expected_weight)
        np.testing.assert_allclose(gb, g.sum(axis=(0,) + tuple(range(2, g.ndim))),
                                   rtol=1e-12, atol=1e-12)


WEIGHT_GRADIENT_CASES = [
    # transposed, x shape, w shape, keyword arguments
    (True, (2, 4, 5), (4, 3, 3),
     dict(stride=2, padding=((1, 2),), output_padding=1, groups=2, dilation=2)),
    (True, (2, 2, 3, 4), (2, 2, 2, 3),
     dict(stride=(2, 1), padding=((0, 1), (2, 0)), output_padding=(1, 0), groups=2,
          dilation=(1, 2))),
    (True, (1, 2, 2, 3, 2), (2, 1, 2, 2, 2),
     dict(stride=(1, 2, 1), padding=((1, 0), (0, 1), (0, 0)), output_padding=(1, 1, 2),
          groups=2, dilation=(2, 1, 3))),
    (True, (1, 3, 3, 3), (3, 2, 3, 2), dict(stride=2, padding="same")),
    (False, (2, 4, 9), (6, 2, 3),
     dict(stride=2, padding=((0, 2),), groups=2, dilation=2)),
    (False, (2, 3, 5, 4), (3, 1, 2, 3),
     dict(stride=(1, 2), padding=((1, 0), (0, 2)), groups=3, dilation=(2, 1))),
    (False, (1, 2, 4, 3, 3), (4, 1, 2, 2, 2),
     dict(stride=(2, 1, 1), padding=((0, 1), (1, 1), (0, 0)), groups=2, dilation=(1, 2, 1))),
    (False, (2, 2, 7), (2, 2, 4), dict(stride=2, padding="same")),
]


@pytest.mark.parametrize("case", WEIGHT_GRADIENT_CASES, ids=lambda c: str(c[:3]))
def test_weight_gradient_is_matrix_derivative(case):
    transposed, x_shape, w_shape, kw = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    out_shape = (stc.conv_transpose if transposed else stc.conv)(x, w, **kw).shape
    g = rng.standard_normal(out_shape)
    expected = _matrix_weight_gradient(transposed, x, w, g, kw)
    backward = stc.conv_transpose_backward if transposed else stc.conv_backward
    for backend in available_backends():
        gi, gw, gb = backward(g, x, w, **kw, backend=backend)
        assert gw.shape == w.shape
        assert_matches(gw, expected)
        assert_matches(gi, _matrix_input_gradient(transposed, x, w, g, kw))


# ---------------------------------------------------------------------------
# needs= and errors

NEEDS_CASES = [
    (),
    ("input",),
    ("weight",),
    ("bias",),
    ("input", "bias"),
    ("weight", "bias"),
    ["input", "weight"],
    ("input", "weight", "bias"),
]


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@pytest.mark.parametrize("needs", NEEDS_CASES, ids=str)
def test_needs_computes_only_what_is_asked(transposed, needs):
    if transposed:
        cfg = _fixed_config(True, (2, 2, 4, 3), (2, 3, 3, 2), stride=2, padding=1,
                            output_padding=1, dilation=(1, 2), seed=11)
    else:
        cfg = _fixed_config(False, (2, 2, 6, 5), (3, 2, 3, 2), stride=2, padding=1,
                            dilation=(1, 2), seed=12)
    x, w, _ = cfg.arrays()
    g = _grad_output(cfg)
    kw = cfg.kwargs()
    expected = {
        "input": _matrix_input_gradient(transposed, x, w, g, kw),
        "weight": _matrix_weight_gradient(transposed, x, w, g, kw),
        "bias": g.sum(axis=(0,) + tuple(range(2, g.ndim))),
    }
    for backend in available_backends():
        got = dict(zip(("input", "weight", "bias"),
                       _backward(cfg, g, x, w, backend, needs=needs)))
        for name, value in got.items():
            if name in needs:
                assert value is not None, (name, backend)
                assert_matches(value, expected[name])
            else:
                assert value is None, (name, backend)


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@pytest.mark.parametrize("needs", [("inputs",), ("input", "gradient"), ("Weight",), ("x",)])
def test_bad_needs_raises(transposed, needs):
    x, w = np.ones((1, 2, 4)), np.ones((2, 2, 3))
    g = (stc.conv_transpose if transposed else stc.conv)(x, w)
    backward = stc.conv_transpose_backward if transposed else stc.conv_backward
    with pytest.raises(ValueError, match="needs"):
        backward(g, x, w, needs=needs)


@pytest.mark.parametrize("transposed", [True, False], ids=["conv_transpose", "conv"])
@pytest.mark.parametrize("change", ["spatial", "channels", "batch", "unbatched", "rank"])
def test_grad_output_of_wrong_shape_raises(transposed, change):
    x, w = np.ones((2, 2, 4, 5)), np.ones((2, 2, 3, 3))
    backward = stc.conv_transpose_backward if transposed else stc.conv_backward
    kw = dict(stride=2, padding=1)
    shape = list((stc.conv_transpose if transposed else stc.conv)(x, w, **kw).shape)
    if change == "spatial":
        shape[-1] += 1
    elif change == "channels":
        shape[1] += 1
    elif change == "batch":
        shape[0] += 1
    elif change == "unbatched":
        shape = shape[1:]
    else:
        shape = shape + [1]
    for backend in available_backends():
        with pytest.raises(ValueError, match="grad_output"):
            backward(np.ones(shape), x, w, **kw, backend=backend)
