"""The matrix form: a convolution is a sparse matrix, its transpose is the transposed convolution.

For one sample, a convolution maps the flattened input ``x`` (``C_in * prod(in)``
numbers) to the flattened output by a matrix ``A``; the transposed convolution with
the same weight is ``A.T``.  :func:`conv_matrix` builds ``A`` and
:func:`conv_transpose_matrix` builds ``A.T`` *as the transpose* of the adjoint
convolution's matrix, so ``conv_transpose_matrix(...) == conv_matrix(...).T`` holds
entry for entry by construction.

Construction is vectorised NumPy with memory O(nnz).  The stored entries of a
convolution matrix factor: a row ``(channel, position)`` holds, for every channel
of its group on the other side, the Cartesian product over axes of the positions
the kernel reaches on that axis.  So the builder

1. lists, per axis, the ``(row, column, tap)`` triples of the 1-D relation
   ``large = small*stride - pad_begin + tap*dilation`` (tiny arrays);
2. takes their ragged Cartesian product: the spatial entries of every row;
3. expands that once by the channels of one group (one "row-channel block");
4. writes every row channel's indices and values straight into the final CSR
   arrays with one broadcast add and one ``np.take`` from the weight.

No COO triplets and no sort of the full matrix: peak memory is the matrix itself
plus one row-channel block.
"""

from __future__ import annotations

from math import prod
from typing import Sequence

import numpy as np
import scipy.sparse

from ._plan import make_plan
from ._typing import ArrayLike, IntOrTuple, Padding
from ._validation import as_int, as_shape, check_bytes

__all__ = ["conv_matrix", "conv_transpose_matrix"]

DEFAULT_MAX_NNZ = 2**28


def conv_matrix(input_shape: Sequence[int], weight: ArrayLike, stride: IntOrTuple = 1,
                padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *,
                max_nnz: int = DEFAULT_MAX_NNZ) -> scipy.sparse.csr_array:
    """Sparse matrix ``A`` of one sample's convolution (no bias).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C_in, *spatial)``: one sample's input shape.
    weight : array_like
        ``(C_out, C_in // groups, *kernel)``, PyTorch's convolution layout.
    stride, padding, dilation, groups
        As for :func:`sparsetconv.conv`.
    max_nnz : int, optional
        Refuse (``ValueError``, before allocating) a matrix with more stored entries.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(C_out * prod(out), C_in * prod(in))``, such that
        ``conv(x, w).reshape(N, -1) == (A @ x.reshape(N, -1).T).T``.
        Entries are stored wherever the kernel reaches, zeros of the weight included,
        with sorted column indices.

    Examples
    --------
    >>> import numpy as np
    >>> A = conv_matrix((1, 3), np.array([[[1.0, 2.0]]]))
    >>> A.toarray()
    array([[1., 2., 0.],
           [0., 1., 2.]])
    """
    max_nnz = _check_max_nnz(max_nnz)
    weight, plan = _weight_and_plan(False, input_shape, weight, stride, padding, 0, groups,
                                    dilation)
    return _operator_matrix(plan, weight, max_nnz)


def conv_transpose_matrix(input_shape: Sequence[int], weight: ArrayLike,
                          stride: IntOrTuple = 1, padding: Padding = 0,
                          output_padding: IntOrTuple = 0, groups: int = 1,
                          dilation: IntOrTuple = 1, *,
                          max_nnz: int = DEFAULT_MAX_NNZ) -> scipy.sparse.csr_array:
    """Sparse matrix of one sample's transposed convolution (no bias).

    It is built as the transpose of the matrix of the convolution this one is the
    adjoint of: the same weight array, stride, padding, dilation and groups, applied to
    an input of this operation's output shape.  Hence, exactly and entry for entry,
    ``conv_transpose_matrix(in_shape, w, ...) == conv_matrix(out_shape, w, ...).T``.
    (With ``output_padding >= stride``, possible only when ``dilation > stride``, that
    convolution has more output positions than this operation has inputs; the matrix
    is then the transpose of the rows of the first ones.)

    Parameters
    ----------
    input_shape : tuple of int
        ``(C_in, *spatial)`` of the transposed convolution's input.
    weight : array_like
        ``(C_in, C_out // groups, *kernel)``, PyTorch's transposed-convolution layout.
    stride, padding, output_padding, groups, dilation
        As for :func:`sparsetconv.conv_transpose`.
    max_nnz : int, optional
        Refuse (``ValueError``, before allocating) a matrix with more stored entries.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(C_out * prod(out), C_in * prod(in))``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[[1.0, 2.0]]])
    >>> conv_transpose_matrix((1, 2), w).toarray()
    array([[1., 0.],
           [2., 1.],
           [0., 2.]])
    >>> (conv_transpose_matrix((1, 2), w) != conv_matrix((1, 3), w).T).nnz
    0
    """
    max_nnz = _check_max_nnz(max_nnz)
    weight, plan = _weight_and_plan(True, input_shape, weight, stride, padding,
                                    output_padding, groups, dilation)
    return _operator_matrix(plan, weight, max_nnz)


