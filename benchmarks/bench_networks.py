"""Whole networks: sparsetconv's layers against the same networks in PyTorch.

- ``dcgan``: the DCGAN generator (nz 100, ngf 64, batch 16, 64x64 RGB): five transposed
  convolutions, ConvTranspose2d(100, 512, 4, 1, 0) -> ReLU -> (512, 256, 4, 2, 1) ->
  ReLU -> (256, 128, 4, 2, 1) -> ReLU -> (128, 64, 4, 2, 1) -> ReLU ->
  (64, 3, 4, 2, 1) -> tanh.  Batch normalisation is left out (in both frameworks), so
  every layer has a bias.
- ``decoder3d``: a 3-D decoder, input (2, 64, 8, 8, 8): three ConvTranspose3d(kernel 3,
  stride 2, padding 1, output_padding 1) layers 64 -> 32 -> 16 -> 8 channels, ReLU
  between them, output (2, 8, 64, 64, 64).

The PyTorch network is built first (its own initialisation, ``torch.manual_seed(0)``)
and ported: each ``sparsetconv.ConvTranspose*d`` loads its module's ``state_dict()``.
Ours runs the layers' ``__call__`` and ``backward`` with the activations in NumPy.

Passes, for a random output gradient:

    forward    the network's output (PyTorch under torch.no_grad)
    backward   every gradient: the network input's, and each layer's weight and bias
               (PyTorch: torch.autograd.grad on a retained graph)
    step       forward then backward (PyTorch: forward with autograd, then the gradients)

The outputs and every gradient of both frameworks are first checked against PyTorch in
float64 with the same weights (taking each framework's own ReLU pattern, so a
pre-activation within rounding of zero cannot flip a gradient); then all passes are
timed in interleaved rounds after idle gaps, medians, at each thread count.

    python benchmarks/bench_networks.py                    # both networks, 1 and 2 threads
    python benchmarks/bench_networks.py --networks dcgan --threads 1 --budget 3
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

import _harness as h
from _harness import stc


@dataclass(frozen=True)
class Network:
    name: str
    input: tuple
    # (in_channels, out_channels, kernel, stride, padding, output_padding) per layer
    layers: tuple
    activations: tuple  # after each layer: "relu", "tanh" or None

    @property
    def rank(self):
        return len(self.input) - 2

    def shapes(self):
        """The input shape of each layer, then the output shape."""
        shapes = [self.input]
        for _, c_out, k, s, p, op in self.layers:
            size = stc.conv_transpose_output_size(shapes[-1][2:], k, s, p, op)
            shapes.append((self.input[0], c_out) + size)
        return shapes

    @property
    def flops(self):
        """Useful FLOPs of the forward pass (the backward pass does twice as many)."""
        return sum(2 * shape[0] * c_in * c_out * k ** self.rank * math.prod(shape[2:])
                   for shape, (c_in, c_out, k, *_) in zip(self.shapes(), self.layers))


NETWORKS = {
    "dcgan": Network("dcgan", (16, 100, 1, 1),
                     ((100, 512, 4, 1, 0, 0), (512, 256, 4, 2, 1, 0), (256, 128, 4, 2, 1, 0),
                      (128, 64, 4, 2, 1, 0), (64, 3, 4, 2, 1, 0)),
                     ("relu", "relu", "relu", "relu", "tanh")),
    "decoder3d": Network("decoder3d", (2, 64, 8, 8, 8),
                         ((64, 32, 3, 2, 1, 1), (32, 16, 3, 2, 1, 1), (16, 8, 3, 2, 1, 1)),
                         ("relu", "relu", None)),
}


class Ours:
    """The network on sparsetconv's layers, activations in NumPy."""

    def __init__(self, network, state_dicts):
        cls = getattr(stc, f"ConvTranspose{network.rank}d")
        self.activations = network.activations
        self.layers = []
        for (c_in, c_out, k, s, p, op), state in zip(network.layers, state_dicts):
            layer = cls(c_in, c_out, k, stride=s, padding=p, output_padding=op)
            layer.load_state_dict(state)
            self.layers.append(layer)
        self.outputs = None

    def forward(self, x):
        self.outputs = []
        for layer, activation in zip(self.layers, self.activations):
            x = layer(x)
            if activation == "relu":
                np.maximum(x, 0, out=x)  # x is this layer's fresh output
            elif activation == "tanh":
                np.tanh(x, out=x)
            self.outputs.append(x)
        return x

    def backward(self, grad):
        """The input gradient; each layer keeps its ``weight_grad`` and ``bias_grad``."""
        for layer, activation, out in zip(self.layers[::-1], self.activations[::-1],
                                          self.outputs[::-1]):
            if activation == "relu":
                grad = grad * (out > 0)
            elif activation == "tanh":
                grad = grad * (1 - out * out)
            grad = layer.backward(grad)
        return grad

    def step(self, x, grad):
        self.forward(x)
        return self.backward(grad)

    def gradients(self, grad_input):
        return [grad_input] + [g for layer in self.layers for g in (layer.weight_grad,
                                                                     layer.bias_grad)]


