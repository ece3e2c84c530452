"""Does exact top-k's pruning pay?  The threshold algorithm's bound against the dense path.

    python benchmarks/bench_pruning.py
    python benchmarks/bench_pruning.py --classes 3000 --rows 3000 --queries 100 --buckets 64 --epochs 1

Exact ``predict_top_k`` on the CPU scores the classes of the best buckets
first and widens its rounds while ``_decoding.pruning_pays`` holds
(``factor * R * m <= B``, ``_decoding._PRUNING_FACTOR`` 4 shipped: at most ``K / 4``
candidates a row); rows it cannot prove by then are scored over every
class.  This script fits ``MACHClassifier`` on ``--rows`` rows of
``make_extreme_classification`` (``power=0.5``), then times exact
``predict_top_k(X, 5)`` on ``--queries`` held-out rows with the bound's
factor 4, 16 and 64, with factor 4 but no row given up early
(``_decoding._GIVE_UP``: rows whose gap the rounds left will not close
go to the dense path at once), and with no pruning (every row scored
over every class), over ``--rounds`` rounds.  All must return the same
top-5.  Few ``--epochs`` on many classes give a barely trained model,
whose flat scores the rounds cannot prove.
"""

import argparse
import math
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--buckets", type=int, default=8192)
    parser.add_argument("--repetitions", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import common

    from sklearn_mach import MACHClassifier
    from sklearn_mach import _decoding as decoding
    from sklearn_mach.datasets import make_extreme_classification

    X, y = make_extreme_classification(
        n_samples=args.rows + args.queries,
        n_classes=args.classes,
        n_features=200_000,
        power=0.5,
        random_state=0,
    )
    X_train, y_train = X[: args.rows], y[: args.rows]
    queries, truth = X[args.rows :], y[args.rows :]
    start = time.perf_counter()
    clf = MACHClassifier(
        device="cpu",  # the CPU's pruned decoding, whatever the machine
        n_buckets=args.buckets,
        n_repetitions=args.repetitions,
        max_epochs=args.epochs,
        random_state=0,
    ).fit(X_train, y_train)
    print(
        f"K={args.classes:,} ({len(clf.classes_):,} seen in {args.rows:,} rows), "
        f"B={args.buckets}, R={args.repetitions}, {args.epochs} epochs: fit "
        f"{time.perf_counter() - start:.0f} s; exact top-5 of {args.queries:,} "
        "held-out rows.\n"
    )
    variants = {  # the bound's factor, and whether rows are given up
        "factor 4 (shipped)": (4, True),
        "factor 4, no row given up": (4, False),
        "factor 16": (16, True),
        "factor 64": (64, True),
        "dense": (math.inf, True),
    }
    times = {name: [] for name in variants}
    tops = {}
    for _ in range(args.rounds):
        for name, (factor, give_up) in variants.items():
            with (
                common.switched(decoding, "_PRUNING_FACTOR", factor),
                common.switched(decoding, "_GIVE_UP", give_up),
            ):
                start = time.perf_counter()
                tops[name] = clf.predict_top_k(queries, 5)
                times[name].append(time.perf_counter() - start)
    shipped = tops["factor 4 (shipped)"][0]
    print("| pruning | s each round | same top-5 as shipped | P@1 |")
    print("|---|---|---|---|")
    for name, values in times.items():
        labels = tops[name][0]
        print(
            f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | "
            f"{'yes' if np.array_equal(labels, shipped) else 'NO'} | "
            f"{np.mean(labels[:, 0] == truth):.3f} |"
        )


if __name__ == "__main__":
    main()
