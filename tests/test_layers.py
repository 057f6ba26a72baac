"""The layers against ``torch.nn`` and against their own contract.

- Forward and backward (input gradient, ``weight_grad``, ``bias_grad``) of every class
  against the ``torch.nn`` module holding the same weights, float64, on random
  configurations (groups, dilation, stride, int and per-axis padding, ``"same"`` and
  ``"valid"`` for a convolution with stride 1, output_padding, bias, the padding modes).
- ``output_size=`` of a transposed layer against ``module(x, output_size=...)``.
- PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)), ``rng=``, ``dtype=``.
- Constructor errors and backward before forward.
- ``matrix(input_shape)`` against the forward pass.
- Unbatched input.
- A five-layer DCGAN-style generator end to end, against torch and with ``gradcheck``.
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparsetconv as stc

# PyTorch's performance note for padding="same" with even kernels.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CONV = {1: stc.Conv1d, 2: stc.Conv2d, 3: stc.Conv3d}
TRANSPOSE = {1: stc.ConvTranspose1d, 2: stc.ConvTranspose2d, 3: stc.ConvTranspose3d}
ALL_CLASSES = [stc.Conv1d, stc.Conv2d, stc.Conv3d,
               stc.ConvTranspose1d, stc.ConvTranspose2d, stc.ConvTranspose3d]
TORCH_NAME = {cls: cls.__name__ for cls in ALL_CLASSES}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _rank(cls):
    return int(cls.__name__[-2])


def _is_transposed(cls):
    return cls.__name__.startswith("ConvTranspose")


def _close(got, expected, rtol=1e-10):
    """float64 agreement to round-off, relative to the expected array's scale."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def _torch_module(torch, layer, args, kwargs):
    """The ``torch.nn`` twin of ``layer`` (float64), holding a copy of its weights."""
    kwargs = dict(kwargs)
    kwargs.pop("rng", None)
    kwargs["dtype"] = torch.float64
    module = getattr(torch.nn, type(layer).__name__)(*args, **kwargs)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight, dtype=np.float64)))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias, dtype=np.float64)))
        else:
            assert module.bias is None
    return module


