"""Memory and time of a model with millions of classes: partial_fit, top-k, predict.

    python benchmarks/bench_decode_memory.py --classes 3000000 --repetitions 32
    PYTHONPATH=<other checkout> python benchmarks/bench_decode_memory.py ...

At extreme K the class-to-bucket table (``R * K`` entries) and the members
of every bucket, which exact top-k's threshold algorithm reads, outweigh a
small network.  This script builds such a model cheaply:
``partial_fit(X, y, classes=np.arange(K))`` on ``--rows`` random rows of 20
features, with a small network (``hidden_layer_sizes=(32,)``), continues
it twice on 256 of those rows (the second time passing ``classes``
again, as streaming code often does), then calls
``predict_top_k`` and ``predict`` on ``--queries`` rows, and last the
exact top-5 over every class alone (the rows' fallback when exact top-k's
threshold algorithm cannot prove their top) and ``decision_function`` on
10 rows (every class's score), and saves and loads the model.  After
each step it prints the process's peak resident memory (``ru_maxrss``)
and the seconds the step took.  Run it in a fresh process for each package compared: the
peak only grows.

The model is barely trained, so its scores are nearly flat and exact
top-k's pruning cannot prove any row's top: the seconds are its worst
case.  They compare between packages run one after the other on one
machine, not with a trained model's.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def dense_top_5(clf, X):
    """Exact top-5 over every class, the path rows fall back to when the
    threshold algorithm cannot prove their top (``Decoder._dense``), alone."""
    decoder = clf._decoder()
    for outputs in clf._iter_outputs(X):
        decoder._dense(outputs, 5, clf.aggregation)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=3_000_000)
    parser.add_argument("--repetitions", type=int, default=32)
    parser.add_argument("--buckets", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument(
        "--labels",
        choices=["int", "str"],
        default="int",
        help="classes 0..K-1, or the strings 'c0000000'.. in the same order",
    )
    args = parser.parse_args(argv)

    import common

    import sklearn_mach
    from sklearn_mach import MACHClassifier

    rng = np.random.RandomState(0)
    X = rng.rand(args.rows, 20).astype(np.float32)
    classes = np.arange(args.classes)
    if args.labels == "str":
        classes = np.char.add("c", np.char.zfill(classes.astype(str), 7))
    y = classes[rng.randint(0, args.classes, args.rows)]
    queries = X[: args.queries]
    clf = MACHClassifier(
        device="cpu",  # the CPU's decoding and memory, whatever the machine
        n_buckets=args.buckets,
        n_repetitions=args.repetitions,
        hidden_layer_sizes=(32,),
        random_state=0,
    )
    print(
        f"sklearn_mach {sklearn_mach.__version__} from {sklearn_mach.__file__}\n"
        f"K={args.classes:,} ({args.labels} labels), R={args.repetitions}, "
        f"B={args.buckets}; "
        f"bucket table {4 * args.repetitions * args.classes / 2**20:,.0f} MiB "
        "as int32.\n"
    )
    print("| step | s | peak RSS MiB |")
    print("|---|---|---|")
    print(f"| imports and data | | {common.peak_rss_mib():,.0f} |")
    steps = [
        ("partial_fit", lambda: clf.partial_fit(X, y, classes=classes)),
        ("partial_fit again, 256 rows", lambda: clf.partial_fit(X[:256], y[:256])),
        (
            "partial_fit again, 256 rows, classes passed",
            lambda: clf.partial_fit(X[:256], y[:256], classes=classes),
        ),
        (f"predict_top_k, {args.queries} rows", lambda: clf.predict_top_k(queries, 5)),
        (f"predict, {args.queries} rows", lambda: clf.predict(queries)),
        (f"dense top-5 alone, {args.queries} rows", lambda: dense_top_5(clf, queries)),
        ("decision_function, 10 rows", lambda: clf.decision_function(queries[:10])),
        ("save", lambda: clf.save(path)),
        ("load", lambda: MACHClassifier.load(path)),
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.mach"
        for name, step in steps:
            start = time.perf_counter()
            step()
            print(
                f"| {name} | {time.perf_counter() - start:.1f} | {common.peak_rss_mib():,.0f} |"
            )


if __name__ == "__main__":
    main()
