"""What saving in half precision costs: one fitted model, loaded from each file.

    python benchmarks/bench_float16.py --output benchmarks/results/float16_pypi.md
    python benchmarks/bench_float16.py --dataset synthetic-100 --max-train 2000 --n-features 500

Fits ``MACHClassifier(random_state=seed)`` (its defaults) once, saves it with
``save(path, weights_dtype=...)`` in float32, float16 and bfloat16, loads
each file and prints, per file and aggregation: its size, top-1 and top-5
accuracy of the exact ``predict_top_k(X_test, 5)``, and how many queries'
top-1 class or top-5 list differ from the float32 file's.  pypi-maskedword
(``../shared/data`` or ``$SKLEARN_MACH_DATA``) takes the same ``--max-test``
random test rows as ``bench_scale.py``; ``synthetic-K`` is
``common.synthetic_dataset``.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DTYPES = ("float32", "float16", "bfloat16")
AGGREGATIONS = ("logit_sum", "mean")


def load(dataset, max_train, max_test, seed, n_features=20_000):
    """X, y, X_test, y_test (class ids): multiclass data only."""
    import common

    if dataset.startswith("synthetic-"):
        X, Y, X_test, Y_test = common.synthetic_dataset(
            int(dataset.split("-", 1)[1]),
            max_train,
            n_test=max_test or 10_000,
            n_features=n_features,
            seed=seed,
        )
    else:
        X, Y, X_test, Y_test = common.load_dataset(
            dataset, max_train=max_train, seed=seed
        )
        # the rows bench_scale.py takes
        X_test, Y_test = common.test_subset(X_test, Y_test, max_test, seed)
    if not (common.is_multiclass(Y) and common.is_multiclass(Y_test)):
        raise SystemExit(f"{dataset} is not single-label: top-k accuracy needs it.")
    return X, Y.indices, X_test, Y_test.indices


def compare(clf, X_test, y_test, folder):
    """One row per (weights_dtype, aggregation): size, accuracy, changes."""
    import common

    rows, reference = [], {}
    for dtype in DTYPES:
        path = Path(folder) / f"model_{dtype}.skmach"
        clf.save(path, weights_dtype=dtype)
        loaded = type(clf).load(path)
        for aggregation in AGGREGATIONS:
            loaded.set_params(aggregation=aggregation)
            top, _ = loaded.predict_top_k(X_test, 5)
            top = np.asarray(top)
            first = reference.setdefault(aggregation, top)
            top1, top5 = common.top1_top5(top, y_test)
            rows.append(
                dict(
                    dtype=dtype,
                    aggregation=aggregation,
                    mb=path.stat().st_size / 1e6,
                    top1=top1,
                    top5=top5,
                    top1_changed=int((top[:, 0] != first[:, 0]).sum()),
                    top5_changed=int((top != first).any(1).sum()),
                )
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-features", type=int, default=20_000, help="synthetic-K only"
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.output:  # now, not after the hour-long fit
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).touch()

    from sklearn_mach import MACHClassifier, __version__

    X, y, X_test, y_test = load(
        args.dataset, args.max_train, args.max_test, args.seed, args.n_features
    )
    clf = MACHClassifier(random_state=args.seed)
    start = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        rows = compare(clf, X_test, y_test, folder)

    lines = [
        f"sklearn_mach {__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}.",
        "",
        f"`MACHClassifier(random_state={args.seed})` (B={clf.n_buckets_}, "
        f"R={clf.n_repetitions}, {clf.n_iter_} epochs) fitted once on "
        f"{X.shape[0]:,} rows of {args.dataset} in {fit_s:.0f} s; "
        f"{X_test.shape[0]:,} test queries.  Each file is loaded and "
        "predicts the exact top-5; changed: queries whose top-1 class (top-5 "
        "list, in order) differs from the float32 file's, same aggregation.",
        "",
        "| weights_dtype | file MB | aggregation | top-1 | top-5 "
        "| top-1 changed | top-5 changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['mb']:.2f} | {r['aggregation']} | "
            f"{r['top1']:.4f} | {r['top5']:.4f} | {r['top1_changed']:,} | "
            f"{r['top5_changed']:,} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