def _check_max_nnz(max_nnz):
    max_nnz = as_int(max_nnz, "max_nnz")
    if max_nnz < 0:
        raise ValueError(f"max_nnz must be >= 0, got max_nnz={max_nnz}")
    return max_nnz


def _weight_and_plan(transposed, input_shape, weight, stride, padding, output_padding,
                     groups, dilation):
    from .functional import as_array

    weight = as_array(weight, "weight")
    input_shape = as_shape(input_shape, "input_shape")
    if len(input_shape) != weight.ndim - 1:
        raise ValueError(
            f"input_shape must be (C, *spatial) with {weight.ndim - 2} spatial sizes for "
            f"weight.shape={weight.shape}, got input_shape={input_shape}"
        )
    plan = make_plan(transposed, None, input_shape, None, weight.shape, weight.dtype, None,
                     None, stride, padding, output_padding, groups, dilation, None,
                     input_name="input_shape")
    return weight.astype(plan.dtype, copy=False), plan


def _operator_matrix(plan, weight, max_nnz=DEFAULT_MAX_NNZ):
    """The matrix of ``plan``'s own operator: ``A`` for a convolution, ``A.T`` for its transpose.

    ``weight`` must already have ``plan.dtype``.
    """
    if plan.transposed:
        return _adjoint_compressed(plan, weight, max_nnz).T
    return _forward_compressed(plan, weight, max_nnz)


def _forward_compressed(plan, weight, max_nnz):
    """``A`` in CSR: rows are the small side (convolution output) ``(channel, position)``."""
    g = plan.geometry
    shape = (plan.small_channels * prod(g.small), plan.large_channels * prod(g.large))
    data, indices, indptr = _compressed_rows(plan, weight, rows_small=True, max_nnz=max_nnz)
    return _finish(scipy.sparse.csr_array((data, indices, indptr), shape=shape))


def _adjoint_compressed(plan, weight, max_nnz):
    """``A`` in CSC (= ``A.T`` in CSR): compressed over the large side."""
    g = plan.geometry
    groups, small_per_group = plan.groups, plan.small_channels // plan.groups
    large_per_group = plan.large_channels // groups
    # Row weight for large-side rows: [c_large, c_small_in_group, taps] =
    # weight[group * small_per_group + c_small, c_large_in_group, taps].
    row_weight = (
        weight.reshape((groups, small_per_group, large_per_group) + g.kernel)
        .swapaxes(1, 2)
        .reshape((plan.large_channels, small_per_group) + g.kernel)
    )
    shape = (plan.small_channels * prod(g.small), plan.large_channels * prod(g.large))
    data, indices, indptr = _compressed_rows(plan, row_weight, rows_small=False,
                                             max_nnz=max_nnz)
    return _finish(scipy.sparse.csc_array((data, indices, indptr), shape=shape))