def _check_against_torch(cls, args, kwargs, x, *, output_size=None, seed=0):
    """Forward, then backward with a random grad_output: output, input gradient,
    weight_grad and bias_grad all equal the torch module's (float64)."""
    torch = pytest.importorskip("torch")
    layer = cls(*args, dtype=np.float64, rng=seed, **kwargs)
    module = _torch_module(torch, layer, args, kwargs)

    out = layer(x, output_size=output_size) if output_size is not None else layer(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    ot = module(xt, output_size=output_size) if output_size is not None else module(xt)
    assert out.dtype == np.float64
    _close(out, ot.detach().numpy())

    grad_output = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grad_input = layer.backward(grad_output)
    ot.backward(torch.from_numpy(grad_output))
    _close(grad_input, xt.grad.numpy())
    _close(layer.weight_grad, module.weight.grad.numpy())
    if module.bias is not None:
        _close(layer.bias_grad, module.bias.grad.numpy())
    else:
        assert layer.bias_grad is None
    return layer, out


# ---------------------------------------------------------------------------
# Random configurations (PyTorch's constraints)

def _compact(draw, values):
    values = tuple(values)
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


def _side_pads(padding, kernel, dilation, rank):
    """Per-axis (begin, end) of a stride-1-or-explicit convolution padding."""
    if padding == "valid":
        return [(0, 0)] * rank
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    per_axis = (padding,) * rank if isinstance(padding, int) else tuple(padding)
    return [(p, p) for p in per_axis]


@st.composite
def conv_layer_configs(draw, rank):
    """``(args, kwargs, input_shape)`` of a Conv layer torch accepts."""
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4 if rank < 3 else 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    kind = draw(st.sampled_from(("int", "ints", "same", "valid")))
    if kind in ("same", "valid"):
        stride = (1,) * rank
        padding = kind
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
        per_axis = tuple(draw(st.integers(0, 2)) for _ in range(rank))
        padding = per_axis[0] if kind == "int" else per_axis
        if kind == "int":
            per_axis = (per_axis[0],) * rank
    padding_mode = draw(st.sampled_from(PADDING_MODES))
    max_size = {1: 9, 2: 6, 3: 4}[rank]
    size = tuple(draw(st.integers(2, max_size)) for _ in range(rank))
    pads = _side_pads(padding, kernel, dilation, rank)
    for n, (b, e), k, d in zip(size, pads, kernel, dilation):
        assume(n + b + e >= d * (k - 1) + 1)         # non-empty output
        if padding_mode == "reflect":
            assume(max(b, e) < n)                    # torch: reflect pad < size
        elif padding_mode == "circular":
            assume(max(b, e) <= n)
    kwargs = dict(stride=_compact(draw, stride), padding=padding,
                  dilation=_compact(draw, dilation), groups=groups,
                  bias=draw(st.booleans()), padding_mode=padding_mode)
    batch = draw(st.integers(1, 2))
    args = (in_channels, out_channels, _compact(draw, kernel))
    return args, kwargs, (batch, in_channels) + size


@st.composite
def transpose_layer_configs(draw, rank):
    """``(args, kwargs, input_shape)`` of a ConvTranspose layer torch accepts."""
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4 if rank < 3 else 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(rank))
    max_size = {1: 6, 2: 5, 3: 3}[rank]
    size = tuple(draw(st.integers(1, max_size)) for _ in range(rank))
    for n, s, p, k, d, op in zip(size, stride, padding, kernel, dilation, output_padding):
        assume((n - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
    kwargs = dict(stride=_compact(draw, stride), padding=_compact(draw, padding),
                  output_padding=_compact(draw, output_padding), groups=groups,
                  bias=draw(st.booleans()), dilation=_compact(draw, dilation))
    batch = draw(st.integers(1, 2))
    args = (in_channels, out_channels, _compact(draw, kernel))
    return args, kwargs, (batch, in_channels) + size


def _input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------
# Against torch.nn

@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**30))
def test_conv_transpose_layer_matches_torch(rank, data, seed):
    args, kwargs, shape = data.draw(transpose_layer_configs(rank))
    _check_against_torch(TRANSPOSE[rank], args, kwargs, _input(shape, seed), seed=seed)


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**30))
def test_conv_layer_matches_torch(rank, data, seed):
    args, kwargs, shape = data.draw(conv_layer_configs(rank))
    _check_against_torch(CONV[rank], args, kwargs, _input(shape, seed), seed=seed)


# Fixed cases so every padding mode meets every rank and the per-axis forms whatever
# hypothesis draws.
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("padding, stride", [
    (1, 2), ((2, 0, 1), (1, 2, 3)), ("same", 1), ("valid", 1)])
def test_conv_layer_padding_modes_match_torch(rank, padding_mode, padding, stride):
    if isinstance(padding, tuple):
        padding, stride = padding[:rank], stride[:rank]
    kernel = (3, 4, 2)[:rank]
    kwargs = dict(stride=stride, padding=padding, dilation=(2, 1, 1)[:rank], groups=2,
                  bias=True, padding_mode=padding_mode)
    shape = (2, 4) + (7, 6, 5)[:rank]
    _check_against_torch(CONV[rank], (4, 6, kernel), kwargs, _input(shape, rank), seed=rank)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose_layer_fixed_grid_matches_torch(rank, bias):
    kwargs = dict(stride=(2, 3, 1)[:rank], padding=(1, 0, 2)[:rank],
                  output_padding=(1, 2, 1)[:rank], groups=3, bias=bias,
                  dilation=(1, 2, 2)[:rank])
    shape = (2, 6) + (4, 3, 3)[:rank]
    _check_against_torch(TRANSPOSE[rank], (6, 3, (3, 2, 3)[:rank]), kwargs,
                         _input(shape, 7), seed=7)