def torch_network(network):
    import torch
    torch.manual_seed(0)
    cls = getattr(torch.nn, f"ConvTranspose{network.rank}d")
    modules = []
    for (c_in, c_out, k, s, p, op), activation in zip(network.layers, network.activations):
        modules.append(cls(c_in, c_out, k, stride=s, padding=p, output_padding=op))
        if activation == "relu":
            modules.append(torch.nn.ReLU())
        elif activation == "tanh":
            modules.append(torch.nn.Tanh())
    return torch.nn.Sequential(*modules)


def torch_outputs(net, x):
    """Each activation's output (the ReLU patterns of this framework)."""
    import torch
    outputs = []
    with torch.no_grad():
        for module in net:
            x = module(x)
            if not isinstance(module, torch.nn.modules.conv._ConvNd) or module is net[-1]:
                outputs.append(x.numpy())
    return outputs


def oracle(network, state_dicts, x, grad, outputs):
    """PyTorch float64: the output and every gradient, ReLU taken as the mask of
    ``outputs`` (one framework's own activations, float32)."""
    import torch
    functional = torch.nn.functional
    fn = getattr(functional, f"conv_transpose{network.rank}d")
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    params = [torch.from_numpy(np.asarray(state[key], dtype=np.float64)).requires_grad_()
              for state in state_dicts for key in ("weight", "bias")]
    y = tx
    for i, ((_, _, _, s, p, op), activation) in enumerate(zip(network.layers,
                                                              network.activations)):
        y = fn(y, params[2 * i], params[2 * i + 1], s, p, op)
        if activation == "relu":
            y = y * torch.from_numpy(outputs[i] > 0)
        elif activation == "tanh":
            y = torch.tanh(y)
    grads = torch.autograd.grad(y, [tx] + params, torch.from_numpy(grad.astype(np.float64)))
    return y.detach().numpy(), [g.numpy() for g in grads]


def gradient_names(network):
    return ["input"] + [f"layer{i + 1}.{key}" for i in range(len(network.layers))
                        for key in ("weight", "bias")]


def verify(network, name, output, gradients, want_output, want_gradients, failures):
    """Max error relative to max(1, max |oracle|) of the output and each gradient."""
    errors = [("output", h.relative_error(output, want_output))]
    errors += [(what, h.relative_error(got, want)) for what, got, want in
               zip(gradient_names(network), gradients, want_gradients)]
    worst_what, worst = max(errors, key=lambda item: item[1])
    ok = worst <= TOLERANCE
    if not ok:
        failures.append(f"{network.name} {name}: {worst_what} max error {worst:.3g} of scale "
                        f"exceeds {TOLERANCE}")
    return worst, ok


# float32 through several layers; errors here are ~1e-6 (printed with each run).
TOLERANCE = 1e-4


