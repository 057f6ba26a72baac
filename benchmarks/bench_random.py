"""Random realistic layers: the four operations on layers nobody tuned for.

A fixed seed draws ``--count`` transposed-convolution layers (float32, with bias) the
way real networks use them: 1-D, 2-D and 3-D in turn; channels 4-512 (mostly the usual
widths, sometimes odd ones), dense, grouped or depthwise; kernels 1-7, strides 1-4
(mostly no larger than the kernel), dilation 2-3 now and then, the padding and
output_padding of an up-sampling layer (output = input x stride) or valid or random
padding; batch 1-32; input sizes fitted so that each layer does 20 MFLOP - 2 GFLOP of
useful work, an estimated 1-40 ms on one core, in at most 32 MB of float32 input,
output and weight (under 200 MB with the oracle's float64 copies).

The script prints the layer list (so a run can be reproduced and reported), then the
same tables as ``bench_suite.py``: for each operation (transposed convolution, its
adjoint convolution, input gradient, weight gradient) and thread count, median ms per
competitor, ours' GFLOP/s, ours / PyTorch, ours / the faster peer, geomeans and the
worst layers, every output verified against a float64 oracle first.

    python benchmarks/bench_random.py                       # seed 0, 32 layers, 1 and 2 threads
    python benchmarks/bench_random.py --count 3 --budget 0.2 --threads 1
    python benchmarks/bench_random.py --list                # the layers only
"""

import math
import sys

import numpy as np

import _harness as h
from _harness import Layer

FLOP_RANGE = (20e6, 2e9)
# float32 input + output + weight of one layer.
MAX_BYTES = 32 * 2**20
CHANNEL_RANGE = (4, 512)
BATCH_RANGE = (1, 32)
# Input sizes per spatial axis, by rank: audio sequences, images, volumes.
SPATIAL = {1: (8, 4096), 2: (1, 128), 3: (1, 32)}
CHANNELS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512)
KERNELS = (1, 2, 3, 4, 5, 6, 7)
KERNEL_WEIGHTS = (0.10, 0.17, 0.25, 0.25, 0.10, 0.03, 0.10)
BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
BATCH_WEIGHTS = (0.12, 0.12, 0.04, 0.16, 0.04, 0.2, 0.04, 0.16, 0.04, 0.08)
# Every 8 layers: 5 dense, 2 depthwise, 1 grouped (so a short run still has each kind).
KINDS = ("dense", "dense", "depthwise", "dense", "grouped", "dense", "depthwise", "dense")


def _channels(rng):
    """A usual width most of the time, an odd one (37, 150, ...) sometimes."""
    if rng.random() < 0.15:
        low, high = CHANNEL_RANGE
        return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    return int(rng.choice(CHANNELS))


