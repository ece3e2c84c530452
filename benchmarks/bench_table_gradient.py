"""The input table's sparse gradient on the CPU: summed by row, or one row per non-zero.

    python benchmarks/bench_table_gradient.py --rows 300000 --rounds 6

With sparse input gradients, ``F.embedding_bag(sparse=True)`` gives the
input table a gradient of one ``width``-wide row per non-zero of the
batch, which :class:`~sklearn_mach.LazyAdam` then coalesces (a sort of all
of them).  On the CPU, :class:`~sklearn_mach.MACHNetwork` sums the
non-zeros of each distinct table row in its backward instead
(``_TableBag``), and LazyAdam uses the sorted, distinct rows as they are.
This times the library's training step (``floor_cpu.library_steps``:
module, loss, LazyAdam, autograd) both ways on the same batches of one
network at the CPU-epoch target's settings, in one process, alternating
ABBA over ``--rounds`` rounds, and checks that both train the same model
(weights within ``--rtol`` after the epoch's first ``--check-steps``
steps).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

WAYS = {"one row per non-zero": set(), "summed by row": {"cpu"}}


def main(argv=None):
    import common
    import floor_cpu

    from sklearn_mach import MACHNetwork

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--check-steps", type=int, default=10)
    args = parser.parse_args(argv)
    settings = dict(common.CPU_EPOCH_SETTINGS, n_repetitions=1)
    X, y, n_classes = common.training_subset(args.dataset, args.rows)
    module, _, batches = floor_cpu.prepare(X, y, n_classes, settings)
    if not module.sparse_gradient:
        raise SystemExit("this data does not switch sparse input gradients on")

    def steps(way, batches):
        with common.switched(MACHNetwork, "_ROW_SUM_DEVICES", WAYS[way]):
            return floor_cpu.library_steps(module, batches, settings)

    times = {way: [] for way in WAYS}
    floor_cpu.library_steps(module, batches[:20], settings)  # warm up
    for round_ in range(args.rounds):
        for way in WAYS if round_ % 2 == 0 else list(WAYS)[::-1]:
            times[way].append(steps(way, batches)[0])
    weights = {
        way: [
            p.detach() for p in steps(way, batches[: args.check_steps])[1].parameters()
        ]
        for way in WAYS
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.  One "
        f"network, {len(batches):,} steps of {args.dataset} ({X.shape[0]:,} "
        f"rows); B={settings['n_buckets']}, batch {settings['batch_size']}, "
        f"{settings['n_hashed_features']:,} hashed rows.\n"
    )
    print("| table gradient | ms per library step, each round | mean |")
    print("|---|---|---|")
    for way, values in times.items():
        print(
            f"| {way} | {', '.join(f'{v:.3f}' for v in values)} | "
            f"{np.mean(values):.3f} |"
        )
    a, b = weights.values()
    difference = max(float((p - q).abs().max() / q.abs().max()) for p, q in zip(a, b))
    print(
        f"\nAfter {args.check_steps} steps the weights differ by at most "
        f"{difference:.1e} of the largest ("
        f"{'within' if difference <= args.rtol else 'OUTSIDE'} rtol {args.rtol:g})."
    )
    if difference > args.rtol:
        raise SystemExit("the two table gradients do not train the same model")


if __name__ == "__main__":
    main()
