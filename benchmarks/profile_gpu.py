"""Where a GPU training step and an exact top-5 query go: torch.profiler tables.

    python benchmarks/profile_gpu.py > benchmarks/results/profile_gpu.txt

Trains R = 8 and 32 networks (B=2048, batch 1024) on 200,000 pypi-maskedword
rows for one epoch under the profiler, then predicts the top 5 of 20,000
queries, and prints the operators by device time and by host time.  On a
machine without CUDA it profiles the CPU on a smaller subset.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    import common

    from sklearn_mach import MACHClassifier

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    n = 200_000 if cuda else 20_000
    X, Y, X_test, _ = common.load_dataset("pypi-maskedword", max_train=n)
    y, classes = Y.indices, np.arange(Y.shape[1])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    MACHClassifier(n_buckets=2048, n_repetitions=2, device=device).partial_fit(
        X[:5000], y[:5000], classes=classes
    )
    runs = [(8, False), (32, False), (32, True)] if cuda else [(8, False)]
    for R, tf32 in runs:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        clf = MACHClassifier(
            n_buckets=2048,
            n_repetitions=R,
            batch_size=1024,
            lr=3e-3,
            device=device,
            random_state=0,
        )
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        print(
            f"\n### R={R} tf32={tf32}: {n / seconds:,.0f} rows/s, "
            f"{seconds / (n / 1024) * 1e3:.2f} ms/step"
        )
        print(prof.key_averages().table(sort_by=sort, row_limit=22))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    queries = X_test[:20000]
    torch.backends.cuda.matmul.allow_tf32 = False
    clf.predict_top_k(queries[:2048], k=5)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        clf.predict_top_k(queries, k=5)
        seconds = time.perf_counter() - start
    print(
        f"\n### exact top-5, R={clf.n_repetitions}: "
        f"{queries.shape[0] / seconds:,.0f} queries/s"
    )
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
