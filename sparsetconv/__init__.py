"""sparsetconv: transposed convolution on NumPy arrays.

A convolution is a linear map, so it is a sparse matrix ``A``; the transposed
convolution is ``A.T``.  The library builds that matrix (:func:`conv_matrix`,
:func:`conv_transpose_matrix`), does the shape arithmetic (:func:`conv_transpose_output_size`,
:func:`output_padding_for`, :func:`inverse_conv_params`) and applies both operators
to NumPy arrays (:func:`conv_transpose`, :func:`conv` and their 1-D/2-D/3-D aliases).
"""

from ._threads import get_num_threads, openmp_enabled, set_num_threads, threads
from .functional import (
    conv,
    conv1d,
    conv2d,
    conv3d,
    conv_transpose,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from .explain import contributions, explain, output_terms
from .plotting import animate_zero_stuffed, plot_contributions, plot_matrix, plot_zero_stuffed
from .gradients import conv_backward, conv_transpose_backward
from .layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .linalg import ConvergenceWarning, as_linear_operator, deconvolve
from .matrix import conv_matrix, conv_transpose_matrix
from .shapes import (
    conv_output_size,
    conv_transpose_output_size,
    inverse_conv_params,
    output_padding_for,
)

from .verify import AdjointCheck, adjoint_check, gradcheck

__version__ = "0.1.0"

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d",
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_matrix", "conv_transpose_matrix",
    "conv_output_size", "conv_transpose_output_size", "inverse_conv_params",
    "output_padding_for", "openmp_enabled", "get_num_threads", "set_num_threads", "threads",
    "conv_transpose_backward", "conv_backward", "AdjointCheck", "adjoint_check", "gradcheck",
    "as_linear_operator", "deconvolve", "ConvergenceWarning",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "explain", "contributions", "output_terms", "plot_zero_stuffed", "animate_zero_stuffed",
    "plot_contributions", "plot_matrix",
]
