"""The functional API against ``torch.nn.functional`` (results equal to float
rounding).  PyTorch takes only symmetric padding (an int or one int per
axis) and ``"same"`` only for a convolution with stride 1, so those are what is drawn.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import (
    SYMMETRIC_PADDING_KINDS,
    assert_matches,
    available_backends,
    conv_configs,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

FLOATS = (np.float32, np.float64)

# PyTorch's own performance note for padding="same" with even kernels.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TORCH_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
OURS_TRANSPOSE = {1: stc.conv_transpose1d, 2: stc.conv_transpose2d,
                  3: stc.conv_transpose3d}
OURS_CONV = {1: stc.conv1d, 2: stc.conv2d, 3: stc.conv3d}
TORCH_MODULE = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d,
                3: torch.nn.ConvTranspose3d}


def _t(array):
    """A float64 torch tensor of ``array``'s values (``None`` stays ``None``)."""
    if array is None:
        return None
    return torch.from_numpy(np.asarray(array, dtype=np.float64).copy())


def _torch_value(padding):
    return list(padding) if isinstance(padding, tuple) else padding


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_transpose_matches_torch(rank, data, dtype):
    cfg = data.draw(conv_configs(rank, transposed=True,
                                 padding_kinds=SYMMETRIC_PADDING_KINDS))
    x, w, b = cfg.arrays(dtype)
    with torch.no_grad():
        expected = TORCH_TRANSPOSE[rank](
            _t(x), _t(w), _t(b), _torch_value(cfg.stride), _torch_value(cfg.padding),
            _torch_value(cfg.output_padding), cfg.groups, _torch_value(cfg.dilation),
        ).numpy()
    assert expected.shape == cfg.output_shape
    for backend in available_backends():
        got = OURS_TRANSPOSE[rank](x, w, b, cfg.stride, cfg.padding, cfg.output_padding,
                                   cfg.groups, cfg.dilation, backend=backend)
        assert got.shape == expected.shape, (backend, cfg)
        assert got.dtype == dtype
        assert_matches(got, expected)


CONV_PADDING_KINDS = SYMMETRIC_PADDING_KINDS + ("same", "valid")


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_matches_torch(rank, data, dtype):
    cfg = data.draw(conv_configs(rank, transposed=False, padding_kinds=CONV_PADDING_KINDS,
                                 same_needs_stride_one=True))
    x, w, b = cfg.arrays(dtype)
    with torch.no_grad():
        expected = TORCH_CONV[rank](
            _t(x), _t(w), _t(b), _torch_value(cfg.stride), _torch_value(cfg.padding),
            _torch_value(cfg.dilation), cfg.groups,
        ).numpy()
    assert expected.shape == cfg.output_shape
    for backend in available_backends():
        got = OURS_CONV[rank](x, w, b, cfg.stride, cfg.padding, cfg.dilation, cfg.groups,
                              backend=backend)
        assert got.shape == expected.shape, (backend, cfg)
        assert got.dtype == dtype
        assert_matches(got, expected)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_same_stride_one_matches_torch(rank, kernel, dilation, backend):
    # Even kernels: PyTorch puts the odd extra padding at the end, as "same" does here.
    rng = np.random.default_rng(100 * rank + 10 * kernel + dilation)
    x = rng.standard_normal((2, 3) + (5, 4, 3)[:rank])
    w = rng.standard_normal((4, 3) + (kernel,) * rank)
    b = rng.standard_normal(4)
    with torch.no_grad():
        expected = TORCH_CONV[rank](_t(x), _t(w), _t(b), 1, "same", dilation).numpy()
    got = OURS_CONV[rank](x, w, b, 1, "same", dilation, backend=backend)
    assert got.shape == x.shape[:1] + (4,) + x.shape[2:]
    assert_matches(got, expected)


def test_seed_003_matches_torch(backend):
    x = np.ones((1, 1, 4, 4))
    w = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    with torch.no_grad():
        expected = F.conv_transpose2d(_t(x), _t(w), stride=2, padding=1).numpy()
    got = stc.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------