def _finish(matrix):
    # Indices are sorted and unique by construction; say so, so scipy never re-checks.
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def _compressed_rows(plan, row_weight, rows_small, max_nnz):
    """CSR arrays (data, indices, indptr) of the matrix whose rows are one side.

    ``row_weight`` is ``(row_channels, column_channels_per_group, *kernel)``: the value
    of the entry between row channel ``r`` and the ``c``-th column channel of its group
    at kernel tap ``t``.
    """
    g = plan.geometry
    row_channels, col_per_group = row_weight.shape[0], row_weight.shape[1]
    rows_per_group = row_channels // plan.groups
    col_spatial = prod(g.large if rows_small else g.small)
    n_rows = row_channels * prod(g.small if rows_small else g.large)
    n_cols = plan.groups * col_per_group * col_spatial

    # Count first (O(kernel) per axis), so an oversized request is refused before
    # anything proportional to the sizes is allocated.
    nnz = row_channels * col_per_group * prod(_axis_entry_count(g, axis)
                                              for axis in range(g.rank))
    if nnz > max_nnz:
        raise ValueError(
            f"the matrix would store {nnz:,} entries ({n_rows:,} x {n_cols:,}), over "
            f"max_nnz={max_nnz:,}; pass a larger max_nnz= if you have the memory "
            f"(about {nnz * (row_weight.itemsize + 4) / 2**30:.1f} GiB)"
        )
    index_dtype = np.int32 if max(nnz, n_rows, n_cols) < 2**31 else np.int64
    index_size = np.dtype(index_dtype).itemsize
    # Stored values and indices, the row pointers, the per-axis relations and one
    # row-channel block's tap indices.
    check_bytes(f"the sparse matrix of shape ({n_rows:,}, {n_cols:,}) with {nnz:,} stored "
                f"entries",
                nnz * (row_weight.itemsize + index_size + 8) + (n_rows + 1) * index_size
                + 24 * sum(g.small[a] + g.large[a] for a in range(g.rank)))
    axes = [_axis_relation(g, axis, rows_small) for axis in range(g.rank)]

    # Spatial entries of every spatial row: ragged product over the axes.
    sp_ptr, sp_col, sp_tap = axes[0]
    n_col_axis, n_tap_axis = _side(g, 0, rows_small)
    for axis in range(1, g.rank):
        n_col_next, n_tap_next = _side(g, axis, rows_small)
        sp_ptr, sp_col, sp_tap = _ragged_product(
            (sp_ptr, sp_col, sp_tap), axes[axis], n_col_next, n_tap_next
        )
        n_col_axis, n_tap_axis = n_col_axis * n_col_next, n_tap_axis * n_tap_next
    n_taps = n_tap_axis

    # One row-channel block: within a row the column channel is outermost (columns are
    # ravelled channel-major), so each spatial row expands to col_per_group runs of its
    # spatial entries.  Scatter each (channel, entry) pair to its place in the block.
    counts = np.diff(sp_ptr)
    per_entry_count = np.repeat(counts, counts)
    entry_start = np.repeat(sp_ptr[:-1], counts)
    base = col_per_group * entry_start + (np.arange(len(sp_col)) - entry_start)
    channel = np.arange(col_per_group)[:, None]
    destination = base[None, :] + channel * per_entry_count[None, :]
    block_len = col_per_group * len(sp_col)
    block_cols = np.empty(block_len, dtype=index_dtype)
    block_cols[destination] = channel * col_spatial + sp_col[None, :]
    block_taps = np.empty(block_len, dtype=np.intp)
    block_taps[destination] = channel * n_taps + sp_tap[None, :]
    del destination, base, per_entry_count, entry_start

    row_starts = (np.arange(row_channels, dtype=np.int64)[:, None] * block_len
                  + col_per_group * sp_ptr[None, :-1])
    indptr = np.empty(n_rows + 1, dtype=index_dtype)
    indptr[:-1] = row_starts.ravel()
    indptr[-1] = nnz

    col_offset = ((np.arange(row_channels) // rows_per_group) * (col_per_group * col_spatial))
    indices = np.empty((row_channels, block_len), dtype=index_dtype)
    np.add(block_cols[None, :], col_offset.astype(index_dtype)[:, None], out=indices)
    flat_weight = np.ascontiguousarray(row_weight).reshape(row_channels, col_per_group * n_taps)
    data = np.take(flat_weight, block_taps, axis=1)
    return data.reshape(-1), indices.reshape(-1), indptr


def _side(geometry, axis, rows_small):
    """(number of column positions, number of taps) of one axis."""
    cols = geometry.large[axis] if rows_small else geometry.small[axis]
    return cols, geometry.kernel[axis]


def _axis_entry_count(geometry, axis):
    """How many (small o, tap t) pairs of one axis land inside the large side."""
    small, large = geometry.small[axis], geometry.large[axis]
    stride, pad_begin = geometry.stride[axis], geometry.pad_begin[axis]
    count = 0
    for tap in range(geometry.kernel[axis]):
        offset = tap * geometry.dilation[axis] - pad_begin  # large = o*stride + offset
        first = max(0, -(offset // stride))
        last = min(small - 1, (large - 1 - offset) // stride)
        count += max(0, last - first + 1)
    return count


def _axis_relation(geometry, axis, rows_small):
    """One axis's ``(ptr, cols, taps)``: the 1-D relation grouped by row, sorted by column.

    Pairs ``(small o, tap t)`` reach ``large = o*stride - pad_begin + t*dilation`` when
    that lies inside ``[0, large)`` -- read off :meth:`Geometry.axis_relation`, which
    the compiled kernels use too (and which cannot overflow).
    """
    small, large = geometry.small[axis], geometry.large[axis]
    source = geometry.axis_relation(axis).source.T          # (small, kernel)
    o_idx, t_idx = np.nonzero(source >= 0)                  # by o, then t: p ascending
    p_idx = source[o_idx, t_idx]
    if rows_small:
        rows, cols, n_rows = o_idx, p_idx, small  # row-major nonzero: sorted by (o, p)
    else:
        order = np.lexsort((o_idx, p_idx))
        rows, cols, t_idx, n_rows = p_idx[order], o_idx[order], t_idx[order], large
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=ptr[1:])
    return ptr, cols.astype(np.int64), t_idx.astype(np.int64)


def _ragged_product(outer, inner, n_col_inner, n_tap_inner):
    """Cartesian product of two ragged row structures (``outer`` axis varies slowest).

    Row ``(a, b)`` (ravelled ``a * rows_inner + b``) holds every pair of an entry of
    row ``a`` and an entry of row ``b``, ordered outer-major, so sorted columns stay
    sorted.  Columns and taps combine as ravelled indices.
    """
    ptr_a, col_a, tap_a = outer
    ptr_b, col_b, tap_b = inner
    count_a, count_b = np.diff(ptr_a), np.diff(ptr_b)
    counts = np.multiply.outer(count_a, count_b).ravel()
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    row = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(ptr[-1]) - ptr[:-1][row]
    row_a, row_b = np.divmod(row, len(count_b))
    local_a, local_b = np.divmod(local, count_b[row_b])
    entry_a, entry_b = ptr_a[row_a] + local_a, ptr_b[row_b] + local_b
    return ptr, col_a[entry_a] * n_col_inner + col_b[entry_b], tap_a[entry_a] * n_tap_inner + tap_b[entry_b]
