"""Pictures of transposed convolution (matplotlib, the optional ``plot`` extra).

- :func:`plot_zero_stuffed`: the equivalent stride-1 convolution -- the input cells
  spread ``stride`` apart with zeros between them, the implicit padding (or, where its
  amount is negative, the cropped border) and the flipped kernel over the cells one
  output reads; :func:`animate_zero_stuffed` slides it over every output as a GIF.
- :func:`plot_contributions`: each input element's buffer ``input[i] * kernel`` on
  the output grid, and their sum.
- :func:`plot_matrix`: the convolution's sparse matrix next to its transpose.

Every function returns the matplotlib ``Figure`` it drew on (a new one unless ``ax=``
or ``fig=`` is given) and writes a file only when ``path=`` asks for one.
"""

import itertools
import math

import numpy as np

from .shapes import resolve_conv, resolve_conv_transpose

__all__ = ["plot_zero_stuffed", "animate_zero_stuffed", "plot_contributions", "plot_matrix"]

# Beyond these a picture is unreadable (and slow to draw): refuse with a clear error.
_MAX_CELLS = 2500
_MAX_FRAMES = 400
_MAX_PANELS = 64
_MAX_MATRIX = 2000

_COLOURS = {
    "input": "#9ecae1", "zero": "#ffffff", "padding": "#eeeeee", "cropped": "#fcbba1",
    "output": "#c7e9c0", "output-current": "#41ab5d", "kernel": "#fd8d3c",
}


_MISSING = ("the pictures need matplotlib: pip install 'sparsetconv[plot]' "
            "(or pip install matplotlib)")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(_MISSING) from None
    return plt


def _new_figure(figsize):
    return _pyplot().figure(figsize=figsize, layout="constrained")


def _colour_scale(*arrays):
    """One colour scale for every panel: sequential from 0 when nothing is negative,
    else diverging and symmetric about 0 (so 0 looks the same everywhere)."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values)]
    top = float(np.abs(values).max()) if values.size else 0.0
    top = top or 1.0
    if values.size == 0 or values.min() >= 0:
        return dict(cmap="Reds", vmin=0.0, vmax=top)
    return dict(cmap="coolwarm", vmin=-top, vmax=top)


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)


def _join(values):
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _describe(g):
    """``kernel 3, stride 2, padding 1`` in the caller's rank (1-D shows no pairs)."""
    pairs = list(zip(g.pad_begin, g.pad_end))
    if all(b == e for b, e in pairs):
        padding = _join(tuple(b for b, _ in pairs))
    else:
        padding = " x ".join(f"({b}, {e})" for b, e in pairs)
    words = [f"kernel {_join(g.kernel)}", f"stride {_join(g.stride)}", f"padding {padding}"]
    if any(g.output_padding):
        words.append(f"output_padding {_join(g.output_padding)}")
    if any(d != 1 for d in g.dilation):
        words.append(f"dilation {_join(g.dilation)}")
    return ", ".join(words)


def _index_text(index):
    return ", ".join(map(str, index))


# ---------------------------------------------------------------------------
# The zero-stuffed picture