# output_size= against torch.nn.ConvTranspose*d.forward(x, output_size=...)

def _module(rank, w, b, stride, padding, groups, dilation):
    in_channels, per_group = w.shape[:2]
    module = TORCH_MODULE[rank](
        in_channels, per_group * groups, tuple(w.shape[2:]), stride=stride,
        padding=padding, groups=groups, bias=b is not None, dilation=dilation,
        dtype=torch.float64,
    )
    with torch.no_grad():
        module.weight.copy_(_t(w))
        if b is not None:
            module.bias.copy_(_t(b))
    return module


OUTPUT_SIZE_CASES = [
    # x shape, weight shape, stride, padding, groups, dilation, output_size
    ((1, 2, 3, 4), (2, 3, 3, 3), 2, 1, 1, 1, (6, 7)),       # needs output_padding (1, 0)
    ((1, 2, 3, 4), (2, 3, 3, 3), 2, 1, 1, 1, (6, 8)),       # (1, 1)
    ((1, 2, 3, 4), (2, 3, 3, 3), 2, 1, 1, 1, (5, 7)),       # (0, 0)
    ((2, 4, 3, 2), (4, 1, 2, 3), (3, 2), (0, 1), 2, (1, 2), (10, 6)),   # (2, 1)
    ((2, 4, 3, 2), (4, 1, 2, 3), (3, 2), (0, 1), 2, (1, 2), (9, 5)),    # (1, 0)
    ((2, 4, 3, 2), (4, 1, 2, 3), (3, 2), (0, 1), 2, (1, 2), (2, 2, 8, 6)),  # with N, C
    ((1, 1, 12, 16), (1, 1, 3, 3), 2, 1, 1, 1, (24, 32)),   # ConvTranspose3d(k3, s2, p1, op1)'s sizes, in 2-D
]


@pytest.mark.parametrize("case", OUTPUT_SIZE_CASES)
def test_output_size_matches_torch_module(case, backend):
    x_shape, w_shape, stride, padding, groups, dilation, size = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * groups)
    module = _module(2, w, b, stride, padding, groups, dilation)
    with torch.no_grad():
        expected = module(_t(x), output_size=list(size)).numpy()
    got = stc.conv_transpose2d(x, w, b, stride, padding, groups=groups, dilation=dilation,
                               output_size=size, backend=backend)
    assert got.shape == expected.shape
    assert got.shape[-2:] == tuple(size[-2:])
    assert_matches(got, expected)


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_output_size_random_matches_torch_module(rank, data):
    cfg = data.draw(conv_configs(rank, transposed=True,
                                 padding_kinds=SYMMETRIC_PADDING_KINDS))
    x, w, b = cfg.arrays(np.float64)
    stride = np.broadcast_to(cfg.stride, (rank,))
    # PyTorch's reachable sizes: base .. base + stride - 1 (output_padding < stride).
    base = [o - op for o, op in zip(cfg.out_size,
                                    np.broadcast_to(cfg.output_padding, (rank,)))]
    assume(all(max(bs, 1) <= bs + s - 1 for bs, s in zip(base, stride)))
    size = tuple(data.draw(st.integers(max(bs, 1), bs + int(s) - 1))
                 for bs, s in zip(base, stride))
    if data.draw(st.booleans()):
        size = (cfg.batch, cfg.out_channels) + size
    module = _module(rank, w, b, _torch_value(cfg.stride), _torch_value(cfg.padding),
                     cfg.groups, _torch_value(cfg.dilation))
    with torch.no_grad():
        expected = module(_t(x), output_size=list(size)).numpy()
    for backend in available_backends():
        got = stc.conv_transpose(x, w, b, cfg.stride, cfg.padding, groups=cfg.groups,
                                 dilation=cfg.dilation, output_size=size, backend=backend)
        assert got.shape == expected.shape
        assert got.shape[-rank:] == size[-rank:]
        assert_matches(got, expected)
