"""A linear layer's float32 products on the CPU: torch's BLAS against oneDNN.

    python benchmarks/bench_linear_cpu.py --rounds 4 > benchmarks/results/onednn_cpu.md

The default network's output layer costs three matrix products a step:
the forward's ``X @ W.T`` and the backward's ``G @ W`` and ``G.T @ X``.
torch computes float32 products on x86 CPUs with MKL, which takes a
slower code path on AMD CPUs than on Intel ones; oneDNN (also inside
torch) does not.  For each shape (a batch of ``n`` rows of width ``h``
into ``B`` outputs) this times the three products both ways, in ABBA
order over ``--rounds`` rounds, and prints the largest difference of
each from the float64 products (relative to the largest entry): both are
float32 products, summed in another order.  ``MACHNetwork`` uses oneDNN
where ``sklearn_mach._network._ONEDNN_LINEAR`` says so (printed).
"""

import argparse
import platform
import time

import numpy as np
import torch


def _products(kind):
    """The three products of a linear layer, through torch's mm or oneDNN."""
    import common

    forward, grad_weight, grad_input = common.linear_products(kind == "oneDNN")
    return lambda x, w, g: (
        forward(x, w[1], w[0]),
        grad_input(g, w[1]),
        grad_weight(g, x),
    )


def _ms(function, args, repeats):
    for _ in range(max(5, repeats // 20)):  # warm up (oneDNN builds a kernel)
        function(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        function(*args)
    return 1e3 * (time.perf_counter() - start) / repeats


def main(argv=None):
    from sklearn_mach import _network
    from sklearn_mach._device import cpu_vendor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["256x256x512", "1024x256x2048"],
        help="n x h x B: batch rows, layer input width, outputs",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    op = _network._LINEAR_OP
    if op is None:
        raise SystemExit("this torch has no oneDNN linear operator")
    kinds = ["BLAS (torch.mm)", "oneDNN"]
    print(
        f"CPU {cpu_vendor() or platform.processor() or '?'}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, MKL "
        f"{torch.backends.mkl.is_available()}; shipped choice "
        f"(_ONEDNN_LINEAR): {_network._ONEDNN_LINEAR}.\n"
    )
    print(
        "| n x h x B | products | ms per step (3 products), each round | mean "
        "| largest difference from float64 |"
    )
    print("|---|---|---|---|---|")
    generator = torch.Generator().manual_seed(0)
    for shape in args.shapes:
        n, h, B = (int(v) for v in shape.split("x"))
        x = torch.randn(n, h, generator=generator).relu_()
        w = (
            torch.randn(B, generator=generator),
            torch.randn(B, h, generator=generator),
        )
        g = torch.randn(n, B, generator=generator)
        exact = [
            t.double()
            for t in _products("BLAS (torch.mm)")(
                x.double(), [t.double() for t in w], g.double()
            )
        ]
        times = {kind: [] for kind in kinds}
        for round_ in range(args.rounds):
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                times[kind].append(_ms(_products(kind), (x, w, g), args.repeats))
        for kind in kinds:
            out = _products(kind)(x, w, g)
            error = max(
                float((a.double() - b).abs().max() / b.abs().max())
                for a, b in zip(out, exact)
            )
            print(
                f"| {shape} | {kind} | {', '.join(f'{t:.3f}' for t in times[kind])} "
                f"| {np.mean(times[kind]):.3f} | {error:.1e} |"
            )


if __name__ == "__main__":
    main()