class _ZeroStuffed:
    """Cell layout of the equivalent stride-1 convolution, per axis.

    On each axis the stuffed input has ``(n - 1)*stride + 1`` cells (input ``j`` at
    ``j*stride``), padded by ``before = dilation*(kernel - 1) - pad_begin`` and
    ``after = dilation*(kernel - 1) - pad_end + output_padding``.  Frame position
    ``p`` (0 ... out + dilation*(kernel - 1) - 1) holds stuffed cell ``p - before``;
    a negative amount leaves stuffed cells outside the frame: cropped.  Output ``o``
    reads frame positions ``o + t*dilation`` with the flipped tap
    ``kernel - 1 - t``.
    """

    def __init__(self, geometry):
        g = self.geometry = geometry
        if g.rank not in (1, 2):
            raise ValueError(f"plot_zero_stuffed draws 1-D and 2-D transposed convolutions, "
                             f"got {g.rank} spatial axes (draw one slice of each axis)")
        self.stuffed = tuple((n - 1) * s + 1 for n, s in zip(g.small, g.stride))
        self.before = tuple(d * (k - 1) - pb for d, k, pb in zip(g.dilation, g.kernel,
                                                                  g.pad_begin))
        self.frame = tuple(o + d * (k - 1) for o, d, k in zip(g.large, g.dilation, g.kernel))
        self.lo = tuple(min(0, b) for b in self.before)
        self.hi = tuple(max(f, b + n) for f, b, n in zip(self.frame, self.before, self.stuffed))
        # 1-D is drawn as one row: lift every per-axis tuple to (row, column).
        lift = (lambda t, unit: (unit,) + tuple(t)) if g.rank == 1 else (lambda t, unit: tuple(t))
        self.rows_cols = dict(
            stuffed=lift(self.stuffed, 1), before=lift(self.before, 0),
            frame=lift(self.frame, 1), lo=lift(self.lo, 0), hi=lift(self.hi, 1),
            out=lift(g.large, 1), stride=lift(g.stride, 1), dilation=lift(g.dilation, 1),
            kernel=lift(g.kernel, 1))
        cells = math.prod(h - lo for h, lo in zip(self.hi, self.lo)) + math.prod(g.large)
        if cells > _MAX_CELLS:
            raise ValueError(f"that picture would have {cells} cells (more than "
                             f"{_MAX_CELLS}): use smaller sizes -- the pattern repeats")
        self.overlay = []

    def kind(self, row, col):
        """``(kind, input_index)`` of the cell at frame position ``(row, col)``, or
        ``None`` where nothing is drawn."""
        rc = self.rows_cols
        kinds, index = [], []
        for axis, p in enumerate((row, col)):
            q = p - rc["before"][axis]
            inside = 0 <= p < rc["frame"][axis]
            stuffed = 0 <= q < rc["stuffed"][axis]
            kinds.append((inside, stuffed, stuffed and q % rc["stride"][axis] == 0))
            index.append(q // rc["stride"][axis])
        inside = all(k[0] for k in kinds)
        stuffed = all(k[1] for k in kinds)
        if not inside and not stuffed:
            return None
        is_input = all(k[2] for k in kinds)
        if not inside:
            return ("cropped", tuple(index) if is_input else None)
        if not stuffed:
            return ("padding", None)
        return ("input", tuple(index)) if is_input else ("zero", None)

    def _input_label(self, index):
        return "x" + ",".join(map(str, index[-self.geometry.rank:]))

    def draw(self, ax, own_figure=False, title=True):
        from matplotlib.patches import Patch, Rectangle

        rc = self.rows_cols
        self.ax = ax
        (r0, c0), (r1, c1) = rc["lo"], rc["hi"]
        font = 8 if c1 - c0 <= 16 else 6
        self.font = font
        drawn = set()
        for row, col in itertools.product(range(r0, r1), range(c0, c1)):
            found = self.kind(row, col)
            if found is None:
                continue
            kind, index = found
            drawn.add(kind)
            patch = Rectangle((col, row), 1, 1, facecolor=_COLOURS[kind], edgecolor="0.4",
                              linewidth=0.8, linestyle="--" if kind == "padding" else "-",
                              hatch="///" if kind == "cropped" else None, gid=kind)
            ax.add_patch(patch)
            text = self._input_label(index) if index is not None else (
                "" if kind == "cropped" else "0")
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontsize=font,
                    color="0.55" if kind in ("zero", "padding") else "black")
        # The frame the stride-1 convolution slides over.
        (fr, fc) = rc["frame"]
        ax.add_patch(Rectangle((0, 0), fc, fr, fill=False, edgecolor="black", linewidth=1.6,
                               gid="frame"))
        # The output grid, below, aligned so output o sits under its window's start.
        self.out_top = r1 + 1
        (orows, ocols) = rc["out"]
        self.output_cells = {}
        for row, col in itertools.product(range(orows), range(ocols)):
            patch = Rectangle((col, self.out_top + row), 1, 1, facecolor=_COLOURS["output"],
                              edgecolor="0.3", linewidth=0.8, gid="output")
            ax.add_patch(patch)
            self.output_cells[(row, col)] = patch
        ax.text(c0, self.out_top - 0.15, "output", ha="left", va="bottom", fontsize=font)
        ax.set_xlim(c0 - 0.2, max(c1, ocols) + 0.2)
        ax.set_ylim(self.out_top + orows + 0.2, r0 - 0.2)
        ax.set_aspect("equal")
        ax.set_axis_off()
        legend = {
            "input": dict(label="input element"),
            "zero": dict(label="inserted zero (stride - 1 between)"),
            "padding": dict(linestyle="--", label="implicit zero padding"),
            "cropped": dict(hatch="///", label="cropped (negative padding amount)"),
        }
        handles = [Patch(facecolor=_COLOURS[kind], edgecolor="0.4", **legend[kind])
                   for kind in legend if kind in drawn]
        handles += [Patch(facecolor=_COLOURS["kernel"], alpha=0.5, edgecolor=_COLOURS["kernel"],
                          label="flipped kernel: w<tap> it multiplies"),
                    Patch(facecolor=_COLOURS["output-current"], edgecolor="0.3",
                          label="the output it makes")]
        if own_figure:  # room for it is kept by the figure's constrained layout
            ax.figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7,
                             frameon=False)
        else:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      fontsize=7, frameon=False)
        self.title = title
        self.own_figure = own_figure

    def show_output(self, index):
        """Move the flipped kernel over the cells that output ``index`` reads."""
        from matplotlib.patches import Rectangle

        g, rc, ax = self.geometry, self.rows_cols, self.ax
        for artist in self.overlay:
            artist.remove()
        self.overlay = []
        for patch in self.output_cells.values():
            patch.set_facecolor(_COLOURS["output"])
            patch.set_gid("output")
        index = tuple(index)
        position = (0,) + index if g.rank == 1 else index
        current = self.output_cells[position]
        current.set_facecolor(_COLOURS["output-current"])
        current.set_gid("output-current")
        terms = []
        (kr, kc), (dr, dc) = rc["kernel"], rc["dilation"]
        for tr, tc in itertools.product(range(kr), range(kc)):
            row, col = position[0] + tr * dr, position[1] + tc * dc
            tap = (kr - 1 - tr, kc - 1 - tc)[-g.rank:]          # flipped
            patch = Rectangle((col + 0.06, row + 0.06), 0.88, 0.88, facecolor=_COLOURS["kernel"],
                              alpha=0.45, edgecolor=_COLOURS["kernel"], linewidth=1.8,
                              gid="kernel")
            ax.add_patch(patch)
            label = ax.text(col + 0.94, row + 0.94, "w" + ",".join(map(str, tap)), ha="right",
                            va="bottom", fontsize=self.font - 2, color="#a63603")
            self.overlay += [patch, label]
            found = self.kind(row, col)
            if found is not None and found[0] == "input":
                terms.append(f"{self._input_label(found[1])}*w{','.join(map(str, tap))}")
        if self.title:
            shown = " + ".join(terms[:4]) + (f" + ... ({len(terms)} terms)"
                                              if len(terms) > 4 else "")
            sizes = (f"length-{g.small[0]} input" if g.rank == 1
                     else "x".join(map(str, g.small)) + " input")
            text = (f"transposed convolution of a {sizes}: {_describe(g)}\n"
                    f"= stride-1 convolution of the flipped kernel over the zero-stuffed, "
                    f"padded input\noutput[{_index_text(index)}] = "
                    f"{shown if terms else '0 (the kernel covers only zeros)'}")
            if self.own_figure:   # the whole width: the equal-aspect axes may be narrow
                ax.figure.suptitle(text, x=0.02, ha="left", fontsize=8)
            else:
                ax.set_title(text, fontsize=8, loc="left")
        return terms

    def indices(self):
        return list(itertools.product(*(range(o) for o in self.geometry.large)))

    def figsize(self):
        (r0, c0), (r1, c1) = self.rows_cols["lo"], self.rows_cols["hi"]
        rows = (r1 - r0) + 1 + self.rows_cols["out"][0]
        cell = 0.42 if c1 - c0 <= 16 else 0.3
        # room for the three title lines above and the legend below
        return (min(max(5.6, 0.4 + cell * (c1 - c0)), 18.0), min(1.9 + cell * rows, 18.0))


