"""Layers with PyTorch's constructor signatures, in NumPy (SPEC section 6).

``ConvTranspose1d/2d/3d`` and ``Conv1d/2d/3d`` hold a weight and a bias initialised as
PyTorch does, run forward with ``layer(x)`` and backward with
``layer.backward(grad_output)``, which returns the input gradient and stores
``weight_grad`` and ``bias_grad`` (overwritten by each call, not accumulated).  The
forward call keeps a reference to its input for the backward pass.
``layer.matrix(input_shape)`` is the layer's sparse matrix (one sample, no bias).

Example: a two-layer generator, forward and backward.

>>> import numpy as np
>>> up1 = ConvTranspose2d(8, 4, 4, stride=2, padding=1, rng=0)
>>> up2 = ConvTranspose2d(4, 1, 4, stride=2, padding=1, rng=1)
>>> z = np.random.default_rng(2).standard_normal((2, 8, 4, 4)).astype(np.float32)
>>> image = up2(np.maximum(up1(z), 0))
>>> image.shape
(2, 1, 16, 16)
>>> g = up2.backward(np.ones_like(image))       # d sum(image) / d (hidden)
>>> up2.weight_grad.shape, g.shape
((4, 1, 4, 4), (2, 4, 8, 8))
"""

import math

import numpy as np
import scipy.sparse

from ._validation import as_int, as_tuple, check_memory, padding_spec
from .functional import conv, conv_transpose
from .gradients import conv_backward, conv_transpose_backward
from .matrix import conv_matrix, conv_transpose_matrix
from .shapes import _check_output_padding, _hyper, output_padding_for, resolve_conv

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d"]

# PyTorch's padding modes and the numpy.pad modes that do the same.
_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class _ConvLayerBase:
    """What convolution and transposed-convolution layers share."""

    rank = None
    transposed = None

    def _setup(self, in_channels, out_channels, kernel_size, stride, padding,
               output_padding, dilation, groups, bias, padding_mode, device, dtype, rng):
        name = type(self).__name__
        self.in_channels = as_int(in_channels, "in_channels")
        self.out_channels = as_int(out_channels, "out_channels")
        self.groups = as_int(groups, "groups")
        if self.in_channels < 1 or self.out_channels < 1 or self.groups < 1:
            raise ValueError(f"{name}: in_channels, out_channels and groups must be >= 1, "
                             f"got {in_channels}, {out_channels}, {groups}")
        for what, value in (("in_channels", self.in_channels),
                            ("out_channels", self.out_channels)):
            if value % self.groups:
                raise ValueError(f"{name}: {what}={value} must be divisible by "
                                 f"groups={self.groups}")
        # Checked as the functions check them (kernel, stride, dilation >= 1, padding
        # >= 0, output_padding < max(stride, dilation)), so bad values fail here.
        self.kernel_size, self.stride, self.dilation = _hyper(self.rank, kernel_size, stride,
                                                              dilation)
        self.output_padding = as_tuple(output_padding, self.rank, "output_padding")
        _check_output_padding(self.output_padding, self.stride, self.dilation)
        padding_spec(padding, self.rank)
        self.padding = padding if isinstance(padding, str) else (
            padding if isinstance(padding, (tuple, list)) else as_tuple(padding, self.rank,
                                                                        "padding"))
        if padding_mode != "zeros" and (self.transposed or padding_mode not in _NUMPY_PAD_MODES):
            allowed = "'zeros'" if self.transposed else "'zeros', 'reflect', 'replicate', 'circular'"
            raise ValueError(f"{name}: padding_mode must be one of {allowed}, got "
                             f"{padding_mode!r}")
        self.padding_mode = padding_mode
        if device not in (None, "cpu"):
            raise ValueError(f"{name}: device must be None or 'cpu' (NumPy arrays), got {device!r}")
        self.dtype = np.dtype(np.float32 if dtype is None else dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{name}: dtype must be float32 or float64, got {self.dtype}")
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        # PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5)) gives the bound
        # 1/sqrt(fan_in), fan_in = weight.shape[1] * prod(kernel); the bias uses the same.
        check_memory(f"{name}'s weight", shape, np.float64)  # drawn in float64
        rng = np.random.default_rng(rng)
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        self.weight = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (rng.uniform(-bound, bound, self.out_channels).astype(self.dtype)
                     if bias else None)
        self.weight_grad = self.bias_grad = None
        self._saved = None

    def __repr__(self):
        extra = f", output_padding={self.output_padding}" if self.transposed else ""
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{extra}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None})")

    def _needs(self):
        return ("input", "weight", "bias") if self.bias is not None else ("input", "weight")

    def _check_backward(self, grad_output):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward call first")
        return np.asarray(grad_output)


