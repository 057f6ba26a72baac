"""Dask arrays in, lazy Dask arrays out.

Imported only when a public function is handed a ``dask.array.Array`` (the public
modules test for one through ``sys.modules``, without importing dask), so the core
never imports dask otherwise.

How a (transposed) convolution is split into blocks
---------------------------------------------------
Every operation here is one :class:`~sparsetconv.shapes.Geometry` applied in one of two
directions: *gather* (large side -> small side: a convolution, or the adjoint of a
transposed convolution) or *scatter* (small -> large: a transposed convolution, or the
adjoint of a convolution).  Per spatial axis, large and small positions are joined by
``large = small*stride - pad_begin + tap*dilation``, so for an output block ``[a, b)``
the input positions that reach it form one interval, computed here exactly:

- gather: ``[a*stride - pad_begin, (b-1)*stride - pad_begin + span)`` clipped to the
  input (``span = dilation*(kernel-1) + 1``); what the clipping cuts off is the block's
  own zero padding;
- scatter: the small positions ``i`` with ``a <= i*stride - pad_begin + tap*dilation < b``
  for some tap; their full local output is cropped to ``[a, b)`` (and, where no input
  reaches the block's first or last positions, extended by zeros).

Each output block's task assembles exactly that window from the input chunks it
overlaps -- where it needs only part of a chunk of ``SLAB_MIN_BYTES`` or more, a small
task cuts that part (the halo) out where the chunk lives, so only the halo moves --
runs the NumPy function on it with the block's own ``(begin, end)`` padding, and adds
the bias.  A block's memory is its window, its output and the kernels' workspace:
never proportional to the whole array.  Batch blocks map to batch blocks, channel axes
are whole in every block (weights are small).  Weight gradients are per-block partial
sums added by dask's tree reduction.
"""

import itertools
import math
from bisect import bisect_right
from functools import partial

import dask
import dask.array as da
import numpy as np
from dask.array.core import normalize_chunks
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import functional, gradients
from ._plan import check_backend, make_plan
from .functional import _is_dask as is_dask
from .shapes import resolve_conv


# ---------------------------------------------------------------------------
# Arguments


def _as_dask(array, name):
    """A dask array for ``array`` (dask arrays kept as they are); known chunk sizes."""
    if not is_dask(array):
        array = da.asarray(np.asarray(array))
    if any(math.isnan(size) for size in array.shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {array.shape}); call "
            f"{name}.compute_chunk_sizes() first"
        )
    return array


def _small_array(array, name):
    """A weight or bias: a dask array of one chunk (a NumPy one is put in the graph once)."""
    if array is None:
        return None
    if is_dask(array):
        return _as_dask(array, name).rechunk(array.shape)
    array = np.asarray(array)
    return da.from_array(array, chunks=array.shape)


def _shape_of(array):
    """Shape and dtype of an array argument, without computing a dask array."""
    if array is None:
        return None, None
    if not is_dask(array):
        array = np.asarray(array)
    return tuple(array.shape), array.dtype


def _single_key(array):
    return None if array is None else (array.name,) + (0,) * array.ndim


# ---------------------------------------------------------------------------
# Output chunks


def _bounds(chunks):
    """Chunk sizes -> cumulative boundaries ``[0, c0, c0 + c1, ..., total]``."""
    return [0] + list(itertools.accumulate(chunks))