def _zero_stuffed(input_size, kernel_size, stride, padding, output_padding, dilation):
    return _ZeroStuffed(resolve_conv_transpose(input_size, kernel_size, stride, padding,
                                               output_padding, dilation))


def _output_index(layout, index):
    g = layout.geometry
    if index is None:
        return (0,) * g.rank
    position = (index,) if np.ndim(index) == 0 else tuple(index)
    if len(position) != g.rank:
        raise ValueError(f"index must give {g.rank} output indices, got index={index!r}")
    for axis, value in enumerate(position):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"index[{axis}] must be an int, got {value!r}")
        if not 0 <= value < g.large[axis]:
            raise ValueError(f"index[{axis}]={value} is outside the output, whose size on "
                             f"that axis is {g.large[axis]}")
    return tuple(int(v) for v in position)


def plot_zero_stuffed(input_size, kernel_size, stride=1, padding=0, output_padding=0,
                      dilation=1, *, index=None, ax=None, path=None):
    """Draw a transposed convolution as the stride-1 convolution it equals.

    The picture of the convolution-arithmetic guides: the input cells spread
    ``stride`` apart with ``stride - 1`` zeros inserted between neighbours, the
    implicit zero padding of ``dilation*(kernel - 1) - padding`` cells per side (plus
    ``output_padding`` at the end) -- or, where that amount is negative, the stuffed
    cells that are cropped instead (hatched, outside the frame) -- and the *flipped*
    kernel over the cells that one output reads, each tap labelled with the weight
    index it multiplies (``w1,2`` is ``weight[1, 2]``).  The output grid is drawn
    below, each output under the start of its window.

    Parameters
    ----------
    input_size, kernel_size, stride, padding, output_padding, dilation
        As for :func:`sparsetconv.conv_transpose_output_size`; 1-D or 2-D.
    index : int or tuple of int, optional
        The output position to show the kernel for; the first by default.
    ax : matplotlib.axes.Axes, optional
        Draw there; by default on a new figure.
    path : str or path-like, optional
        Also save the figure there (the format follows the extension).

    Returns
    -------
    matplotlib.figure.Figure
        The title (the figure's suptitle, or the axes' title when ``ax`` is given) names
        the terms of that output: ``output[1] = x0*w2 + x1*w0``.

    Examples
    --------
    >>> fig = plot_zero_stuffed(3, 3, stride=2, padding=1, index=1)
    >>> fig.get_suptitle().splitlines()[-1]
    'output[1] = x0*w2 + x1*w0'
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    layout = _zero_stuffed(input_size, kernel_size, stride, padding, output_padding,
                           dilation)
    position = _output_index(layout, index)
    own_figure = ax is None
    fig = _new_figure(layout.figsize()) if own_figure else ax.figure
    if own_figure:
        ax = fig.add_subplot()
    layout.draw(ax, own_figure)
    layout.show_output(position)
    _save(fig, path)
    return fig


def animate_zero_stuffed(input_size, kernel_size, stride=1, padding=0, output_padding=0,
                         dilation=1, *, path, fps=2, dpi=80):
    """Write :func:`plot_zero_stuffed` as a GIF: the flipped kernel visits every output.

    One frame per output position, in row-major order, written with matplotlib's
    ``PillowWriter`` (Pillow comes with matplotlib).

    Parameters
    ----------
    input_size, kernel_size, stride, padding, output_padding, dilation
        As for :func:`plot_zero_stuffed`.
    path : str or path-like
        The GIF to write.
    fps : float
        Frames per second.
    dpi : int

    Returns
    -------
    str
        ``path``.
    """
    plt = _pyplot()
    from matplotlib import animation

    layout = _zero_stuffed(input_size, kernel_size, stride, padding, output_padding,
                           dilation)
    frames = layout.indices()
    if len(frames) > _MAX_FRAMES:
        raise ValueError(f"the animation would have {len(frames)} frames, one per output "
                         f"position (more than {_MAX_FRAMES}): use a smaller input_size")
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    fig = _new_figure(layout.figsize())
    try:
        layout.draw(fig.add_subplot(), own_figure=True)
        layout.show_output(frames[0])
        # Lay the figure out once: the frames only move the kernel and the highlight.
        fig.canvas.draw()
        fig.set_layout_engine("none")
        writer = animation.PillowWriter(fps=fps)
        with writer.saving(fig, path, dpi):
            for index in frames:   # one draw per frame (FuncAnimation would draw twice)
                layout.show_output(index)
                writer.grab_frame()
    finally:
        plt.close(fig)
    return str(path)


# ---------------------------------------------------------------------------
# Buffers and matrices

def plot_contributions(input, weight, stride=1, padding=0, output_padding=0, dilation=1, *,
                       fig=None, path=None):
    """Draw each input element's buffer on the output grid, and their sum.

    One panel per input element shows ``input[i] * weight`` placed on the *uncropped*
    output grid (stride-spaced), the element that made it, and, outlined, the part
    that survives the cropping done by ``padding``; the last panel is the sum over the
    kept part -- the transposed convolution.  All panels share one colour scale,
    shown by the colour bar.  1-D and 2-D inputs, at most 64 elements.

    Parameters
    ----------
    input, weight, stride, padding, output_padding, dilation
        As for :func:`sparsetconv.contributions`.
    fig : matplotlib.figure.Figure or SubFigure, optional
        Draw there (it needs several axes); by default on a new figure.
    path : str or path-like, optional
        Also save the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_contributions(np.array([[2.0, 4.0], [0.0, 1.0]]),
    ...                          np.array([[3.0, 1.0], [1.0, 5.0]]))
    >>> sum(1 for ax in fig.axes if ax.images)        # 2x2 buffers and their sum
    5
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    from .explain import contributions

    x = np.asarray(input, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if x.ndim not in (1, 2) or w.ndim != x.ndim:
        raise ValueError(f"plot_contributions draws 1-D and 2-D inputs with a kernel of the "
                         f"same rank, got input.shape={x.shape}, weight.shape={w.shape}")
    if x.size > _MAX_PANELS:
        raise ValueError(f"plot_contributions draws one panel per input element: "
                         f"input.shape={x.shape} has {x.size}, more than {_MAX_PANELS}")
    geometry = resolve_conv_transpose(x.shape, w.shape, stride, padding, output_padding,
                                      dilation)
    panel = math.prod(max((n - 1) * s_ + d * (k - 1) + 1, pb + o) for n, s_, d, k, pb, o in zip(
        geometry.small, geometry.stride, geometry.dilation, geometry.kernel,
        geometry.pad_begin, geometry.large))
    if panel > _MAX_CELLS:
        raise ValueError(f"each panel would have {panel} cells (more than {_MAX_CELLS}): "
                         f"use a smaller stride, dilation or kernel")
    title = (f"transposed convolution: {_describe(geometry)}; each panel is one input "
             f"element's buffer, the outlined part is kept")
    one_d = x.ndim == 1
    if one_d:  # draw a 1-D input as one row of a 2-D picture
        x, w = x[None, :], w[None, :]
        lift = lambda values, unit: (unit,) + tuple(values)  # noqa: E731
        geometry = type(geometry)(
            small=lift(geometry.small, 1), large=lift(geometry.large, 1),
            kernel=lift(geometry.kernel, 1), stride=lift(geometry.stride, 1),
            dilation=lift(geometry.dilation, 1), pad_begin=lift(geometry.pad_begin, 0),
            pad_end=lift(geometry.pad_end, 0),
            output_padding=lift(geometry.output_padding, 0))
    # Uncropped buffers: no padding, and room for whatever output_padding (or a "same"
    # extension) adds past the full output.
    extra = tuple(max(0, pb + o - ((i - 1) * s + d * (k - 1) + 1))
                  for pb, o, i, s, d, k in zip(geometry.pad_begin, geometry.large,
                                               geometry.small, geometry.stride,
                                               geometry.dilation, geometry.kernel))
    full = np.pad(contributions(x, w, geometry.stride, 0, 0, geometry.dilation),
                  ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    kept = [slice(pb, pb + o) for pb, o in zip(geometry.pad_begin, geometry.large)]
    total = full.sum(axis=(0, 1))[kept[0], kept[1]]
    rows, cols = x.shape
    if fig is None:
        fig = _new_figure((2.3 * (cols + 1) + 0.8, (1.4 if one_d else 2.3 * rows) + 0.5))
    axes = fig.subplots(rows, cols + 1, squeeze=False)
    scale = _colour_scale(full, total)
    for r in range(rows):
        for c in range(cols):
            label = f"input[{c}] = {x[r, c]:g}" if one_d else f"input[{r}, {c}] = {x[r, c]:g}"
            image = _draw_grid(axes[r][c], full[r, c], scale, kept, label)
        axes[r][cols].axis("off")
    _draw_grid(axes[0][cols], total, scale, None, "sum = output")
    axes[0][cols].axis("on")
    colorbar = fig.colorbar(image, ax=[a for row in axes for a in row], shrink=0.8)
    colorbar.set_label("value")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
    return fig


def _draw_grid(ax, values, scale, kept, title):
    image = ax.imshow(values, **scale)
    for (r, c), v in np.ndenumerate(values):
        if v:
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7)
    if kept is not None:
        from matplotlib.patches import Rectangle
        rows, cols = kept
        ax.add_patch(Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                               rows.stop - rows.start, fill=False, edgecolor="black",
                               linewidth=2, gid="kept"))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def plot_matrix(input_shape, weight, stride=1, padding=0, dilation=1, groups=1, *,
                fig=None, path=None):
    """Draw ``conv_matrix`` next to its transpose, the transposed convolution's matrix.

    Both panels show every stored entry on one colour scale (blank where nothing is
    stored; the numbers too when the matrix is small), so the identity
    ``conv_transpose_matrix == conv_matrix.T`` can be seen.  Arguments as for
    :func:`sparsetconv.conv_matrix`; at most 2000 rows and columns.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or SubFigure, optional
        Draw there (it needs two axes); by default on a new figure.
    path : str or path-like, optional
        Also save the figure there.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_matrix((1, 5), np.array([[[1.0, 2.0, 3.0]]]), stride=2)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['conv_matrix\\n(2, 5)', 'conv_transpose_matrix = its transpose\\n(5, 2)']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    _pyplot()
    from matplotlib.ticker import MaxNLocator

    from .matrix import conv_matrix

    weight = np.asarray(weight)
    spatial = tuple(input_shape)[1:] if isinstance(input_shape, (tuple, list)) else None
    if spatial and weight.ndim == len(spatial) + 2:   # else conv_matrix names the problem
        rows = weight.shape[0] * math.prod(
            resolve_conv(spatial, weight.shape[2:], stride, padding, dilation).small)
        if max(rows, math.prod(input_shape)) > _MAX_MATRIX:
            raise ValueError(f"the matrix would be {rows} x {math.prod(input_shape)}: too big "
                             f"to draw (at most {_MAX_MATRIX}); use a smaller input_shape")
    matrix = conv_matrix(input_shape, weight, stride, padding, dilation, groups)
    dense = np.full(matrix.shape, np.nan)
    coo = matrix.tocoo()
    dense[coo.row, coo.col] = coo.data
    if fig is None:
        rows, cols = matrix.shape
        fig = _new_figure((min(3.0 + 0.32 * (cols + rows), 16.0),
                           min(1.8 + 0.32 * max(rows, cols), 12.0)))
    axes = fig.subplots(1, 2, width_ratios=[matrix.shape[1], matrix.shape[0]])
    scale = _colour_scale(coo.data)
    panels = ((axes[0], dense, f"conv_matrix\n{matrix.shape}", "convolution input",
               "convolution output"),
              (axes[1], dense.T, f"conv_transpose_matrix = its transpose\n"
                                 f"{matrix.shape[::-1]}",
               "transposed input (= conv output)", "transposed output (= conv input)"))
    for ax, values, title, xlabel, ylabel in panels:
        image = ax.imshow(values, interpolation="nearest", **scale)
        if values.size <= 400:
            for (r, c), v in np.ndenumerate(values):
                if not np.isnan(v):
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.8)
    colorbar.set_label("stored value (blank: not stored)")
    _save(fig, path)
    return fig