def _axis(rng, dilation):
    """(kernel, stride, padding, output_padding) of one spatial axis."""
    kernel = int(rng.choice(KERNELS, p=KERNEL_WEIGHTS))
    if dilation > 1:
        stride = int(rng.choice((1, 1, 2)))
    else:
        stride = int(rng.choice((1, 2, 3, 4), p=(0.25, 0.5, 0.1, 0.15)))
        if stride > kernel and rng.random() < 0.8:  # strides beyond the kernel are rare
            stride = kernel
    span = dilation * (kernel - 1) + 1
    mode = rng.choice(("upsample", "valid", "random"), p=(0.6, 0.2, 0.2))
    if mode == "upsample":
        # output = input * stride: 2 padding - output_padding = span - stride.
        excess = span - stride
        if excess < 0:
            return kernel, stride, 0, -excess
        padding = (excess + 1) // 2
        output_padding = 2 * padding - excess
        if output_padding >= stride:  # stride 1, even kernel: one longer instead
            padding, output_padding = excess // 2, 0
        return kernel, stride, padding, output_padding
    if mode == "valid":
        return kernel, stride, 0, 0
    reach = dilation * (kernel - 1)
    padding = int(rng.integers(0, min(reach, reach // 2 + 1) + 1))
    return kernel, stride, padding, int(rng.integers(0, stride))


def _estimated_gflops(pairs):
    """Rough single-core rate of a layer with ``pairs`` (input x output) channel pairs
    per group: BLAS speed for wide layers, a few GFLOP/s for depthwise ones."""
    return min(80.0, max(3.0, 80.0 * math.sqrt(pairs / 1024)))


def _nice(size, rng):
    """Half the time the nearest power of two (the usual image sizes)."""
    if rng.random() < 0.5 and size >= 2:
        return 2 ** int(round(math.log2(size)))
    return size


def _draw(rng, index):
    """One candidate layer (None if the draw does not fit the limits)."""
    rank = 1 + index % 3
    kind = KINDS[index % len(KINDS)]
    c_in = _channels(rng)
    if kind == "depthwise":
        groups = c_in
        c_out = c_in * (2 if c_in <= 256 and rng.random() < 0.25 else 1)
    else:
        c_out = int(round(c_in * rng.choice((0.25, 0.5, 0.5, 1, 1, 2))))
        c_out = min(max(c_out, CHANNEL_RANGE[0]), CHANNEL_RANGE[1])
        groups = 1
        if kind == "grouped":
            groups = int(rng.choice((2, 4, 8, 16, 32)))
            c_in, c_out = (min(max(groups * round(c / groups), groups, CHANNEL_RANGE[0]),
                               CHANNEL_RANGE[1]) for c in (c_in, c_out))
            if c_in % groups or c_out % groups:
                return None
    dilation = int(rng.choice((2, 3))) if rng.random() < 0.2 else 1
    anisotropic = rank > 1 and rng.random() < 0.2
    first = _axis(rng, dilation)
    axes = [first] + [_axis(rng, dilation) if anisotropic else first for _ in range(rank - 1)]
    kernel, stride, padding, output_padding = (tuple(v) for v in zip(*axes))

    per_position = 2 * c_in * (c_out // groups) * math.prod(kernel)
    seconds = math.exp(rng.uniform(math.log(1e-3), math.log(40e-3)))
    pairs = (c_in // groups) * (c_out // groups)
    target = min(max(_estimated_gflops(pairs) * 1e9 * seconds, FLOP_RANGE[0]), FLOP_RANGE[1])
    batch = int(rng.choice(BATCHES, p=BATCH_WEIGHTS))
    low, high = SPATIAL[rank]
    side = (target / (per_position * batch)) ** (1 / rank)
    spatial = []
    for _ in range(rank):
        stretch = math.exp(rng.normal(0, 0.35)) if rank > 1 and rng.random() < 0.3 else 1.0
        size = _nice(max(1, int(round(side * stretch))), rng)
        spatial.append(min(max(size, low), high))
    # Sizes pinned at a bound: let the batch make up the work.
    batch = min(max(int(round(target / (per_position * math.prod(spatial)))), BATCH_RANGE[0]),
                BATCH_RANGE[1])
    name = (f"r{index:02d}_{rank}d" + ("_dw" if kind == "depthwise" else
                                        f"_g{groups}" if groups > 1 else "")
            + (f"_d{dilation}" if dilation > 1 else ""))
    try:
        layer = Layer(name, (batch, c_in) + tuple(spatial), (c_in, c_out // groups) + kernel,
                      stride, padding, output_padding, dilation, groups)
        layer.output_size  # noqa: B018  (raises if the output would be empty)
    except ValueError:
        return None
    if not FLOP_RANGE[0] <= layer.flops <= FLOP_RANGE[1] or layer.nbytes > MAX_BYTES:
        return None
    return layer


def random_layers(seed=0, count=32):
    """``count`` random realistic transposed-convolution layers, fixed by ``seed``.

    Layer ``i`` is drawn from its own stream (seeded by ``(seed, i)``), so the first
    layers of a longer list are the layers of a shorter one.

    Examples
    --------
    >>> layers = random_layers(seed=0, count=3)
    >>> [layer.rank for layer in layers]
    [1, 2, 3]
    >>> layers == random_layers(seed=0, count=3)
    True
    """
    layers = []
    for index in range(count):
        rng = np.random.default_rng((seed, index))
        for _ in range(10_000):
            layer = _draw(rng, index)
            if layer is not None:
                break
        else:  # pragma: no cover  (the limits leave plenty of room)
            raise RuntimeError(f"no layer {index} fits the limits for seed {seed}")
        layers.append(layer)
    return layers


def main(argv=None):
    parser = h.parser(__doc__)
    h.add_arguments(parser, budget=1.0)
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--count", type=int, default=32, help="number of layers (default 32)")
    parser.add_argument("--only", nargs="+", metavar="LAYER",
                        help="run only these layers of the list (by name, e.g. r03_1d)")
    parser.add_argument("--list", action="store_true", help="print the layers and stop")
    args = parser.parse_args(argv)
    h.apply_arguments(args)
    layers = random_layers(args.seed, args.count)
    print(f"## {len(layers)} random layers, seed {args.seed}\n")
    h.print_layers(layers)
    if args.list:
        return 0
    if args.only:
        unknown = set(args.only) - {layer.name for layer in layers}
        if unknown:
            parser.error(f"--only: no layers {sorted(unknown)} in this list")
        layers = [layer for layer in layers if layer.name in args.only]
    print()
    h.print_versions()
    tables = h.run_operations(layers, args.ops, args.threads, args.budget, args.gap,
                              check=args.check)
    return 1 if any(t.failures for t in tables) else 0


if __name__ == "__main__":
    sys.exit(main())
