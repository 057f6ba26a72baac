"""The random-layer generator of benchmarks/bench_random.py: valid, in its stated
ranges, varied and reproducible (no timing here)."""

import doctest
import math
import os
import sys

import numpy as np
import pytest

import sparsetconv as stc

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
if not os.path.isfile(os.path.join(BENCHMARKS, "bench_random.py")):
    pytest.skip("benchmarks/ is not next to tests/", allow_module_level=True)
sys.path.insert(0, BENCHMARKS)
import bench_random  # noqa: E402

LAYERS = bench_random.random_layers()


def test_default_list_is_long_and_reproducible():
    assert len(LAYERS) >= 30
    assert bench_random.random_layers() == LAYERS
    assert bench_random.random_layers(seed=0, count=5) == LAYERS[:5]
    other = bench_random.random_layers(seed=1)
    assert len(other) == len(LAYERS) and other != LAYERS
    assert len({layer.name for layer in LAYERS}) == len(LAYERS)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layer_is_in_the_stated_ranges(layer):
    n, c_in = layer.input[:2]
    c_out, groups = layer.out_channels, layer.groups
    assert 1 <= n <= 32
    assert 4 <= c_in <= 512 and 4 <= c_out <= 512
    assert c_in % groups == 0 and c_out % groups == 0
    assert layer.weight == (c_in, c_out // groups) + layer.kernel
    low, high = bench_random.SPATIAL[layer.rank]
    assert all(low <= size <= high for size in layer.input[2:])
    for k, s, p, op, d in zip(layer.kernel, layer.stride, layer.padding,
                              layer.output_padding, layer.dilation):
        assert 1 <= k <= 7 and 1 <= s <= 4 and d >= 1
        assert 0 <= p <= d * (k - 1)
        assert 0 <= op < s  # so the adjoint convolution maps back to the input's size
    assert 20e6 <= layer.flops <= 2e9
    assert layer.nbytes <= bench_random.MAX_BYTES


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_shapes_follow_the_formula(layer):
    expected = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in zip(
        layer.input[2:], layer.kernel, layer.stride, layer.padding, layer.output_padding,
        layer.dilation))
    assert layer.output_size == expected and min(expected) >= 1
    assert layer.output_shape == (layer.input[0], layer.out_channels) + expected
    n, c_in = layer.input[:2]
    assert layer.flops == (2 * n * c_in * (layer.out_channels // layer.groups)
                           * math.prod(layer.kernel) * math.prod(layer.input[2:]))
    # The adjoint convolution's output has the transposed convolution's input size.
    assert stc.conv_output_size(expected, layer.kernel, layer.stride, layer.padding,
                                layer.dilation) == layer.input[2:]


def test_pytorch_accepts_every_layer():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    for layer in LAYERS:
        meta = {"device": "meta"}
        x, w = torch.empty(layer.input, **meta), torch.empty(layer.weight, **meta)
        args = (list(layer.stride), list(layer.padding))
        y = getattr(functional, f"conv_transpose{layer.rank}d")(
            x, w, None, *args, list(layer.output_padding), layer.groups, list(layer.dilation))
        assert tuple(y.shape) == layer.output_shape, layer.name
        back = getattr(functional, f"conv{layer.rank}d")(
            torch.empty(layer.output_shape, **meta), w, None, *args, list(layer.dilation),
            layer.groups)
        assert tuple(back.shape) == layer.input, layer.name


def test_the_list_has_every_kind_of_layer():
    ranks = {layer.rank for layer in LAYERS}
    depthwise = [layer for layer in LAYERS if layer.groups == layer.in_channels > 1]
    grouped = [layer for layer in LAYERS if 1 < layer.groups < layer.in_channels]
    assert ranks == {1, 2, 3} and depthwise and grouped
    assert any(max(layer.dilation) > 1 for layer in LAYERS)
    assert any(max(layer.output_padding) > 0 for layer in LAYERS)
    assert any(len(set(layer.stride)) > 1 or len(set(layer.kernel)) > 1 for layer in LAYERS)
    assert {s for layer in LAYERS for s in layer.stride} == {1, 2, 3, 4}
    assert {1, 7} <= {k for layer in LAYERS for k in layer.kernel}
    assert {1, 32} & {layer.input[0] for layer in LAYERS}


def test_generator_docstring_examples():
    assert doctest.testmod(bench_random, verbose=False).failed == 0


def test_calibration_recovers_known_unit_costs():
    # times made from known costs: the fit must give them back, and the choice it
    # makes must then always be the faster algorithm
    import calibrate_auto
    rng = np.random.default_rng(3)
    known = dict(GATHER=dict(call=20e-9, vector_step=0.1e-9),
                 CONVOLUTION_GEMM=dict(mac=0.02e-9, column_row=4e-9))
    records = []
    for _ in range(40):
        gather = dict(call=float(rng.integers(1, 10**5)), vector_step=float(rng.integers(1, 10**7)))
        gemm = dict(mac=float(rng.integers(1, 10**8)), column_row=float(rng.integers(1, 10**5)))
        times = {"direct": sum(known["GATHER"][k] * v for k, v in gather.items()),
                 "gemm": sum(known["CONVOLUTION_GEMM"][k] * v for k, v in gemm.items())}
        records.append(dict(layer="x", direction="adjoint", chosen="gemm", times=times,
                            tables={"direct": ("GATHER", gather),
                                    "gemm": ("CONVOLUTION_GEMM", gemm)}))
    tables = calibrate_auto.fit(records, relevant=1e9)
    for table, costs in known.items():
        for name, cost in costs.items():
            assert tables[table][name] == pytest.approx(cost, rel=1e-6)
    best = calibrate_auto.regret(records, lambda r: min(r["times"], key=r["times"].get))
    assert best == (1.0, 1.0)
    worst = calibrate_auto.regret(records, lambda r: max(r["times"], key=r["times"].get))
    assert worst[1] > 1.0
