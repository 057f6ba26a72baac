# The one description of a compiled kernel call, declared once.
#
# Python (sparsetconv/_layout.py) builds a Layout with the same field names; the
# Kernel object in _kernels.pyx copies it into a Problem at construction, and every
# kernel reads the Problem by name.  Nothing here changes meaning from one kernel to
# another.

cdef enum Direction:
    TRANSPOSE = 0        # small side in, large side out (transposed convolution)
    CONVOLVE = 1         # large side in, small side out (convolution)
    WEIGHT_GRADIENT = 2  # both sides in, weight-shaped out

cdef enum Algorithm:
    DIRECT = 0           # per-row runs, no intermediate beyond one plane
    KERNEL_ROWS = 1      # transposed, dilation 1 on x: one kernel row per input element
    GEMM = 2             # BLAS GEMM over a group's channels, then col2im / im2col

cdef enum ColumnSource:
    # where the column matrix comes from (GEMM; DIRECT reads IMPLICIT only)
    IM2COL = 0           # built per chunk in the columns buffer (im2col / col2im)
    POINTWISE = 1        # kernel 1, stride 1, no padding: each sample's plane is its block
    WHOLE_INPUT = 2      # the kernel covers the whole large side (small side 1x1x1):
                         # the samples' large planes are the columns, side by side
    IMPLICIT = 3         # CONVOLVE: no column buffer, the columns are runs of a phase-
                         # by-phase copy of the large input (see _layout._phase_tables).
                         # GEMM: the own GEMM's micro-kernel reads them (copy in phased,
                         # stc_implicit_conv); DIRECT: one output channel at a time over
                         # the grid (copy per thread in scratch, stc_grid_dot).
                         # WEIGHT_GRADIENT GEMM: a GEMM of the runs with the small side
                         # channels-last, reduced over positions (stc_wgrad_implicit)


# One spatial axis (rank 1 and 2 are lifted to 3-D with unit axes).  The large side
# is stored in phase-major order (see sparsetconv.shapes.AxisRelation): tap t meets
# small index j (for first[t] <= j < stop[t]) at layout position offset[t] + j.
cdef struct Axis:
    Py_ssize_t small
    Py_ssize_t large
    Py_ssize_t kernel
    Py_ssize_t stride
    const Py_ssize_t *first     # [kernel]
    const Py_ssize_t *stop      # [kernel]
    const Py_ssize_t *offset    # [kernel]
    const Py_ssize_t *source    # [kernel * small]: natural large position, -1 in padding
    const Py_ssize_t *layout    # [large]: layout position of each natural position
    Py_ssize_t row_length       # x axis: the length of one large-side row as the kernels
                                # read it (> large when the phased copy is zero-padded)
    # KERNEL_ROWS only (x axis, natural order): small index j adds taps
    # [element_first[j], element_stop[j]) starting at natural position element_start[j].
    const Py_ssize_t *element_first
    const Py_ssize_t *element_stop
    const Py_ssize_t *element_start
    # IMPLICIT only: the phase copy is `stride` planes of `padded` positions; position
    # m of phase r holds natural large position phase_source[r * padded + m] (-1: zero)
    Py_ssize_t padded
    const Py_ssize_t *phase_source
    # [stride][3]: phase r's positions m0 <= m < m1 hold natural m0's source + (m - m0) stride
    const Py_ssize_t *phase_runs


cdef enum TileRestart:
    # where the implicit GEMM convolution's tiles start (_layout.implicit_tiling)
    ALONG_GRID = 0       # one run along the whole padded grid, through the tails
    PER_PLANE = 1        # a run per output z-plane (its tail rows skipped)
    PER_ROW = 2          # a run per output (z, y) row (every tail skipped)


cdef struct Problem:
    Axis axis[3]                # z, y, x
    Direction direction
    Algorithm algorithm
    Py_ssize_t batch
    Py_ssize_t c_small          # channels of the small side (weight.shape[0])
    Py_ssize_t c_large          # channels of the large side
    Py_ssize_t groups
    Py_ssize_t chunk            # GEMM: samples per chunk
    Py_ssize_t block_rows       # CONVOLVE / WEIGHT_GRADIENT GEMM, one-sample chunks:
                                # small-side (z, y) rows per im2col + GEMM block;
                                # WEIGHT_GRADIENT IMPLICIT: the chunk's (sample, z, y) rows
                                # per reduction block
    ColumnSource column_source  # GEMM: see ColumnSource
    # IMPLICIT only: column (channel, tap) of a sample-group is the run at a_offset[p]
    # of the phase copy; grid position u is output position out_offset[u] (-1: none);
    # threads take (sample, group, u_block grid positions), the weight panels
    # panel_block at a time
    const Py_ssize_t *a_offset  # [c_large / groups * taps]
    const Py_ssize_t *out_offset  # [positions]
    Py_ssize_t positions
    Py_ssize_t phase_pitch      # elements from one phase plane of the copy to the next
    Py_ssize_t u_block
    Py_ssize_t panel_block
    TileRestart tile_restart    # GEMM IMPLICIT: where tiles start; u_block counts grid
                                # positions, or the planes or rows they restart at
    Py_ssize_t scratch_pitch    # elements of scratch each thread owns (Workspace.scratch)
    # DIRECT IMPLICIT only: each output channel's grid is grid_pitch elements (whole
    # vectors); a pass computes grid_channels output channels (a multiple of
    # GRID_CHANNELS), depth_block of their (channel, tap) columns at a time
    # WEIGHT_GRADIENT IMPLICIT: grid_pitch elements per position of the channels-last
    # small side; threads take depth_block (channel, tap) rows by grid_channels (padded)
    # small channels
    Py_ssize_t grid_pitch
    Py_ssize_t grid_channels
    Py_ssize_t depth_block
    # WEIGHT_GRADIENT IMPLICIT: a group's small channels rounded up to whole tiles of
    # stc_wgrad_implicit (the channels-last copy's and the product's lanes per group)
    Py_ssize_t small_channels_padded
    bint phased_large           # CONVOLVE / WEIGHT_GRADIENT DIRECT: copy the large input,
                                # laid out by axis[2].layout in rows of axis[2].row_length
                                # (zeros between); False: read it in place (x stride 1,
                                # unpadded; GEMM's im2col always reads it in place)


# Workspaces, by name (NULL where the algorithm needs none).  Sizes: _layout.Workspace.
cdef struct Buffers:
    void *scratch               # TRANSPOSE: one large plane per thread; DIRECT IMPLICIT:
                                # a group's phase copy and one grid per thread
    void *phased                # the large input, phase-major on x (IMPLICIT: the phase copy)
    void *packed                # GEMM: one chunk's samples side by side (per chunk-thread);
                                # IMPLICIT: the weight, as panels of the own GEMM's NR channels;
                                # WEIGHT_GRADIENT IMPLICIT: the chunk's small side channels-last
    void *columns               # GEMM: one chunk's columns (per chunk-thread)
    void *product               # CONVOLVE GEMM: one chunk's product (per chunk-thread);
                                # WEIGHT_GRADIENT GEMM: the gradient, transposed (IMPLICIT:
                                # (channel, tap) rows of the padded small channels)
