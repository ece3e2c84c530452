"""Subnormal optimizer moments: what they cost a CPU step, what flushing saves.

    python benchmarks/bench_subnormal.py --rounds 4 > benchmarks/results/subnormal.md
    python benchmarks/bench_subnormal.py --rounds 4 --defaults >> benchmarks/results/subnormal.md
    python benchmarks/bench_subnormal.py --dataset synthetic-100 --rows 2000

Part 1 times elementwise operations on 262,144 float32 numbers, normal
against subnormal (below ``finfo.tiny``) operands.  Part 2 fits one network
(R=1) for one epoch of ``--rows`` rows of pypi-maskedword (0: all) at the
CPU-epoch target's settings (B=512, batch 256, lr 0.01), with sparse input
gradients (4,096 hashed rows) and dense ones (1,024), ``--rounds`` times
each (2 by default) with :class:`~sklearn_mach.LazyAdam` as shipped
(flushing subnormal moments to zero) and as often with the flush turned
off, alternating (on-off, off-on, ...), so that this
machine's drift hits both alike (``--defaults``: ``MACHClassifier()``'s
settings instead).  It prints ms per step, the share of subnormal numbers
among the optimizer's moments after the epoch, and whether the weights
equal those of the fit with the flush.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def op_times(n=262_144, repeat=50):
    """ms per call of a few operations, normal against subnormal operands."""
    tiny = torch.finfo(torch.float32).tiny
    normal, subnormal = torch.full((n,), 1e-3), torch.full((n,), tiny / 16)
    ops = {
        "x * 0.9": lambda x: x * 0.9,
        "x + x": lambda x: x + x,
        "x / 2": lambda x: x / 2,
        "x.sqrt()": lambda x: x.sqrt(),
        "x > 0 (a comparison)": lambda x: x > 0,
    }
    rows = []
    for name, op in ops.items():
        times = []
        for x in (normal, subnormal):
            op(x)
            start = time.perf_counter()
            for _ in range(repeat):
                op(x)
            times.append(1e3 * (time.perf_counter() - start) / repeat)
        rows.append((name, *times))
    return rows


def _subnormal_share(state):
    """Share of subnormal numbers among the tensors of an optimizer state."""
    counts = [0, 0]

    def walk(value):
        if torch.is_tensor(value) and value.is_floating_point():
            tiny = torch.finfo(value.dtype).tiny
            counts[0] += int(((value != 0) & (value.abs() < tiny)).sum())
            counts[1] += value.numel()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(state)
    return counts[0] / max(1, counts[1])


def fit_once(X, y, n_classes, settings, flush):
    """Fit, and return ms per step, the subnormal share, the weights and the fit."""
    from sklearn_mach import MACHClassifier
    from sklearn_mach._optim import LazyAdam

    # "off" takes the optimizer's own switch: the path GPUs run, without it
    shipped = LazyAdam._FLUSH_DEVICES
    if not flush:
        LazyAdam._FLUSH_DEVICES = set()
    try:
        clf = MACHClassifier(**settings)
        start = time.perf_counter()
        clf.partial_fit(X, y, classes=np.arange(n_classes))
        seconds = time.perf_counter() - start
    finally:
        LazyAdam._FLUSH_DEVICES = shipped
    steps = clf.n_repetitions * -(-X.shape[0] // clf.batch_size_)
    weights = [p.detach() for net in clf.networks_ for p in net.parameters()]
    # partial_fit keeps the optimizer state to continue from
    share = _subnormal_share(clf._optimizer_states)
    return 1e3 * seconds / steps, share, weights, clf


def main(argv=None):
    import common

    import sklearn_mach

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--hashed", type=int, nargs="+", default=[4096, 1024])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="MACHClassifier()'s settings (one network, one epoch) instead",
    )
    args = parser.parse_args(argv)
    if args.defaults:
        runs = [dict(n_repetitions=1, max_epochs=1, random_state=0)]
    else:
        runs = [
            dict(common.CPU_EPOCH_SETTINGS, n_repetitions=1, n_hashed_features=hashed)
            for hashed in args.hashed
        ]

    print(
        f"sklearn_mach {sklearn_mach.__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}.\n"
    )
    print("| operation, 262,144 float32 | normal ms | subnormal ms | ratio |")
    print("|---|---|---|---|")
    for name, normal, subnormal in op_times():
        print(
            f"| `{name}` | {normal:.3f} | {subnormal:.3f} | {subnormal / normal:.0f}x |"
        )

    X, y, n_classes = common.training_subset(args.dataset, args.rows)
    print(
        f"\nOne network, one epoch of {X.shape[0]:,} rows of {args.dataset}; "
        f"settings {runs}.\n"
    )
    # warm up imports and allocators outside the timings
    fit_once(X[:5000], y[:5000], n_classes, runs[0], True)
    print(
        "| hashed rows | input gradient | round | flush | ms per step "
        "| subnormal share of the moments | weights equal the flushed fit's |"
    )
    print("|---|---|---|---|---|---|---|")
    for settings in runs:
        for round_ in range(1, args.rounds + 1):
            # ABBA: the flush first in odd rounds, last in even ones
            order = (True, False) if round_ % 2 else (False, True)
            fits = {
                flush: fit_once(X, y, n_classes, settings, flush) for flush in order
            }
            for flush in order:
                ms, share, weights, clf = fits[flush]
                same = all(torch.equal(a, b) for a, b in zip(weights, fits[True][2]))
                sparse = clf.networks_[0].sparse_gradient
                print(
                    f"| {clf.n_hashed_features_:,} | {'sparse' if sparse else 'dense'} "
                    f"| {round_} | {'on (shipped)' if flush else 'off'} | {ms:.2f} "
                    f"| {share:.2%} | {'yes' if same else 'no'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
