"""GPU throughput of MACH: fit rows/s by R, the full network, exact top-5, top-1.

One command for a GPU machine, a few minutes on one card:

    python benchmarks/bench_gpu.py --output benchmarks/results/gpu.md

It prints (and writes as Markdown):

- fit rows/s of one epoch for R = 1, 8 and 32 at B=2048, batch 1024, and the
  ratio of each fit time to R=1's;
- fit rows/s of the full-softmax network of the same width (``common.FullNetwork``);
- peak GPU memory of each fit;
- the default ``MACHClassifier()`` on the whole training set: fit time,
  top-1 and top-5 accuracy, and exact top-5 queries/s of ``predict_top_k``.

On a machine without CUDA it runs the same steps on the CPU: slowly, so
pass a subset (``--max-train``, ``--max-test``), as CI's smoke test does.
The test queries are ``common.test_subset``'s random rows, the ones the
CPU benchmarks score (pypi-maskedword's rows are in file order).  Datasets:
``pypi-maskedword`` (``../shared/data`` or ``$SKLEARN_MACH_DATA``) or
``synthetic-K`` (``common.synthetic_dataset``).
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The MACH rows' settings (also those profile_gpu.py profiles).
N_BUCKETS, BATCH_SIZE, LR = 2048, 1024, 3e-3


def mach(R, device, n_buckets=N_BUCKETS, batch_size=BATCH_SIZE, **kwargs):
    """The MACHClassifier of a MACH row: ``R`` repetitions, seeded."""
    from sklearn_mach import MACHClassifier

    return MACHClassifier(
        n_buckets=n_buckets,
        n_repetitions=R,
        batch_size=batch_size,
        lr=LR,
        device=device,
        random_state=0,
        **kwargs,
    )


def load(dataset, max_train, max_test, seed=0):
    """X, y (class ids), X_test, the test rows' class ids and K."""
    import common

    if dataset.startswith("synthetic-"):
        X, Y, X_test, Y_test = common.synthetic_dataset(
            int(dataset.split("-", 1)[1]), max_train, n_test=max_test or 2000, seed=seed
        )
    else:
        X, Y, X_test, Y_test = common.load_dataset(
            dataset, max_train=max_train, seed=seed
        )
        X_test, Y_test = common.test_subset(X_test, Y_test, max_test, seed)
    return X, Y.indices.astype(np.int64), X_test, Y_test.indices, Y.shape[1]


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed_fit(make, X, y, device, epochs):
    """(fitted model, seconds, peak device MiB) of ``fit`` for ``epochs`` epochs."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    clf = make(max_epochs=epochs)
    synchronize(device)
    start = time.perf_counter()
    clf.fit(X, y)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    )
    return clf, seconds, peak


def main(argv=None):
    shipped = torch.backends.cuda.matmul.allow_tf32
    try:
        return _main(argv)
    finally:  # the caller's setting back, also where a fit failed
        torch.backends.cuda.matmul.allow_tf32 = shipped


def _main(argv):
    import common

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=20000)
    parser.add_argument("--repetitions", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--n-buckets", type=int, default=N_BUCKETS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-defaults", action="store_true")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.output:  # now, not after the hour-long fit
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).touch()

    from common import FullNetwork

    from sklearn_mach import MACHClassifier

    device = "cuda" if torch.cuda.is_available() else "cpu"
    X, y, X_test, y_test, n_classes = load(args.dataset, args.max_train, args.max_test)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor()
    lines = [
        f"Device: {device} ({name}); torch {torch.__version__}; dataset {args.dataset}: "
        f"{X.shape[0]:,} training rows, {X_test.shape[0]:,} test queries, "
        f"{n_classes:,} classes, {X.shape[1]:,} features.",
        "",
        f"Fit, B={args.n_buckets}, batch {args.batch_size}, hidden (256,), lr 3e-3.",
        "One epoch of `fit` end to end (networks built, data moved, weights copied "
        "back), and the epoch alone (the difference of 3-epoch and 1-epoch fits).",
        "",
        "| model | matmul | fit 1 epoch s | epoch s | rows/s (epoch) | "
        f"epoch / R={min(args.repetitions)} | peak GPU MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)

    def save():  # after every row: a run cut short keeps what it measured
        if args.output:
            Path(args.output).write_text("\n".join(lines) + "\n")

    def row_model(R):
        return lambda **kwargs: mach(
            R, device, args.n_buckets, args.batch_size, **kwargs
        )

    warm = row_model(2)(
        max_epochs=1
    )  # CUDA context, cuBLAS handles, kernels: not timed
    warm.fit(X[:20000], y[:20000])
    precisions = ["fp32", "tf32"] if device == "cuda" else ["fp32"]
    for precision in precisions:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        base = None  # the smallest R's epoch, run first
        for R in sorted(args.repetitions):
            _, one, peak = timed_fit(row_model(R), X, y, device, 1)
            _, three, _ = timed_fit(row_model(R), X, y, device, 3)
            epoch = (three - one) / 2
            base = epoch if base is None else base
            if epoch <= 0:  # a tiny subset: the fits' noise exceeds an epoch
                row = (
                    f"| MACH R={R} | {precision} | {one:.2f} | "
                    f"n/a (3 epochs took {three:.2f} s) | | | {peak:,.0f} |"
                )
            else:
                ratio = f"{epoch / base:.2f}" if base > 0 else "n/a"
                row = (
                    f"| MACH R={R} | {precision} | {one:.2f} | {epoch:.2f} | "
                    f"{X.shape[0] / epoch:,.0f} | {ratio} | {peak:,.0f} |"
                )
            lines.append(row)
            print(row, flush=True)
            save()
    torch.backends.cuda.matmul.allow_tf32 = False
    if not args.skip_full:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        Y = sp.csr_matrix(
            (np.ones(len(y)), (np.arange(len(y)), y)), shape=(len(y), n_classes)
        )
        full = FullNetwork(max_epochs=1, batch_size=args.batch_size, lr=LR)
        synchronize(device)
        start = time.perf_counter()
        full.fit(X, Y)
        synchronize(device)
        seconds = time.perf_counter() - start
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if device == "cuda"
            else float("nan")
        )
        row = (
            f"| full network, {n_classes:,} outputs | fp32 | {seconds:.2f} | | "
            f"{X.shape[0] / seconds:,.0f} (whole fit) | | {peak:,.0f} |"
        )
        lines.append(row)
        print(row, flush=True)
        save()

    if not args.skip_defaults:
        clf = MACHClassifier(device=device, random_state=0)
        synchronize(device)
        start = time.perf_counter()
        clf.fit(X, y)
        synchronize(device)
        fit_s = time.perf_counter() - start
        clf.predict_top_k(X_test[:2048], k=5)  # device copies and decoder, once
        synchronize(device)
        start = time.perf_counter()
        top, _ = clf.predict_top_k(X_test, k=5)
        synchronize(device)
        predict_s = time.perf_counter() - start
        top1, top5 = common.top1_top5(top, y_test)
        top_mean, _ = clf.set_params(aggregation="mean").predict_top_k(X_test, k=5)
        top1_mean, top5_mean = common.top1_top5(top_mean, y_test)
        lines += [
            "",
            f"`MACHClassifier()` defaults (B={clf.n_buckets_}, R={clf.n_repetitions}, "
            f"batch {clf.batch_size_}, lr {clf.lr_:g}, {clf.n_iter_} epochs), fp32:",
            "",
            "| fit s | top-1 | top-5 | top-1, top-5 with mean | exact top-5 s | "
            "queries/s |",
            "|---|---|---|---|---|---|",
            f"| {fit_s:.1f} | {top1:.4f} | {top5:.4f} | {top1_mean:.4f}, {top5_mean:.4f} | "
            f"{predict_s:.2f} | {X_test.shape[0] / predict_s:,.0f} |",
        ]
        print("\n".join(lines[-6:]), flush=True)
    save()


if __name__ == "__main__":
    main()
