"""Layers with PyTorch's constructor signatures, in NumPy.

``ConvTranspose1d/2d/3d`` and ``Conv1d/2d/3d`` hold a weight and a bias initialised as
PyTorch does, run forward with ``layer(x)`` and backward with
``layer.backward(grad_output)``, which returns the input gradient and stores
``weight_grad`` and ``bias_grad`` (overwritten by each call, not accumulated).  The
forward call keeps a reference to its input for the backward pass.
``layer.matrix(input_shape)`` is the layer's sparse matrix (one sample, no bias).
``state_dict()`` and ``load_state_dict(mapping)`` use PyTorch's keys, so a
``torch.nn`` module's weights load as they are; ``weight`` and ``bias`` refuse an
array of the wrong shape when assigned.

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

import collections.abc
import math

import numpy as np
import scipy.sparse

from ._validation import as_int, as_tuple, check_memory, compute_dtype, padding_spec
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
        for what, values, minimum in (("kernel_size", self.kernel_size, 1),
                                      ("stride", self.stride, 1),
                                      ("dilation", self.dilation, 1),
                                      ("output_padding", self.output_padding, 0)):
            if min(values) < minimum:
                raise ValueError(f"{name}: {what} must be >= {minimum} on every axis, got "
                                 f"{what}={values}")
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
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype}")
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self._weight_shape = shape
        # PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5)) gives the bound
        # 1/sqrt(fan_in), fan_in = weight.shape[1] * prod(kernel); the bias uses the same.
        check_memory(f"{name}'s weight", shape, np.float64)  # drawn in float64
        rng = np.random.default_rng(rng)
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        self._weight = rng.uniform(-bound, bound, shape).astype(dtype)
        self._bias = (rng.uniform(-bound, bound, self.out_channels).astype(dtype)
                      if bias else None)
        self.weight_grad = self.bias_grad = None
        self._saved = None

    # -- parameters ------------------------------------------------------------

    def _weight_layout(self):
        if self.transposed:
            return "(in_channels, out_channels // groups, *kernel_size)"
        return "(out_channels, in_channels // groups, *kernel_size)"

    def _checked(self, key, value, what):
        """``value`` as an array of the shape ``key`` needs (float32/float64), or a
        ``ValueError``/``TypeError`` that names it."""
        name = type(self).__name__
        try:
            array = np.asarray(value)
        except Exception as error:  # e.g. a tensor that requires grad
            raise TypeError(f"{name}: {what} {key!r} cannot be converted to a NumPy array "
                            f"({type(error).__name__}: {error})") from None
        compute_dtype(array.dtype, f"{name}: {what} {key!r}")
        expected = self._weight_shape if key == "weight" else (self.out_channels,)
        if array.shape != expected:
            layout = self._weight_layout() if key == "weight" else "(out_channels,)"
            raise ValueError(f"{name}: {what} {key!r} must have shape {expected} "
                             f"{layout}, got shape {array.shape}")
        return array.astype(compute_dtype(array.dtype, key), copy=False)

    @property
    def weight(self):
        """The weight, ``(C_in, C_out // groups, *kernel)`` for a transposed layer and
        ``(C_out, C_in // groups, *kernel)`` for a convolution (PyTorch's layouts).
        Assigning an array of another shape raises ``ValueError``; float32 and float64
        are kept (integers become float64, float16 float32)."""
        return self._weight

    @weight.setter
    def weight(self, value):
        self._weight = self._checked("weight", value, "assigned")

    @property
    def bias(self):
        """The bias, ``(out_channels,)``, or ``None``.  Assigning another shape raises
        ``ValueError``; assigning ``None`` removes it."""
        return self._bias

    @bias.setter
    def bias(self, value):
        self._bias = None if value is None else self._checked("bias", value, "assigned")

    @property
    def dtype(self):
        """The dtype the layer computes in: that of its weight and bias together."""
        if self._bias is None:
            return self._weight.dtype
        return np.result_type(self._weight, self._bias)

    def state_dict(self):
        """The parameters under PyTorch's keys: ``{"weight": ..., "bias": ...}``.

        No ``"bias"`` when the layer has none.  The values are the layer's own arrays
        (as PyTorch returns its tensors, not copies): copy them to keep a snapshot.

        Examples
        --------
        >>> layer = ConvTranspose1d(2, 3, 4, bias=False, rng=0)
        >>> {key: value.shape for key, value in layer.state_dict().items()}
        {'weight': (2, 3, 4)}
        """
        state = {"weight": self._weight}
        if self._bias is not None:
            state["bias"] = self._bias
        return state

    def load_state_dict(self, state_dict):
        """Load ``{"weight": ..., "bias": ...}``, e.g. a ``torch.nn`` module's ``state_dict()``.

        Values may be anything ``np.asarray`` converts (NumPy arrays, lists, CPU
        tensors); they are copied into the layer's dtype, as PyTorch copies into its
        parameters.  A missing or unexpected key, or a value of the wrong shape, raises
        ``ValueError`` naming it, and the layer is left unchanged.

        Examples
        --------
        >>> import numpy as np
        >>> layer = Conv1d(1, 1, 2, rng=0)
        >>> layer.load_state_dict({"weight": [[[1.0, -1.0]]], "bias": [0.5]})
        >>> layer(np.array([[[3.0, 5.0, 4.0]]]))
        array([[[-1.5,  1.5]]])
        """
        name = type(self).__name__
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"{name}.load_state_dict needs a mapping such as "
                            f"{{'weight': ..., 'bias': ...}}, got {type(state_dict).__name__}")
        expected = ["weight"] + (["bias"] if self._bias is not None else [])
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing key{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing))}")
            if unexpected:
                parts.append(f"unexpected key{'s' if len(unexpected) > 1 else ''} "
                             f"{', '.join(map(repr, unexpected))}")
            raise ValueError(f"{name}.load_state_dict: {' and '.join(parts)}; this layer "
                             f"has {', '.join(map(repr, expected))}"
                             + ("" if self._bias is not None else " (bias=False)"))
        current = {"weight": self._weight, "bias": self._bias}
        loaded = {key: np.array(self._checked(key, state_dict[key], "state_dict entry"),
                                dtype=current[key].dtype, copy=True)
                  for key in expected}
        # Only now that every entry passed: the layer changes all at once or not at all.
        self._weight = loaded["weight"]
        if "bias" in loaded:
            self._bias = loaded["bias"]

    def __repr__(self):
        extra = f", output_padding={self.output_padding}" if self.transposed else ""
        dtype = "" if self.dtype == np.float32 else f", dtype={self.dtype.name}"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{extra}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}{dtype})")

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
