"""Time and memory of an exact ``predict_top_k`` with a large ``k``.

    python benchmarks/bench_large_k.py --output benchmarks/results/large_k.md
    PYTHONPATH=<other checkout> python benchmarks/bench_large_k.py ...

Each case builds a flat model of ``K`` classes cheaply (R = 2, no hidden
layer, one ``partial_fit`` on 30 random rows of 8 features with
``classes=np.arange(K)``: nearly flat scores, exact top-k's worst case),
calls ``predict_top_k`` once on 2 rows (the decoder and the buckets'
members are built then), and then times ``predict_top_k(X, k)`` on
``rows`` random rows, sampling the process's resident memory meanwhile.
"peak MiB" is the growth of the resident memory during that call over
what it was before.  Every case runs in a process of its own, so that
one case's freed memory does not hide the next one's.  Cases are
``K,B,k,rows[,working_memory MiB]``.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CASES = [
    "200000,4096,5,300",
    "200000,4096,20000,300",
    "200000,4096,20000,300,64",
    "200000,4096,200000,100",
    "1000000,8192,100000,50",
]


def _resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(case):
    """Run ``case`` in this process: ``(seconds, peak MiB, answer MiB)``."""
    import sklearn
    import torch

    from sklearn_mach import MACHClassifier

    torch.set_num_threads(1)
    K, B, k, rows, *wm = (int(float(v)) for v in case.split(","))
    rng = np.random.RandomState(0)
    X = rng.randn(30, 8).astype(np.float32)
    clf = MACHClassifier(  # the CPU's decoding, whatever the machine
        n_buckets=B,
        n_repetitions=2,
        hidden_layer_sizes=(),
        random_state=0,
        device="cpu",
    ).partial_fit(X, rng.randint(0, K, 30), classes=np.arange(K))
    queries = rng.randn(rows, 8).astype(np.float32)
    clf.predict_top_k(queries[:2], 3)  # the decoder and the buckets' members
    base = _resident()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _resident())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with sklearn.config_context(working_memory=wm[0] if wm else 1024):
        start = time.perf_counter()
        labels, scores = clf.predict_top_k(queries, k)
        seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _resident())
    answer = (labels.nbytes + scores.nbytes) / 2**20
    return seconds, (peak[0] - base) / 2**20, answer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.one:
        print(*one(args.one))
        return
    import sklearn_mach

    lines = [
        f"Package: {Path(sklearn_mach.__file__).parent}; one thread.",
        "",
        "| K | B | k | rows | working_memory MiB | seconds | peak MiB | answer MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for case in args.cases:
        K, B, k, rows, *wm = case.split(",")
        run = subprocess.run(
            [sys.executable, __file__, "--one", case], capture_output=True, text=True
        )
        if run.returncode:
            last = (run.stderr.strip().splitlines() or ["?"])[-1]
            result = f"failed: {last[:120]} | | "
        else:
            seconds, peak, answer = map(float, run.stdout.split()[-3:])
            result = f"{seconds:.2f} | {peak:,.0f} | {answer:,.0f}"
        row = f"| {K} | {B} | {k} | {rows} | {wm[0] if wm else 1024} | {result} |"
        lines.append(row)
        print(row, flush=True)
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
