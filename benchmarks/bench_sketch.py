"""Sparse label sketches: scipy's product with the sketch matrix against the entries.

    python benchmarks/bench_sketch.py > benchmarks/results/sketch.md
    python benchmarks/bench_sketch.py --classes 2000 --rows 2000 --labels 500 \\
        --buckets 64 >> benchmarks/results/sketch.md
    python benchmarks/bench_sketch.py --classes 2000 --rows 500 --labels 2000 \\
        --buckets 512 >> benchmarks/results/sketch.md
    python benchmarks/bench_sketch.py --classes 10000 --rows 100 --rounds 1

``CountMinLabelHasher.transform`` of a sparse label matrix ``Y`` (``n`` rows
of ``--labels`` random labels among ``K`` classes, ``R=8``, ``B`` of
``--buckets``) two ways: as scipy's product ``Y @ sketch_matrix()``, which
builds the ``K x RB`` sketch matrix (``K * R`` entries) per call, and from
``Y``'s entries (``_sparse_sketch``: each non-zero lands in ``R`` buckets,
written as CSR arrays, then summed).  The last column says which way
``transform`` takes (the product where ``Y`` holds at least
``_hashing._PRODUCT_NONZEROS_PER_CLASS`` non-zeros per class and its rows
``B / _hashing._PRODUCT_BUCKETS_PER_LABEL`` labels or more on average).  Times are the
best of ``--rounds``; peak memory is traced by ``tracemalloc`` (numpy's and
scipy's arrays) in a separate call.  Both ways give the same sketch
(checked).
"""

import argparse
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))


def product(hasher, Y):
    S = sp.csr_matrix(Y @ hasher.sketch_matrix().astype(Y.dtype))
    S.sort_indices()
    return S


def entries(hasher, Y):
    return hasher._sparse_sketch(Y)


def measure(fn, rounds, *args):
    """(best seconds, traced peak MiB, result) of ``fn(*args)``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, peak, result


def main(argv=None):
    from sklearn_mach import CountMinLabelHasher, __version__

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--classes", type=int, nargs="+", default=[10**4, 10**5, 10**6, 10**7]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 10_000, 200_000])
    parser.add_argument(
        "--labels", type=int, nargs="+", default=[5], help="labels per row"
    )
    parser.add_argument("--buckets", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(
        f"sklearn_mach {__version__}; {platform.processor() or platform.machine()}; "
        f"R=8, B={args.buckets}; labels drawn at random, a label drawn twice in "
        "a row counted once (nnz).\n"
    )
    print(
        "| K | rows | labels a row | nnz | product s | product MiB | entries s "
        "| entries MiB | shipped |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for K in args.classes:
        hasher = CountMinLabelHasher(
            n_buckets=args.buckets, n_repetitions=8, random_state=0
        )
        hasher.fit(sp.csr_matrix((1, K)))
        for n in args.rows:
            for labels in args.labels:
                nnz = labels * n
                Y = sp.csr_matrix(
                    (
                        np.ones(nnz, np.float32),
                        (np.repeat(np.arange(n), labels), rng.integers(0, K, nnz)),
                    ),
                    shape=(n, K),
                )
                Y.data[:] = 1  # a label drawn twice in a row is one label
                p_s, p_mib, P = measure(product, args.rounds, hasher, Y)
                e_s, e_mib, E = measure(entries, args.rounds, hasher, Y)
                if (P != E).nnz:
                    raise SystemExit(f"the two sketches differ at K={K}, n={n}")
                product_rule = hasher._by_product(Y.shape, Y.nnz)  # transform's way
                print(
                    f"| {K:,} | {n:,} | {labels} | {Y.nnz:,} | {p_s:.3f} | "
                    f"{p_mib:.0f} | {e_s:.3f} | {e_mib:.0f} | "
                    f"{'product' if product_rule else 'entries'} |"
                )


if __name__ == "__main__":
    main()