@pytest.mark.parametrize("cls, args, kwargs, in_spatial, output_size", [
    # min output 9: 10 needs output_padding 1 on the first axis
    (stc.ConvTranspose2d, (3, 4, 3), dict(stride=2, padding=1), (5, 5), (10, 9)),
    (stc.ConvTranspose2d, (3, 4, 3), dict(stride=2, padding=1), (5, 5), "full"),
    # min output 14, torch's maximum 16
    (stc.ConvTranspose1d, (2, 3, 4), dict(stride=3, padding=1, dilation=2), (4,), (16,)),
    (stc.ConvTranspose1d, (2, 3, 4), dict(stride=3, padding=1, dilation=2), (4,), (14,)),
    (stc.ConvTranspose3d, (4, 2, 3), dict(stride=(2, 3, 1), padding=(1, 0, 1), groups=2,
                                          bias=False), (3, 2, 3), "plus"),
])
def test_conv_transpose_output_size_matches_torch(cls, args, kwargs, in_spatial,
                                                  output_size):
    x = _input((2, args[0]) + in_spatial, 3)
    probe = cls(*args, **kwargs)
    smallest = probe(x.astype(np.float32)).shape
    assert probe.output_padding == (0,) * len(in_spatial)
    if output_size == "full":       # with the leading (N, C), one above the minimum
        output_size = smallest[:2] + tuple(n + 1 for n in smallest[2:])
    elif output_size == "plus":     # the largest output_padding torch allows per axis
        output_size = tuple(n + s - 1 for n, s in zip(smallest[2:], (2, 3, 1)))
    layer, out = _check_against_torch(cls, args, kwargs, x, output_size=output_size, seed=4)
    assert out.shape[-len(in_spatial):] == tuple(output_size)[-len(in_spatial):]


# ---------------------------------------------------------------------------
# Initialisation, rng, dtype

# Big enough that the extreme values get close to the bound; groups > 1 in some so the
# fan-in has to come from weight.shape[1], not from in_channels.
INIT_CASES = [
    (stc.Conv1d, (64, 256, 7), {}),
    (stc.Conv2d, (64, 256, 5), dict(groups=4)),
    (stc.Conv3d, (16, 256, 3), {}),
    (stc.ConvTranspose1d, (256, 64, 7), {}),
    (stc.ConvTranspose2d, (256, 64, 5), dict(groups=4)),
    (stc.ConvTranspose3d, (256, 16, 3), {}),
]