def _proportional(chunks_in, size_out):
    """Chunks of an axis of ``size_out`` whose boundaries are those of ``chunks_in``
    scaled by ``size_out / size_in`` (rounded down); empty chunks dropped."""
    size_in = sum(chunks_in)
    bounds = [b * size_out // size_in for b in _bounds(chunks_in)]
    bounds[-1] = size_out
    return tuple(hi - lo for lo, hi in zip(bounds, bounds[1:]) if hi > lo) or (size_out,)


def _output_chunks(chunks, shape, default, channel_axis, dtype):
    """Normalise the user's ``chunks=`` for an output of ``shape`` (channel axis whole).

    ``chunks`` is anything :meth:`dask.array.Array.rechunk` takes; a dict leaves the
    axes it does not name at ``default``; an int or a string applies to the batch and
    spatial axes only.
    """
    ndim = len(shape)
    if chunks is None:
        return default
    if isinstance(chunks, dict):
        spec = list(default)
        for axis, value in chunks.items():
            if not isinstance(axis, int) or not -ndim <= axis < ndim:
                raise ValueError(f"chunks: axis {axis!r} is not an axis of the output "
                                 f"(shape {shape})")
            spec[axis % ndim] = value
    elif isinstance(chunks, (tuple, list)):
        if len(chunks) != ndim:
            raise ValueError(f"chunks must give one entry per output axis ({ndim}, shape "
                             f"{shape}), got chunks={chunks!r}")
        spec = list(chunks)
    else:  # an int, "auto", a byte size: batch and spatial axes
        spec = [chunks] * ndim
        spec[channel_axis] = -1
    try:
        normal = normalize_chunks(tuple(spec), shape, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"chunks={chunks!r} does not fit the output shape {shape}: "
                         f"{exc}") from None
    if normal[channel_axis] != (shape[channel_axis],):
        raise ValueError(
            f"the channel axis stays whole in every block: chunks for axis {channel_axis} "
            f"must be {shape[channel_axis]} (or -1), got {normal[channel_axis]}; rechunk "
            f"the result if you need channel chunks"
        )
    return normal


# ---------------------------------------------------------------------------
# Windows and pieces


def _window(a, b, stride, dilation, kernel, pad_begin, size_in, gather):
    """The input interval ``[lo, hi)`` that output block ``[a, b)`` reads on one axis,
    the block's local ``(begin, end)`` padding (a crop for scatter) and, for scatter,
    the zeros to add at each end of the local output."""
    span = dilation * (kernel - 1) + 1
    if gather:
        first, last = a * stride - pad_begin, (b - 1) * stride - pad_begin + span
        lo, hi = max(first, 0), min(last, size_in)
        return lo, hi, (lo - first, last - hi), (0, 0)
    lo = max(0, -(-(a + pad_begin - span + 1) // stride))
    hi = min(size_in, (b - 1 + pad_begin) // stride + 1)
    if hi <= lo:
        return lo, lo, (0, 0), (0, 0)
    start = lo * stride - pad_begin                 # where the local full output begins
    full = (hi - lo - 1) * stride + span
    crop_begin, crop_end = a - start, start + full - b
    return (lo, hi, (max(crop_begin, 0), max(crop_end, 0)),
            (max(-crop_begin, 0), max(-crop_end, 0)))


def _pieces(lo, hi, bounds):
    """The chunks that interval ``[lo, hi)`` overlaps: ``(chunk index, slice in the chunk,
    slice in the window)`` each."""
    pieces = []
    index = max(bisect_right(bounds, lo) - 1, 0)
    while index < len(bounds) - 1 and bounds[index] < hi:
        start, stop = max(lo, bounds[index]), min(hi, bounds[index + 1])
        if stop > start:
            pieces.append((index, slice(start - bounds[index], stop - bounds[index]),
                           slice(start - lo, stop - lo)))
        index += 1
    return pieces


# A chunk at least this large is not moved whole to a block that needs only part of it
# (its halo): a task cuts that part out where the chunk lives.  Below, one more task
# costs more than moving the chunk.
SLAB_MIN_BYTES = 1 << 20


class _Graph:
    """One operation's tasks: a block layer and, beside it, the layer of *slabs* -- the
    parts of input chunks that windows need where they do not need the whole chunk.
    A slab is cut (and copied) where its chunk lives, so only the halo moves between
    workers and no block task holds a neighbour's whole chunk (of ``SLAB_MIN_BYTES`` or
    more)."""

    def __init__(self, label, token):
        self.name = f"{label}-{token}"
        self.slab_name = f"{label}-halo-{token}"
        self.blocks, self.slabs = {}, {}

    def window(self, array, axis_pieces):
        """The dependencies of one window and, for each, ``(what to take of it, where it
        lands in the window)``: ``(keys, places)``; empty if any axis has no piece."""
        keys, places = [], []
        for combo in itertools.product(*axis_pieces):
            key = (array.name,) + tuple(p[0] for p in combo)
            src = tuple(p[1] for p in combo)
            shape = tuple(array.chunks[axis][p[0]] for axis, p in enumerate(combo))
            if any(s.stop - s.start != n for s, n in zip(src, shape)):
                if math.prod(shape) * array.dtype.itemsize >= SLAB_MIN_BYTES:
                    slab = (self.slab_name, len(self.slabs))
                    self.slabs[slab] = (partial(_slab, index=src), key)
                    key, src = slab, None
            else:
                src = None
            keys.append(key)
            places.append((src, tuple(p[2] for p in combo)))
        return keys, tuple(places)

    def array(self, chunks, dtype, collections):
        graph = HighLevelGraph.from_collections(self.name, self.blocks,
                                                dependencies=collections)
        if self.slabs:
            layers = dict(graph.layers)
            dependencies = {k: set(v) for k, v in graph.dependencies.items()}
            layers[self.slab_name] = self.slabs
            dependencies[self.slab_name] = set(dependencies[self.name])
            dependencies[self.name].add(self.slab_name)
            graph = HighLevelGraph(layers, dependencies)
        meta = np.empty((0,) * len(chunks), dtype)
        return da.Array(graph, self.name, chunks, meta=meta)


def _slab(chunk, *, index):
    """Part of a chunk, copied so that it does not keep the whole chunk alive."""
    return np.array(chunk[index], copy=True)


def _assemble(chunks, places, dtype):
    """The window from its pieces (a view of the piece where one piece is all of it);
    ``places``: per piece, the part of it to take (None: all) and where it goes."""
    pieces = [chunk if src is None else chunk[src] for chunk, (src, _) in zip(chunks, places)]
    if len(pieces) == 1:
        return np.asarray(pieces[0], dtype=dtype)
    dsts = [dst for _, dst in places]
    out = np.empty(tuple(max(d[axis].stop for d in dsts) for axis in range(len(dsts[0]))),
                   dtype)
    for piece, dst in zip(pieces, dsts):
        out[dst] = piece
    return out


def _axis_recipes(geometry, gather, in_chunks, out_chunks):
    """Per axis of ``(N, C, *spatial)`` and per output chunk of that axis:
    ``(pieces, padding, extend)``."""
    recipes = []
    batch_bounds = _bounds(in_chunks[0])
    recipes.append([(_pieces(lo, hi, batch_bounds), None, None)
                    for lo, hi in zip(_bounds(out_chunks[0]), _bounds(out_chunks[0])[1:])])
    channels = sum(in_chunks[1])
    recipes.append([(_pieces(0, channels, _bounds(in_chunks[1])), None, None)])
    size_in = geometry.large if gather else geometry.small
    for axis in range(geometry.rank):
        bounds_in, bounds_out = _bounds(in_chunks[2 + axis]), _bounds(out_chunks[2 + axis])
        axis_recipes = []
        for a, b in zip(bounds_out, bounds_out[1:]):
            lo, hi, padding, extend = _window(
                a, b, geometry.stride[axis], geometry.dilation[axis], geometry.kernel[axis],
                geometry.pad_begin[axis], size_in[axis], gather)
            axis_recipes.append((_pieces(lo, hi, bounds_in), padding, extend))
        recipes.append(axis_recipes)
    return recipes


def _own_blocks(chunks):
    """Per axis, per block of an array: the pieces of that block (channel chunks joined)."""
    recipes = []
    for axis, sizes in enumerate(chunks):
        bounds = _bounds(sizes)
        if axis == 1:
            recipes.append([_pieces(0, bounds[-1], bounds)])
        else:
            recipes.append([_pieces(lo, hi, bounds) for lo, hi in zip(bounds, bounds[1:])])
    return recipes


# ---------------------------------------------------------------------------
# Tasks (they run on the workers, on NumPy arrays)


def _conv_block(chunks, weight, bias, *, places, shape, dtype, gather, stride, dilation,
                groups, padding, extend, backend):
    """One output block: the NumPy function on the block's window."""
    if not chunks:  # nothing reaches this block: only the bias
        out = np.zeros(shape, dtype)
    else:
        x = _assemble(chunks, places, dtype)
        w = np.asarray(weight, dtype=dtype)
        if gather:
            out = functional.conv(x, w, None, stride, padding, dilation, groups,
                                  backend=backend)
        else:
            out = functional.conv_transpose(x, w, None, stride, padding, 0, groups,
                                            dilation, backend=backend)
            if any(extend):
                out = np.pad(out, ((0, 0), (0, 0)) + extend)
    if bias is not None:
        out += np.asarray(bias, dtype=dtype).reshape((-1,) + (1,) * (out.ndim - 2))
    return out


def _weight_block(small_chunks, large_chunks, weight, *, small_places, large_places, dtype,
                  stride, dilation, groups, padding, backend):
    """One block's share of the weight gradient (a leading axis of 1 for the sum)."""
    w = np.asarray(weight, dtype=dtype)
    if not small_chunks or not large_chunks:
        return np.zeros((1,) + w.shape, dtype)
    small = _assemble(small_chunks, small_places, dtype)
    large = _assemble(large_chunks, large_places, dtype)
    grad_weight = gradients.conv_backward(small, large, w, stride, padding, dilation, groups,
                                          needs=("weight",), backend=backend)[1]
    return grad_weight[None]


# ---------------------------------------------------------------------------
# Graph construction


def _map(x, weight, bias, geometry, gather, groups, dtype, out_chunks, backend, label):
    """``geometry`` applied to the dask array ``x`` ``(N, C, *spatial)`` block by block.

    ``weight`` and ``bias`` are one-chunk dask arrays (bias may be None); the result has
    ``out_chunks`` (channel axis whole).
    """
    recipes = _axis_recipes(geometry, gather, x.chunks, out_chunks)
    graph = _Graph(label, tokenize(x.name, weight.name, None if bias is None else bias.name,
                                   geometry, gather, groups, np.dtype(dtype).str,
                                   out_chunks, backend))
    weight_key, bias_key = _single_key(weight), _single_key(bias)
    for index in itertools.product(*(range(len(c)) for c in out_chunks)):
        recipe = [recipes[axis][i] for axis, i in enumerate(index)]
        shape = tuple(out_chunks[axis][i] for axis, i in enumerate(index))
        keys, places = ([], ()) if 0 in shape else graph.window(x, [r[0] for r in recipe])
        task = partial(_conv_block, places=places, shape=shape, dtype=dtype, gather=gather,
                       stride=geometry.stride, dilation=geometry.dilation, groups=groups,
                       padding=tuple(r[1] for r in recipe[2:]),
                       extend=tuple(r[2] for r in recipe[2:]), backend=backend)
        graph.blocks[(graph.name,) + index] = (task, keys, weight_key, bias_key)
    return graph.array(out_chunks, dtype, [x, weight] + ([] if bias is None else [bias]))


def _weight_gradient(small, large, weight, geometry, groups, dtype, backend):
    """The weight gradient: per block of the small side, the block's share (the small
    block against the large window it reads), summed by dask's tree reduction."""
    small_recipes = _own_blocks(small.chunks)
    large_recipes = _axis_recipes(geometry, True, large.chunks, small.chunks)
    graph = _Graph("sparsetconv-grad_weight",
                   tokenize(small.name, large.name, weight.name, geometry, groups,
                            np.dtype(dtype).str, backend))
    weight_key = _single_key(weight)
    blocks = [index for index in itertools.product(*(range(len(c)) for c in small.chunks))
              if index[1] == 0]   # channel chunks are joined, not split
    for count, index in enumerate(blocks):
        small_keys, small_places = graph.window(
            small, [small_recipes[axis][i] for axis, i in enumerate(index)])
        large_recipe = [large_recipes[axis][i] for axis, i in enumerate(index)]
        large_keys, large_places = graph.window(large, [r[0] for r in large_recipe])
        if not small_keys or not large_keys:
            small_keys = large_keys = []
        task = partial(_weight_block, small_places=small_places, large_places=large_places,
                       dtype=dtype, stride=geometry.stride, dilation=geometry.dilation,
                       groups=groups, padding=tuple(r[1] for r in large_recipe[2:]),
                       backend=backend)
        graph.blocks[(graph.name, count) + (0,) * weight.ndim] = (
            task, small_keys, large_keys, weight_key)
    chunks = ((1,) * len(blocks),) + tuple((size,) for size in weight.shape)
    partials = graph.array(chunks, dtype, [small, large, weight])
    return partials.sum(axis=0, dtype=dtype)


# ---------------------------------------------------------------------------
# Entry points (called by the public functions)


def apply(transposed, rank, input, weight, bias, stride, padding, output_padding, groups,
          dilation, output_size, backend, chunks):
    """``conv_transpose`` / ``conv`` of a dask array: validated exactly as for NumPy."""
    check_backend(backend)
    x = _as_dask(input, "input")
    weight_shape, weight_dtype = _shape_of(weight)
    bias_shape, bias_dtype = _shape_of(bias)
    plan = make_plan(transposed, rank, x.shape, x.dtype, weight_shape, weight_dtype,
                     bias_shape, bias_dtype, stride, padding, output_padding, groups,
                     dilation, output_size)
    unbatched = plan.batch is None
    xb = x[None] if unbatched else x
    out_spatial = plan.out_spatial
    default = ((xb.chunks[0], (plan.out_channels,))
               + tuple(_proportional(c, n) for c, n in zip(xb.chunks[2:], out_spatial)))
    visible = plan.output_shape
    out_chunks = _output_chunks(chunks, visible, default[1:] if unbatched else default,
                                0 if unbatched else 1, plan.dtype)
    if unbatched:
        out_chunks = ((1,),) + out_chunks
    if plan.batch == 0:
        return da.zeros(visible, dtype=plan.dtype, chunks=out_chunks)
    label = "conv_transpose" if transposed else "conv"
    out = _map(xb, _small_array(weight, "weight"), _small_array(bias, "bias"),
               plan.geometry, not transposed, plan.groups, plan.dtype, out_chunks, backend,
               f"sparsetconv-{label}")
    return out[0] if unbatched else out


def backward(transposed, grad_output, input, weight, stride, padding, output_padding,
             groups, dilation, needs, backend):
    """``conv_transpose_backward`` / ``conv_backward`` with dask arrays."""
    g = _as_dask(grad_output, "grad_output")
    x = _as_dask(input, "input")
    weight_shape, weight_dtype = _shape_of(weight)
    plan = gradients._backward_plan(transposed, g.shape, g.dtype, x.shape, x.dtype,
                                    weight_shape, weight_dtype, stride, padding,
                                    output_padding, groups, dilation)
    unbatched = plan.batch is None
    channel_axis = 0 if unbatched else 1
    grad_input = grad_weight = grad_bias = None
    if "bias" in needs:
        grad_bias = g.sum(axis=tuple(a for a in range(g.ndim) if a != channel_axis),
                          dtype=plan.dtype)
    if plan.batch == 0:
        if "input" in needs:
            grad_input = da.zeros(x.shape, dtype=plan.dtype, chunks=x.chunks)
        if "weight" in needs:
            grad_weight = da.zeros(weight_shape, dtype=plan.dtype, chunks=weight_shape)
        return grad_input, grad_weight, grad_bias
    gb, xb = (g[None], x[None]) if unbatched else (g, x)
    w = _small_array(weight, "weight")
    if "input" in needs:
        # The adjoint on the same geometry, chunked like the input (channels whole).
        chunks = (xb.chunks[0], (plan.in_channels,)) + xb.chunks[2:]
        grad_input = _map(gb, w, None, plan.geometry, transposed, plan.groups, plan.dtype,
                          chunks, backend, "sparsetconv-grad_input")
        if unbatched:
            grad_input = grad_input[0]
    if "weight" in needs:
        small, large = (xb, gb) if transposed else (gb, xb)
        grad_weight = _weight_gradient(small, large, w, plan.geometry, plan.groups,
                                       plan.dtype, backend)
    return grad_input, grad_weight, grad_bias


# ---------------------------------------------------------------------------
# deconvolve: LSQR and CG with dask arrays as vectors


def _sym_ortho(a, b):
    """Stable Givens rotation (as in scipy's LSQR): ``(c, s, r)``."""
    if b == 0:
        return np.sign(a), 0, abs(a)
    if a == 0:
        return 0, np.sign(b), abs(b)
    if abs(b) > abs(a):
        tau = a / b
        s = np.sign(b) / math.sqrt(1 + tau * tau)
        return s * tau, s, b / s
    tau = b / a
    c = np.sign(a) / math.sqrt(1 + tau * tau)
    return c, c * tau, a / c


def _sum_squares(*arrays):
    """``sum(a**2)`` of each array, computed together (one pass over the persisted data)."""
    return [float(v) for v in dask.compute(*[(a * a).sum() for a in arrays])]


def deconvolve(y, weight, stride, padding, dilation, groups, input_size, method, damp, tol,
               maxiter, return_info, unbatched):
    """``deconvolve`` of a dask array ``y`` (batched here): every vector a dask array,
    persisted each iteration so the graph stays one iteration deep."""
    y = _as_dask(y, "y")
    weight_shape, weight_dtype = _shape_of(weight)
    channels_in = weight_shape[1] * groups
    # The same validation (and errors) as the NumPy path's linear operator.
    make_plan(False, None, (1, channels_in) + input_size, np.dtype(np.float64), weight_shape,
              weight_dtype, None, None, stride, padding, 0, groups, dilation, None)
    if y.shape[1] != weight_shape[0]:
        raise ValueError(f"y has {y.shape[1]} channels (y.shape={y.shape}) but the weight "
                         f"has {weight_shape[0]} output channels (weight.shape="
                         f"{weight_shape})")
    geometry = resolve_conv(input_size, weight_shape[2:], stride, padding, dilation)
    w = _small_array(weight, "weight")
    dtype = np.dtype(np.float64)
    x_chunks = ((y.chunks[0], (channels_in,))
                + tuple(_proportional(c, n) for c, n in zip(y.chunks[2:], input_size)))
    y_chunks = (y.chunks[0], (weight_shape[0],)) + y.chunks[2:]

    def forward(v):
        return _map(v, w, None, geometry, True, groups, dtype, y_chunks, "auto",
                    "sparsetconv-deconvolve-A")

    def adjoint(u):
        return _map(u, w, None, geometry, False, groups, dtype, x_chunks, "auto",
                    "sparsetconv-deconvolve-AT")

    rhs = [dask.persist(y.astype(dtype).rechunk(y_chunks))[0]]
    n = y.shape[0] * channels_in * math.prod(input_size)
    if method == "lsqr":   # LSQR needs y only to start: it gets (and drops) the one reference
        x, info = _lsqr(forward, adjoint, rhs, x_chunks, damp, tol, tol,
                        2 * n if maxiter is None else maxiter)
    else:
        x, info = _cg(forward, adjoint, rhs.pop(), damp, tol,
                      n * 10 if maxiter is None else maxiter)
    if unbatched:
        x = x[0]
    return (x, info) if return_info else x


def _lsqr(forward, adjoint, b, x_chunks, damp, atol, btol, iter_lim, conlim=1e8):
    """scipy.sparse.linalg.lsqr (Paige & Saunders), step for step, on dask arrays;
    ``b`` is a one-item list holding the right-hand side.

    Only the scalars come back to the caller each iteration; ``u``, ``v``, ``w`` and
    ``x`` stay on the workers, persisted, and are never summed into a growing graph.
    """
    eps = np.finfo(np.float64).eps
    ctol = 1 / conlim if conlim > 0 else 0
    anorm = acond = ddnorm = res2 = xnorm = xxnorm = z = 0.0
    dampsq, cs2, sn2, istop, itn = damp ** 2, -1.0, 0.0, 0, 0
    shape = tuple(sum(c) for c in x_chunks)
    x = da.zeros(shape, dtype=np.float64, chunks=x_chunks)
    u = b.pop()   # the caller's only reference: y is freed once u moves on
    bnorm = beta = math.sqrt(_sum_squares(u)[0])
    alfa = 0.0
    v = x
    if beta > 0:
        u = u * (1 / beta)
        v, = dask.persist(adjoint(u))
        alfa = math.sqrt(_sum_squares(v)[0])
    if alfa > 0:
        v = v * (1 / alfa)
    w = v
    rhobar, phibar = alfa, beta
    rnorm = r1norm = beta
    if alfa * beta == 0:
        return x, _lsqr_info(istop, itn, r1norm)
    while itn < iter_lim:
        itn += 1
        u_next, = dask.persist(forward(v) - alfa * u)
        beta = math.sqrt(_sum_squares(u_next)[0])
        wnorm_sq = 0.0
        if beta > 0:
            u = u_next * (1 / beta)
            anorm = math.sqrt(anorm ** 2 + alfa ** 2 + beta ** 2 + dampsq)
            v_next, = dask.persist(adjoint(u) - beta * v)
            alfa_sq, wnorm_sq = _sum_squares(v_next, w)
            alfa = math.sqrt(alfa_sq)
            v = v_next * (1 / alfa) if alfa > 0 else v_next
        else:
            u = u_next
            wnorm_sq = _sum_squares(w)[0]
        if damp > 0:
            rhobar1 = math.sqrt(rhobar ** 2 + dampsq)
            cs1, sn1 = rhobar / rhobar1, damp / rhobar1
            psi, phibar = sn1 * phibar, cs1 * phibar
        else:
            rhobar1, psi = rhobar, 0.0
        cs, sn, rho = _sym_ortho(rhobar1, beta)
        theta, rhobar = sn * alfa, -cs * alfa
        phi, phibar = cs * phibar, sn * phibar
        tau = sn * phi
        t1, t2 = phi / rho, -theta / rho
        x, w = dask.persist(x + t1 * w, v + t2 * w)
        ddnorm += wnorm_sq / rho ** 2
        delta, gambar = sn2 * rho, -cs2 * rho
        rhs = phi - delta * z
        zbar = rhs / gambar
        xnorm = math.sqrt(xxnorm + zbar ** 2)
        gamma = math.sqrt(gambar ** 2 + theta ** 2)
        cs2, sn2 = gambar / gamma, theta / gamma
        z = rhs / gamma
        xxnorm += z ** 2
        acond = anorm * math.sqrt(ddnorm)
        res2 += psi ** 2
        rnorm = math.sqrt(phibar ** 2 + res2)
        arnorm = alfa * abs(tau)
        if damp > 0:
            r1sq = rnorm ** 2 - dampsq * xxnorm
            r1norm = math.copysign(math.sqrt(abs(r1sq)), r1sq)
        else:
            r1norm = rnorm
        test1 = rnorm / bnorm
        test2 = arnorm / (anorm * rnorm + eps)
        test3 = 1 / (acond + eps)
        t1 = test1 / (1 + anorm * xnorm / bnorm)
        rtol = btol + atol * anorm * xnorm / bnorm
        if itn >= iter_lim:
            istop = 7
        if 1 + test3 <= 1:
            istop = 6
        if 1 + test2 <= 1:
            istop = 5
        if 1 + t1 <= 1:
            istop = 4
        if test3 <= ctol:
            istop = 3
        if test2 <= atol:
            istop = 2
        if test1 <= rtol:
            istop = 1
        if istop != 0:
            break
    return x, _lsqr_info(istop, itn, r1norm)


def _lsqr_info(istop, itn, r1norm):
    return {"method": "lsqr", "iterations": int(itn), "residual_norm": float(r1norm),
            "converged": istop in (1, 2, 4, 5)}


def _cg(forward, adjoint, y, damp, tol, maxiter):
    """scipy.sparse.linalg.cg on the normal equations ``(A^T A + damp^2) x = A^T y``,
    step for step, on dask arrays."""
    def normal(p):
        return adjoint(forward(p)) + damp ** 2 * p

    b, = dask.persist(adjoint(y))
    bnorm = math.sqrt(_sum_squares(b)[0])
    atol = tol * bnorm
    x, status, iterations = b, 0, 0
    if bnorm != 0:
        x, r, p = da.zeros_like(b), b, None
        rho_prev = None
        status = maxiter
        for iteration in range(maxiter):
            rho_cur = _sum_squares(r)[0]          # also ||r||^2: one pass for both
            if math.sqrt(rho_cur) < atol:
                status = 0
                break
            p = r if iteration == 0 else r + (rho_cur / rho_prev) * p
            p, = dask.persist(p)
            q, = dask.persist(normal(p))
            alpha = rho_cur / float((p * q).sum().compute())
            x, r = dask.persist(x + alpha * p, r - alpha * q)
            rho_prev = rho_cur
            iterations += 1
    residual = math.sqrt(_sum_squares(forward(x) - y)[0])
    return x, {"method": "cg", "iterations": iterations, "residual_norm": residual,
               "converged": status == 0}