class _ConvTransposeLayer(_ConvLayerBase):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=np.float32, rng=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                    dilation, groups, bias, padding_mode, device, dtype, rng)

    def __call__(self, x, output_size=None):
        """Forward: ``conv_transpose(x, weight, bias, ...)``; ``output_size`` as in PyTorch."""
        x = np.asarray(x)
        out = conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                             self.output_padding, self.groups, self.dilation,
                             output_size=output_size)
        # The output_padding this call used (output_size may have chosen it).
        used = output_padding_for(x.shape[-self.rank:], out.shape[-self.rank:],
                                  self.kernel_size, self.stride, self.padding, self.dilation)
        self._saved = (x, used)
        return out

    def backward(self, grad_output):
        """Input gradient; stores ``weight_grad`` and ``bias_grad``."""
        grad_output = self._check_backward(grad_output)
        x, output_padding = self._saved
        grad_input, self.weight_grad, self.bias_grad = conv_transpose_backward(
            grad_output, x, self.weight, self.stride, self.padding, output_padding,
            self.groups, self.dilation, needs=self._needs())
        return grad_input

    def matrix(self, input_shape):
        """The layer's ``scipy.sparse.csr_array`` for one sample of ``(C_in, *spatial)``."""
        return conv_transpose_matrix(input_shape, self.weight, self.stride, self.padding,
                                     self.output_padding, self.groups, self.dilation)


class _ConvLayer(_ConvLayerBase):
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=np.float32, rng=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding, 0, dilation,
                    groups, bias, padding_mode, device, dtype, rng)

    def __call__(self, x, output_size=None):
        """Forward: ``conv(x, weight, bias, ...)`` (``output_size``, if given, is checked)."""
        x = np.asarray(x)
        padded, padding = self._pad(x)
        out = conv(padded, self.weight, self.bias, self.stride, padding, self.dilation,
                   self.groups)
        if output_size is not None and tuple(output_size)[-self.rank:] != out.shape[-self.rank:]:
            raise ValueError(f"output_size {tuple(output_size)} does not match this "
                             f"convolution's output {out.shape}")
        self._saved = (x, padded, padding)
        return out

    def backward(self, grad_output):
        """Input gradient; stores ``weight_grad`` and ``bias_grad``."""
        grad_output = self._check_backward(grad_output)
        x, padded, padding = self._saved
        grad_padded, self.weight_grad, self.bias_grad = conv_backward(
            grad_output, padded, self.weight, self.stride, padding, self.dilation,
            self.groups, needs=self._needs())
        if self.padding_mode == "zeros":
            return grad_padded
        matrix = self._padding_matrix(x.shape[-self.rank:])
        lead = grad_padded.shape[:-self.rank]
        flat = grad_padded.reshape(-1, matrix.shape[0])
        return np.asarray(flat @ matrix).reshape(lead + x.shape[-self.rank:]).astype(
            grad_padded.dtype, copy=False)

    def matrix(self, input_shape):
        """The layer's ``scipy.sparse.csr_array`` for one sample of ``(C_in, *spatial)``."""
        input_shape = tuple(input_shape)
        if self.padding_mode == "zeros":
            return conv_matrix(input_shape, self.weight, self.stride, self.padding,
                               self.dilation, self.groups)
        pairs = self._pairs(input_shape[1:])
        padded_spatial = tuple(n + b + e for n, (b, e) in zip(input_shape[1:], pairs))
        inner = conv_matrix((input_shape[0],) + padded_spatial, self.weight, self.stride, 0,
                            self.dilation, self.groups)
        per_channel = self._padding_matrix(input_shape[1:])
        block = scipy.sparse.block_diag([per_channel] * input_shape[0], format="csr")
        return scipy.sparse.csr_array(inner @ block)

    # -- non-zero padding modes: pad explicitly, convolve without padding ----------

    def _pairs(self, spatial):
        geometry = resolve_conv(tuple(spatial), self.kernel_size, self.stride, self.padding,
                                self.dilation)
        return tuple(zip(geometry.pad_begin, geometry.pad_end))

    def _pad(self, x):
        if self.padding_mode == "zeros":
            return x, self.padding
        pairs = self._pairs(x.shape[-self.rank:])
        widths = [(0, 0)] * (x.ndim - self.rank) + list(pairs)
        return np.pad(x, widths, mode=_NUMPY_PAD_MODES[self.padding_mode]), 0

    def _padding_matrix(self, spatial):
        """Sparse (padded positions x positions) 0/1 matrix of the padding mode: the
        padded array is ``P @ x``, so the gradient folds back as ``g @ P``."""
        spatial = tuple(spatial)
        pairs = self._pairs(spatial)
        source = np.pad(np.arange(math.prod(spatial)).reshape(spatial), pairs,
                        mode=_NUMPY_PAD_MODES[self.padding_mode]).ravel()
        return scipy.sparse.csr_array(
            (np.ones(source.size), (np.arange(source.size), source)),
            shape=(source.size, math.prod(spatial)))


def _layer(base, rank, name):
    doc = (f"{rank}-D {'transposed ' if base.transposed else ''}convolution layer with "
           f"``torch.nn.{name}``'s constructor signature (plus ``dtype=np.float32`` and "
           f"``rng=None``), weight and bias initialised as PyTorch does.  See the module "
           f"docstring of :mod:`sparsetconv.layers`.")
    return type(name, (base,), {"rank": rank, "__doc__": doc, "__module__": __name__})


Conv1d = _layer(_ConvLayer, 1, "Conv1d")
Conv2d = _layer(_ConvLayer, 2, "Conv2d")
Conv3d = _layer(_ConvLayer, 3, "Conv3d")
ConvTranspose1d = _layer(_ConvTransposeLayer, 1, "ConvTranspose1d")
ConvTranspose2d = _layer(_ConvTransposeLayer, 2, "ConvTranspose2d")
ConvTranspose3d = _layer(_ConvTransposeLayer, 3, "ConvTranspose3d")