@pytest.mark.parametrize("cls, args, kwargs", INIT_CASES)
def test_default_initialisation_like_pytorch(cls, args, kwargs):
    in_channels, out_channels, k = args
    rank = _rank(cls)
    groups = kwargs.get("groups", 1)
    layer = cls(*args, rng=123, **kwargs)
    if _is_transposed(cls):
        expected_shape = (in_channels, out_channels // groups) + (k,) * rank
    else:
        expected_shape = (out_channels, in_channels // groups) + (k,) * rank
    assert layer.weight.shape == expected_shape
    assert layer.bias.shape == (out_channels,)
    bound = 1.0 / math.sqrt(expected_shape[1] * k ** rank)

    w = layer.weight.astype(np.float64)
    n = w.size
    assert np.max(np.abs(w)) <= bound * (1 + 1e-6)
    assert np.max(np.abs(w)) >= 0.99 * bound
    std = bound / math.sqrt(3)
    assert abs(w.mean()) < 6 * std / math.sqrt(n)
    assert abs(w.std() / std - 1) < 0.05
    # uniform: half the mass within half the bound, a tenth within a tenth
    assert abs(np.mean(np.abs(w) < bound / 2) - 0.5) < 0.02
    assert abs(np.mean(np.abs(w) < bound / 10) - 0.1) < 0.02
    # the bias uses the same bound
    b = layer.bias.astype(np.float64)
    assert np.max(np.abs(b)) <= bound * (1 + 1e-6)
    assert np.max(np.abs(b)) >= 0.9 * bound
    assert abs(b.mean()) < 6 * std / math.sqrt(b.size)

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, cls.__name__)(*args, **kwargs)
    assert tuple(module.weight.shape) == layer.weight.shape
    t_max = float(module.weight.detach().abs().max())
    assert t_max <= bound * (1 + 1e-6)
    assert 0.98 < np.max(np.abs(w)) / t_max < 1.02
    t_bias_max = float(module.bias.detach().abs().max())
    assert t_bias_max <= bound * (1 + 1e-6)
    assert 0.85 < np.max(np.abs(b)) / t_bias_max < 1.15
    assert abs(float(module.weight.detach().std()) / w.std() - 1) < 0.05


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_rng_reproducible(cls):
    a = cls(4, 6, 3, rng=5)
    b = cls(4, 6, 3, rng=5)
    c = cls(4, 6, 3, rng=6)
    d = cls(4, 6, 3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    np.testing.assert_array_equal(a.weight, d.weight)
    assert not np.array_equal(a.weight, c.weight)
    assert not np.array_equal(a.bias, c.bias)
    # an unseeded layer is not a fixed constant
    assert not np.array_equal(cls(4, 6, 3).weight, cls(4, 6, 3).weight)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_dtype_default_float32_and_float64_on_request(cls):
    rank = _rank(cls)
    layer = cls(2, 4, 3, padding=1, rng=0)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    x = np.ones((1, 2) + (4,) * rank, dtype=np.float32)
    out = layer(x)
    assert out.dtype == np.float32
    grad = layer.backward(np.ones_like(out))
    assert grad.dtype == np.float32 and grad.shape == x.shape
    assert layer.weight_grad.dtype == np.float32
    assert layer.weight_grad.shape == layer.weight.shape
    assert layer.bias_grad.shape == (4,)
    # the bias gradient of sum(out) is the number of output positions per channel
    np.testing.assert_allclose(layer.bias_grad, np.full(4, out[0, 0].size), rtol=1e-6)

    wide = cls(2, 4, 3, padding=1, rng=0, dtype=np.float64)
    assert wide.weight.dtype == np.float64 and wide.bias.dtype == np.float64
    out64 = wide(x.astype(np.float64))
    assert out64.dtype == np.float64
    assert wide.backward(np.ones_like(out64)).dtype == np.float64
    assert wide.weight_grad.dtype == np.float64


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_bias_false(cls):
    rank = _rank(cls)
    layer = cls(3, 2, 2, bias=False, dtype=np.float64, rng=1)
    assert layer.bias is None
    x = _input((2, 3) + (3,) * rank)
    out = layer(x)
    layer.backward(np.ones_like(out))
    assert layer.bias_grad is None
    assert layer.weight_grad is not None and layer.weight_grad.shape == layer.weight.shape
    # with no bias, a zero input gives a zero output
    assert not np.any(layer(np.zeros_like(x)))


# ---------------------------------------------------------------------------
# Errors

@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_channels_not_divisible_by_groups(cls):
    with pytest.raises(ValueError, match="in_channels"):
        cls(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels"):
        cls(4, 3, 3, groups=2)


@pytest.mark.parametrize("cls", [stc.ConvTranspose1d, stc.ConvTranspose2d,
                                 stc.ConvTranspose3d])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_transpose_rejects_non_zero_padding_modes(cls, mode):
    with pytest.raises(ValueError, match="padding_mode"):
        cls(2, 2, 3, padding_mode=mode)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_unknown_padding_mode(cls):
    with pytest.raises(ValueError, match="padding_mode"):
        cls(2, 2, 3, padding_mode="mirror")


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_device(cls):
    with pytest.raises(ValueError, match="device"):
        cls(2, 2, 3, device="cuda")
    assert cls(2, 2, 3, device="cpu").weight.shape[:2] == (2, 2)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_backward_before_forward(cls):
    layer = cls(2, 2, 3)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((1, 2) + (3,) * _rank(cls)))
    assert layer.weight_grad is None and layer.bias_grad is None


# ---------------------------------------------------------------------------
# matrix(input_shape)

MATRIX_CASES = [
    (stc.Conv1d, (4, 6, 3), dict(stride=2, padding=1, dilation=2, groups=2), (9,)),
    (stc.Conv2d, (4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 0), groups=2), (6, 5)),
    (stc.Conv3d, (2, 3, 2), dict(stride=1, padding="same", dilation=(1, 2, 1)), (4, 5, 3)),
    (stc.Conv2d, (3, 4, 3), dict(padding=2, padding_mode="reflect"), (5, 6)),
    (stc.Conv1d, (2, 2, 4), dict(padding="same", padding_mode="reflect"), (7,)),
    (stc.Conv3d, (2, 2, 3), dict(padding=(1, 2, 0), stride=2, padding_mode="reflect"),
     (4, 4, 3)),
    (stc.Conv2d, (3, 4, 3), dict(padding=(1, 2), padding_mode="replicate"), (4, 3)),
    (stc.Conv2d, (3, 4, 3), dict(padding=2, stride=2, padding_mode="circular"), (4, 5)),
    (stc.ConvTranspose1d, (4, 6, 3), dict(stride=3, padding=1, output_padding=2, groups=2),
     (5,)),
    (stc.ConvTranspose2d, (3, 2, 4), dict(stride=2, padding=1, output_padding=(1, 0)),
     (3, 4)),
    (stc.ConvTranspose3d, (4, 2, 3), dict(stride=(2, 1, 2), dilation=2, groups=2,
                                          output_padding=(0, 1, 1)), (2, 3, 2)),
]


@pytest.mark.parametrize("cls, args, kwargs, spatial", MATRIX_CASES)
def test_matrix_is_forward_minus_bias(cls, args, kwargs, spatial):
    layer = cls(*args, dtype=np.float64, rng=2, **kwargs)
    assert layer.bias is not None
    x = _input((args[0],) + spatial, 9)
    out = layer(x[None])[0]
    expected = out - layer.bias.reshape((-1,) + (1,) * len(spatial))
    a = layer.matrix(x.shape)
    assert a.shape == (out.size, x.size)
    _close(a @ x.ravel(), expected.ravel())
    if cls in (stc.Conv1d, stc.Conv2d, stc.Conv3d):
        # the padding-mode folding is a 0/1 sum, so the transpose is the input gradient
        g = _input(out.shape, 10)
        grad = layer.backward(g[None])[0]
        _close(a.T @ g.ravel(), grad.ravel())


# ---------------------------------------------------------------------------
# Unbatched input

UNBATCHED_CASES = [
    (stc.Conv1d, (4, 2, 3), dict(stride=2, padding=1, groups=2), (7,)),
    (stc.Conv2d, (2, 3, 3), dict(padding=1, padding_mode="reflect"), (5, 4)),
    (stc.Conv3d, (2, 2, 2), dict(padding="same"), (3, 4, 3)),
    (stc.ConvTranspose1d, (2, 3, 3), dict(stride=2, output_padding=1), (4,)),
    (stc.ConvTranspose2d, (4, 2, 3), dict(stride=2, padding=1, groups=2), (3, 4)),
    (stc.ConvTranspose3d, (2, 2, 2), dict(stride=2, dilation=2, output_padding=1),
     (2, 3, 2)),
]


@pytest.mark.parametrize("cls, args, kwargs, spatial", UNBATCHED_CASES)
def test_unbatched_input(cls, args, kwargs, spatial):
    x = _input((args[0],) + spatial, 11)
    layer, out = _check_against_torch(cls, args, kwargs, x, seed=11)
    assert out.ndim == x.ndim
    assert out.shape[0] == args[1]


def test_conv_transpose_unbatched_output_size():
    x = _input((3, 4, 5), 12)
    layer, out = _check_against_torch(stc.ConvTranspose2d, (3, 2, 3),
                                      dict(stride=2, padding=1), x,
                                      output_size=(8, 10), seed=12)
    assert out.shape == (2, 8, 10)


# ---------------------------------------------------------------------------
# End to end: a DCGAN-style generator of five ConvTranspose2d layers

LATENT = 16
GEN_CHANNELS = (16, 32, 16, 8, 4, 1)


def _generator(seed=0):
    layers = []
    for i, (cin, cout) in enumerate(zip(GEN_CHANNELS[:-1], GEN_CHANNELS[1:])):
        first, last = i == 0, i == len(GEN_CHANNELS) - 2
        layers.append(stc.ConvTranspose2d(
            cin, cout, 4, stride=1 if first else 2, padding=0 if first else 1,
            bias=last, dtype=np.float64, rng=seed + i))
    return layers


def _generator_forward(layers, z):
    """Forward; returns the output and the pre-activations of every layer."""
    pre = []
    h = z
    for i, layer in enumerate(layers):
        a = layer(h)
        pre.append(a)
        h = np.tanh(a) if i == len(layers) - 1 else np.maximum(a, 0)
    return h, pre


def _generator_backward(layers, pre, grad):
    for i in reversed(range(len(layers))):
        a = pre[i]
        if i == len(layers) - 1:
            grad = grad * (1 - np.tanh(a) ** 2)
        else:
            grad = grad * (a > 0)
        grad = layers[i].backward(grad)
    return grad


def test_dcgan_generator_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(20)
    layers = _generator()
    z = rng.standard_normal((2, LATENT, 1, 1))
    image, pre = _generator_forward(layers, z)
    assert image.shape == (2, 1, 64, 64)
    assert [a.shape[-1] for a in pre] == [4, 8, 16, 32, 64]
    grad_image = rng.standard_normal(image.shape)
    grad_z = _generator_backward(layers, pre, grad_image)
    assert grad_z.shape == z.shape

    modules = []
    for layer in layers:
        modules.append(_torch_module(
            torch, layer, (layer.in_channels, layer.out_channels, layer.kernel_size),
            dict(stride=layer.stride, padding=layer.padding,
                 bias=layer.bias is not None)))
    zt = torch.from_numpy(z.copy()).requires_grad_(True)
    h = zt
    for i, module in enumerate(modules):
        h = module(h)
        h = torch.tanh(h) if i == len(modules) - 1 else torch.relu(h)
    h.backward(torch.from_numpy(grad_image))

    _close(image, h.detach().numpy())
    _close(grad_z, zt.grad.numpy())
    for i, (layer, module) in enumerate(zip(layers, modules)):
        assert layer.weight_grad.shape == layer.weight.shape, i
        _close(layer.weight_grad, module.weight.grad.numpy())
    assert all(layer.bias_grad is None for layer in layers[:-1])
    _close(layers[-1].bias_grad, modules[-1].bias.grad.numpy())
    # the gradients are not trivially zero
    assert all(np.any(layer.weight_grad) for layer in layers)


def test_dcgan_generator_third_layer_gradcheck():
    rng = np.random.default_rng(21)
    layers = _generator(seed=3)
    z = rng.standard_normal((1, LATENT, 1, 1))
    _, pre = _generator_forward(layers, z)
    layer = layers[2]                          # ConvTranspose2d(16, 8, 4, 2, 1): 8x8 -> 16x16
    x = np.maximum(pre[1], 0)                  # its real input, (1, 16, 8, 8)
    assert x.shape == (1, 16, 8, 8) and np.any(x)
    original = layer.weight.copy()

    def fn(x, w):
        layer.weight = w
        return layer(x)

    def grad_fn(grad_output, x, w):
        layer.weight = w
        layer(x)
        return layer.backward(grad_output), layer.weight_grad

    try:
        assert stc.gradcheck(fn, (x, original), grad_fn, rng=22) is True
    finally:
        layer.weight = original

    # the check can fail: a wrong weight gradient is caught
    def wrong_grad_fn(grad_output, x, w):
        grad_input, grad_weight = grad_fn(grad_output, x, w)
        return grad_input, grad_weight * 1.01

    with pytest.raises(AssertionError):
        stc.gradcheck(fn, (x, original), wrong_grad_fn, rng=22)


# ---------------------------------------------------------------------------
# state_dict / load_state_dict, parameter assignment, dtype and repr

# (class, constructor arguments, keyword arguments, input spatial size)
STATE_CASES = [
    (stc.Conv1d, (4, 6, 3), dict(stride=2, padding=1, groups=2), (9,)),
    (stc.Conv2d, (3, 4, (3, 2)), dict(padding=(1, 0), dilation=(1, 2), bias=False), (7, 8)),
    (stc.Conv3d, (2, 3, 2), dict(stride=(1, 2, 1)), (4, 5, 3)),
    (stc.ConvTranspose1d, (4, 6, 4), dict(stride=2, padding=1, groups=2), (5,)),
    (stc.ConvTranspose2d, (3, 2, 3), dict(stride=2, padding=1, output_padding=1), (4, 3)),
    (stc.ConvTranspose3d, (2, 3, 2), dict(stride=2, bias=False), (2, 3, 2)),
]
STATE_IDS = [c[0].__name__ for c in STATE_CASES]


@pytest.mark.parametrize("cls, args, kwargs, spatial", STATE_CASES, ids=STATE_IDS)
@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
def test_torch_state_dict_loads_and_gives_torch_outputs(cls, args, kwargs, spatial,
                                                        torch_dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(len(spatial) + args[0])
    module = getattr(torch.nn, cls.__name__)(*args, **kwargs,
                                             dtype=getattr(torch, torch_dtype))
    layer = cls(*args, **kwargs, dtype=np.dtype(torch_dtype), rng=99)
    assert not np.allclose(layer.weight, module.weight.detach().numpy())  # not loaded yet
    layer.load_state_dict(module.state_dict())           # tensors, as they are
    x = np.random.default_rng(5).standard_normal((2, args[0]) + spatial).astype(torch_dtype)
    got = layer(x)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert got.dtype == np.dtype(torch_dtype) == layer.dtype
    tolerance = 1e-5 if torch_dtype == "float32" else 1e-12
    _close(got, expected, rtol=tolerance)
    # and the way back: our state_dict loads into torch and gives the same outputs
    other = getattr(torch.nn, cls.__name__)(*args, **kwargs, dtype=getattr(torch, torch_dtype))
    other.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    with torch.no_grad():
        _close(other(torch.from_numpy(x)).numpy(), expected, rtol=tolerance)


@pytest.mark.parametrize("cls, args, kwargs, spatial", STATE_CASES, ids=STATE_IDS)
def test_state_dict_keys_and_values(cls, args, kwargs, spatial):
    layer = cls(*args, **kwargs, rng=1)
    state = layer.state_dict()
    has_bias = kwargs.get("bias", True)
    assert list(state) == (["weight", "bias"] if has_bias else ["weight"])
    assert state["weight"] is layer.weight
    if has_bias:
        assert state["bias"] is layer.bias
    # a round trip through plain lists (anything np.asarray converts)
    fresh = cls(*args, **kwargs, rng=2)
    fresh.load_state_dict({key: value.tolist() for key, value in state.items()})
    np.testing.assert_array_equal(fresh.weight, layer.weight)
    x = np.random.default_rng(3).standard_normal((1, args[0]) + spatial)
    np.testing.assert_array_equal(fresh(x), layer(x))


def _snapshot(layer):
    return {key: (value, value.copy()) for key, value in layer.state_dict().items()}


def _assert_unchanged(layer, snapshot):
    assert list(layer.state_dict()) == list(snapshot)
    for key, (array, copy) in snapshot.items():
        assert layer.state_dict()[key] is array
        np.testing.assert_array_equal(array, copy)


@pytest.mark.parametrize("cls, args, kwargs, spatial", STATE_CASES, ids=STATE_IDS)
def test_load_state_dict_refuses_and_leaves_the_layer_unchanged(cls, args, kwargs, spatial):
    layer = cls(*args, **kwargs, rng=4)
    good = {key: value + 1 for key, value in layer.state_dict().items()}
    weight_shape = layer.weight.shape
    snapshot = _snapshot(layer)
    bad_mappings = [
        ({**good, "weight": np.ones(weight_shape[:-1])}, r"'weight'.*shape"),
        ({**good, "weight": np.ones((weight_shape[1], weight_shape[0]) + weight_shape[2:])
          if weight_shape[0] != weight_shape[1] else np.ones((1,) + weight_shape)},
         r"'weight'.*shape"),
        ({k: v for k, v in good.items() if k != "weight"}, r"missing key 'weight'"),
        ({**good, "running_mean": np.zeros(3)}, r"unexpected key 'running_mean'"),
        ({**good, "weight": good["weight"].astype(complex)}, r"weight"),
        ({**good, "weight": object()}, r"weight"),
    ]
    if "bias" in good:
        bad_mappings += [
            ({**good, "bias": np.ones(layer.out_channels + 1)}, r"'bias'.*shape"),
            ({"weight": good["weight"]}, r"missing key 'bias'"),
        ]
    else:
        bad_mappings.append(({**good, "bias": np.ones(layer.out_channels)},
                             r"unexpected key 'bias'"))
    for mapping, match in bad_mappings:
        with pytest.raises((ValueError, TypeError), match=match):
            layer.load_state_dict(mapping)
        _assert_unchanged(layer, snapshot)
    with pytest.raises(TypeError, match="mapping"):
        layer.load_state_dict([("weight", good["weight"])])
    _assert_unchanged(layer, snapshot)
    # the good one loads, as a copy in the layer's dtype
    layer.load_state_dict({key: value.astype(np.float64) for key, value in good.items()})
    for key, value in good.items():
        np.testing.assert_array_equal(layer.state_dict()[key], value)
        assert layer.state_dict()[key].dtype == np.float32
    good["weight"] += 1
    assert not np.array_equal(layer.weight, good["weight"])


def test_load_state_dict_refuses_a_tensor_that_requires_grad_by_name():
    torch = pytest.importorskip("torch")
    layer = stc.ConvTranspose1d(1, 1, 2, rng=0)
    snapshot = _snapshot(layer)
    state = {"weight": torch.ones(1, 1, 2, requires_grad=True), "bias": torch.zeros(1)}
    with pytest.raises(TypeError, match="'weight'"):
        layer.load_state_dict(state)
    _assert_unchanged(layer, snapshot)
    layer.load_state_dict({k: v.detach() for k, v in state.items()})
    np.testing.assert_array_equal(layer.weight, np.ones((1, 1, 2)))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_assigning_parameters_checks_shape_and_keeps_dtype(cls):
    rank = _rank(cls)
    layer = cls(4, 2, 3, groups=2, rng=0)
    shape = layer.weight.shape
    assert shape == ((4, 1) if _is_transposed(cls) else (2, 2)) + (3,) * rank
    snapshot = _snapshot(layer)
    for bad in (np.ones(shape[::-1]), np.ones(shape[:-1]), np.ones((1,) + shape), 1.0):
        with pytest.raises(ValueError, match=r"'weight' must have shape"):
            layer.weight = bad
        _assert_unchanged(layer, snapshot)
    for bad in (np.ones(3), np.ones((2, 1)), 0.5):
        with pytest.raises(ValueError, match=r"'bias' must have shape \(2,\)"):
            layer.bias = bad
        _assert_unchanged(layer, snapshot)
    with pytest.raises(TypeError, match="weight"):
        layer.weight = np.ones(shape, complex)
    assert layer.dtype == np.float32 and "dtype" not in repr(layer)

    # float64 weights: the layer says so, computes so, and its repr shows it.
    layer.weight = np.ones(shape)
    layer.bias = np.zeros(2)
    assert layer.weight.dtype == layer.dtype == np.float64
    assert "dtype=float64" in repr(layer)
    x = np.ones((1, 4) + (5,) * rank, np.float32)
    assert layer(x).dtype == np.float64
    # integer weights become float64; float16 becomes float32
    layer.weight = np.ones(shape, np.int64)
    assert layer.weight.dtype == np.float64
    layer.weight = np.ones(shape, np.float16)
    layer.bias = np.zeros(2, np.float32)
    assert layer.dtype == np.float32 and "dtype" not in repr(layer)

    # bias None: the repr, the state_dict and the forward follow
    layer.bias = None
    assert "bias=False" in repr(layer)
    assert list(layer.state_dict()) == ["weight"]
    reference_layer = cls(4, 2, 3, groups=2, bias=False, rng=0)
    reference_layer.weight = layer.weight
    np.testing.assert_array_equal(layer(x), reference_layer(x))
    layer.bias = [1.0, 2.0]
    assert "bias=True" in repr(layer) and list(layer.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=0), "kernel_size"), (dict(kernel_size=-1), "kernel_size"),
    (dict(stride=0), "stride"), (dict(dilation=0), "dilation"),
])
def test_constructor_refuses_non_positive_sizes(cls, kwargs, match):
    arguments = dict(in_channels=2, out_channels=2, kernel_size=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cls(**arguments)