def run_network(network, threads, budget, gap, failures):
    import torch
    rng = np.random.default_rng(0)
    x = rng.standard_normal(network.input).astype(np.float32)
    shapes = network.shapes()
    grad = rng.standard_normal(shapes[-1]).astype(np.float32)
    net = torch_network(network)
    convs = [m for m in net if isinstance(m, torch.nn.modules.conv._ConvNd)]
    state_dicts = [module.state_dict() for module in convs]
    ours = Ours(network, state_dicts)
    arrays = [{k: v.numpy() for k, v in state.items()} for state in state_dicts]

    print(f"\n## {network.name}: " + " -> ".join(str(s) for s in shapes)
          + f", {network.flops / 1e9:.2f} GFLOP forward\n")
    # Verification: each framework against float64 with its own ReLU pattern.
    our_output = ours.forward(x).copy()
    our_gradients = ours.gradients(ours.backward(grad))
    want = oracle(network, arrays, x, grad, ours.outputs)
    our_error, _ = verify(network, "ours", our_output, our_gradients, *want, failures)

    tx = torch.from_numpy(x).requires_grad_()
    tg = torch.from_numpy(grad)
    params = list(net.parameters())
    torch_out = net(tx)
    torch_gradients = [t.numpy() for t in torch.autograd.grad(torch_out, [tx] + params, tg,
                                                              retain_graph=True)]
    want = oracle(network, arrays, x, grad, torch_outputs(net, torch.from_numpy(x)))
    torch_error, _ = verify(network, "torch", torch_out.detach().numpy(), torch_gradients, *want,
                            failures)
    print(f"verified against PyTorch float64 (output and {len(our_gradients)} gradients): max "
          f"error of scale, ours {our_error:.2g}, torch {torch_error:.2g}\n")
    if any(f.startswith(f"{network.name} ") for f in failures):
        print(f"**verification failed**: {failures[-1]}")
        return []

    def torch_forward():
        with torch.no_grad():
            return net(tx)

    def torch_backward():
        return torch.autograd.grad(torch_out, [tx] + params, tg, retain_graph=True)

    def torch_step():
        return torch.autograd.grad(net(tx), [tx] + params, tg)

    calls = {"ours forward": lambda: ours.forward(x), "torch forward": torch_forward,
             "ours backward": lambda: ours.backward(grad), "torch backward": torch_backward,
             "ours step": lambda: ours.step(x, grad), "torch step": torch_step}
    ours.forward(x)  # the state "ours backward" differentiates
    flops = {"forward": network.flops, "backward": 2 * network.flops, "step": 3 * network.flops}
    print("| threads | pass | GFLOP | torch ms | ours ms | ours GFLOP/s | ours/torch |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    results = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        with stc.threads(n_threads):
            medians, _ = h.time_interleaved(calls, budget, gap, block_seconds=0.1)
        for what in ("forward", "backward", "step"):
            mine, theirs = medians[f"ours {what}"], medians[f"torch {what}"]
            results.append((network.name, n_threads, what, mine / theirs))
            print(f"| {n_threads} | {what} | {flops[what] / 1e9:.2f} | {h.ms(theirs)} | "
                  f"{h.ms(mine)} | {h.gflops_cell(flops[what], mine)} | {mine / theirs:.2f} |",
                  flush=True)
    return results


def main(argv=None):
    parser = h.parser(__doc__)
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS),
                        default=list(NETWORKS), help="networks to run (default: both)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to run (default: 1 2)")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds per network and thread count, roughly (default 10)")
    parser.add_argument("--gap", type=float, default=0.02,
                        help="idle seconds before each timed block (lets thread pools settle)")
    args = parser.parse_args(argv)
    h.print_versions(peers=(("torch", "PyTorch"),))
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: there is no network to compare against")
        return 0
    print("batch normalisation left out of both frameworks (BN-free DCGAN); float32")
    failures, results = [], []
    for name in args.networks:
        results += run_network(NETWORKS[name], args.threads, args.budget, args.gap, failures)
    if results:
        print("\n## summary: ours ÷ PyTorch (medians; below 1 = ours faster)\n")
        print("| network | threads | forward | backward | step |")
        print("|---|---:|---:|---:|---:|")
        for name in args.networks:
            for n_threads in args.threads:
                cells = {what: r for net, n, what, r in results if net == name and n == n_threads}
                if cells:
                    print(f"| {name} | {n_threads} | {cells['forward']:.2f} | "
                          f"{cells['backward']:.2f} | {cells['step']:.2f} |")
    for failure in failures:
        print(f"\n**verification failed**: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
