"""Where a GPU training step goes: epoch time by R, Python and operator profiles.

    python benchmarks/profile_gpu.py > benchmarks/results/profile_gpu.txt

For R = 1, 8 and 32 (``bench_gpu.py``'s MACH rows: B=2048, batch 1024,
lr 3e-3) it trains one warm-up epoch on 50,000 pypi-maskedword rows, then
one epoch on the whole training set, and prints that epoch's wall time (the
``partial_fit`` call, synchronized: all R networks, with the networks'
building and the copies back) and, as "batches s", network 0's ``dur`` from
its history (the batches, the steps and the one read of the losses of its
group: all R networks where they train as one group, as on a GPU with the
memory for them; network 0 alone where they train one at a time, as on the
CPU).  Until 2026-11-28 the table printed ``dur`` alone, as
"epoch s": ``results/profile_gpu.txt`` (one H200, R up to 32 in one group)
is such a run.  Then, for R = 8 and 32, one epoch on 200,000 rows under
``cProfile`` (the Python functions by own time: what the host does per step)
and one under ``torch.profiler`` (the operators by host and by device time).
A step whose host time exceeds its device time is bound by Python and
kernel launches, not arithmetic.  ``--no-profile`` prints the epoch table
alone.  On a machine without CUDA it runs on the CPU: pass a subset
(``--rows``, ``--profile-rows``; ``--dataset synthetic-K`` for
``common.synthetic_dataset``), as CI's smoke test does.
"""

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    import common
    from bench_gpu import BATCH_SIZE, mach, synchronize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--rows", type=int, default=0, help="0: all")
    parser.add_argument("--profile-rows", type=int, default=200_000)
    parser.add_argument("--repetitions", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--no-profile", action="store_true", help="the epoch table alone"
    )
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    X, y, n_classes = common.training_subset(args.dataset, args.rows)
    classes = np.arange(n_classes)
    print(f"device {device}, torch {torch.__version__}, {X.shape[0]:,} rows")

    print(
        "\n| R | epoch s (wall) | rows/s | ms/step | batches s (network 0's group) |"
        "\n|---|---|---|---|---|"
    )
    fitted = {}
    for R in args.repetitions:
        clf = mach(R, device)
        warm = min(50_000, X.shape[0])
        clf.partial_fit(X[:warm], y[:warm], classes=classes)
        synchronize(device)
        start = time.perf_counter()
        clf.partial_fit(X, y)
        synchronize(device)
        seconds = time.perf_counter() - start
        batches = clf.histories_[0][-1, "dur"]
        steps = -(-X.shape[0] // BATCH_SIZE)
        print(
            f"| {R} | {seconds:.2f} | {X.shape[0] / seconds:,.0f} "
            f"| {seconds / steps * 1e3:.2f} | {batches:.2f} |",
            flush=True,
        )
        fitted[R] = clf

    Xp, yp = X[: args.profile_rows], y[: args.profile_rows]
    steps = -(-Xp.shape[0] // BATCH_SIZE)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for R in [] if args.no_profile else [r for r in args.repetitions if r > 1]:
        clf = fitted[R]
        profiler = cProfile.Profile()
        synchronize(device)
        start = time.perf_counter()
        profiler.enable()
        clf.partial_fit(Xp, yp)
        profiler.disable()
        synchronize(device)
        seconds = time.perf_counter() - start
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(28)
        print(f"\n### cProfile, R={R}: {seconds / steps * 1e3:.2f} ms/step (profiled)")
        print(out.getvalue()[-9000:])
        with profile(activities=activities) as prof:
            clf.partial_fit(Xp, yp)
            synchronize(device)
        averages = prof.key_averages()
        print(f"\n### torch.profiler, R={R}, {steps} steps: by host (self) time")
        print(averages.table(sort_by="self_cpu_time_total", row_limit=18))
        if cuda:
            # the kernels themselves (an operator's row repeats its kernels'
            # time), without the copies of partial_fit's set-up
            kernel_us = sum(
                e.time_range.elapsed_us()
                for e in prof.events()
                if e.device_type == DeviceType.CUDA
                and not e.name.startswith(("Memcpy", "Memset"))
            )
            print(f"kernels {kernel_us / steps / 1e3:.2f} ms/step")
            print(f"\n### torch.profiler, R={R}: by device (self) time")
            print(averages.table(sort_by="self_cuda_time_total", row_limit=22))


if __name__ == "__main__":
    main()
