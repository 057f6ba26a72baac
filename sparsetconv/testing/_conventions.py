"""Adapters: how the arrays and arguments a user's function takes differ from PyTorch's.

- ``layout``: ``"channels_first"`` (``(N, C, *spatial)``) or ``"channels_last"``
  (``(N, *spatial, C)``) for the input, the output and the output gradient.
- ``weight_layout``: the order of the weight's axes, written with ``I`` (the axis of
  the operation's input channels), ``O`` (its output channels) and ``...`` (the kernel's
  spatial axes, in order), or a framework's name.
- ``output_shape``: the function takes the output's shape where PyTorch takes
  ``output_padding``.
"""

from dataclasses import dataclass

import numpy as np

LAYOUTS = ("channels_first", "channels_last")

# (transposed convolution, convolution)
WEIGHT_LAYOUTS = {
    "torch": ("IO...", "OI..."),
    "onnx": ("IO...", "OI..."),
    # The forward convolution's (*kernel, in, out) kernel: tf.nn.conv2d_transpose's
    # filters (kH, kW, C_out, C_in), and jax.lax.conv_transpose's with
    # transpose_kernel=True and the default dimension numbers.
    "tensorflow": ("...OI", "...IO"),
    "jax": ("...OI", "...IO"),
}


def weight_layout_string(weight_layout, transposed):
    """Normalise a ``weight_layout`` argument to a string of ``I``, ``O`` and ``...``."""
    if not isinstance(weight_layout, str):
        raise TypeError(f"weight_layout must be a string, got {weight_layout!r}")
    if weight_layout.lower() in WEIGHT_LAYOUTS:
        return WEIGHT_LAYOUTS[weight_layout.lower()][0 if transposed else 1]
    letters = weight_layout.upper().replace(" ", "")
    if sorted(letters.replace("...", "S")) != ["I", "O", "S"]:
        raise ValueError(
            f"weight_layout must be one of {sorted(WEIGHT_LAYOUTS)} or an order of 'I', "
            f"'O' and '...' (the spatial axes) such as 'IO...' or '...OI', "
            f"got {weight_layout!r}")
    return letters


@dataclass(frozen=True)
class Convention:
    """How ``fn`` takes its arrays; see the module docstring."""

    layout: str = "channels_first"
    weight_layout: str = "torch"
    output_shape: bool = False
    convert: object = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        weight_layout_string(self.weight_layout, True)  # validate early
        if self.convert is not None and not callable(self.convert):
            raise TypeError(f"convert must be callable, got {self.convert!r}")

    # -- activations (input, output, output gradient) ------------------------
    def _channel_axis(self, ndim, rank):
        return ndim - rank - 1

    def activation_shape(self, shape, rank):
        """A channels-first shape in this layout."""
        if self.layout == "channels_first":
            return tuple(shape)
        c = self._channel_axis(len(shape), rank)
        return tuple(shape[:c]) + tuple(shape[c + 1:]) + (shape[c],)

    def to_user(self, array, rank):
        if self.layout == "channels_first":
            return array
        return np.moveaxis(array, self._channel_axis(array.ndim, rank), -1)

    def from_user(self, array, rank):
        if self.layout == "channels_first":
            return array
        return np.moveaxis(array, -1, self._channel_axis(array.ndim, rank))

    def activation_index(self, index, rank):
        """A channels-first index (tuple) in this layout."""
        return self.activation_shape(index, rank)

    # -- weights ---------------------------------------------------------------
    def weight_axes(self, transposed, rank):
        """``perm`` with ``user_weight = torch_weight.transpose(perm)``."""
        letters = weight_layout_string(self.weight_layout, transposed)
        torch_letters = "IO" if transposed else "OI"
        perm = []
        position = 0
        while position < len(letters):
            if letters.startswith("...", position):
                perm += range(2, 2 + rank)
                position += 3
            else:
                perm.append(torch_letters.index(letters[position]))
                position += 1
        return tuple(perm)

    def weight_shape(self, shape, transposed, rank):
        return tuple(shape[p] for p in self.weight_axes(transposed, rank))

    def weight_to_user(self, weight, transposed, rank):
        return np.transpose(weight, self.weight_axes(transposed, rank))

    def weight_from_user(self, weight, transposed, rank):
        return np.transpose(weight, np.argsort(self.weight_axes(transposed, rank)))

    def weight_index(self, index, transposed, rank):
        return self.weight_shape(index, transposed, rank)
