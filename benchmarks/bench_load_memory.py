"""Peak memory of ``MACHClassifier.save`` and ``load`` against the model's size.

    python benchmarks/bench_load_memory.py > benchmarks/results/load_memory.md
    PYTHONPATH=<other checkout> python benchmarks/bench_load_memory.py
    python benchmarks/bench_load_memory.py --features 2000 --repetitions 2
    python benchmarks/bench_load_memory.py --features 2000000 --hashed-features 1024 --repetitions 4
    python benchmarks/bench_load_memory.py --fresh-process ...

Fits ``MACHClassifier(n_repetitions=R, n_hashed_features=None)`` for one
epoch on 1,000 random sparse rows of ``--features`` features (the input
tables make the model: ``R x features x 256`` float32 weights), then saves
it to a temporary file and loads it back, each step in this process after
resetting the peak resident memory (Linux: ``/proc/self/clear_refs``,
``VmHWM``).  Prints the model's parameter megabytes, the file's, and each
step's peak above the memory in use before it.  ``--hashed-features N``
hashes the features into ``N`` table rows instead: the model is then the
small tables and each repetition's feature map (a buffer of one row index
per feature), which the model's megabytes include.  Imports
``sklearn_mach`` from wherever Python finds it, to compare two trees.

In this process, load can reuse memory the process freed before it (the
fitted model's, kept by the allocator) without raising the peak: its
figure is then below what it holds.  ``--fresh-process`` measures load in
a new Python process instead, after a first load of a small model there
(imports and one-time allocations), and prints that process's figure too.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))


def status_mib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def peak_above(step):
    """(result, seconds, peak MiB above the memory in use before ``step()``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = status_mib("VmRSS")
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    return result, seconds, status_mib("VmHWM") - before


def load_in_fresh_process(path, warmup):
    """load's (seconds, peak MiB above before) in a new Python process."""
    import json
    import subprocess

    import sklearn_mach

    # the child imports this process's sklearn_mach: its folder goes first
    # on the path (a relative PYTHONPATH would name another folder there)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[3]); "
        "import bench_load_memory as b; "
        "import sklearn_mach; from sklearn_mach import MACHClassifier; "
        "MACHClassifier.load(sys.argv[2]); "
        "_, s, p = b.peak_above(lambda: MACHClassifier.load(sys.argv[1])); "
        "print(json.dumps([s, p, sklearn_mach.__file__]))"
    )
    package = Path(sklearn_mach.__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(warmup), str(package.parent)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,  # where bench_load_memory is
    )
    if done.returncode:
        raise RuntimeError(f"Loading in a new process failed:\n{done.stderr}")
    seconds, peak, where = json.loads(done.stdout.splitlines()[-1])
    if Path(where).resolve().parent != package:
        raise RuntimeError(f"The new process imported {where}, not {package}.")
    return seconds, peak


def main(argv=None):
    import common

    import sklearn_mach
    from sklearn_mach import MACHClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=50_000)
    parser.add_argument("--repetitions", type=int, default=8)
    parser.add_argument("--hashed-features", type=int, default=None)
    parser.add_argument("--fresh-process", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = sp.random(
        1000,
        args.features,
        density=10 / args.features,
        format="csr",
        dtype=np.float32,
        random_state=0,
    )
    y = rng.integers(0, 500, 1000)
    clf = MACHClassifier(
        n_repetitions=args.repetitions,
        n_hashed_features=args.hashed_features,
        max_epochs=1,
        random_state=0,
    ).fit(X, y)
    model_mib = common.model_bytes(clf.networks_) / 2**20
    maps = [net.feature_rows for net in clf.networks_ if net.feature_rows is not None]
    map_mib = sum(m.numel() * m.element_size() for m in maps) / 2**20
    model_mib += map_mib
    hashed = (
        f", hashed into {args.hashed_features:,} rows: feature maps "
        f"{map_mib:.0f} MiB ({maps[0].dtype})"
        if maps
        else ""
    )
    print(
        f"sklearn_mach {sklearn_mach.__version__} from "
        f"`{Path(sklearn_mach.__file__).parent}`; R={args.repetitions}, "
        f"{args.features:,} features{hashed}; model {model_mib:.0f} MiB.\n"
    )
    print("| step | seconds | peak above before, MiB | x parameters |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.skmach"
        _, seconds, peak = peak_above(lambda: clf.save(path))
        print(f"| save | {seconds:.2f} | {peak:.0f} | {peak / model_mib:.2f} |")
        clf.networks_ = None  # the model's memory goes before the load
        loaded, seconds, peak = peak_above(lambda: MACHClassifier.load(path))
        print(f"| load | {seconds:.2f} | {peak:.0f} | {peak / model_mib:.2f} |")
        if args.fresh_process:
            warmup = Path(folder) / "small.skmach"
            MACHClassifier(n_repetitions=1, max_epochs=1, random_state=0).fit(
                X[:100, :50], y[:100]
            ).save(warmup)
            seconds, peak = load_in_fresh_process(path, warmup)
            print(
                f"| load, fresh process | {seconds:.2f} | {peak:.0f} "
                f"| {peak / model_mib:.2f} |"
            )
        print(f"\nFile: {path.stat().st_size / 2**20:.0f} MiB.")
        assert len(loaded.networks_) == args.repetitions


if __name__ == "__main__":
    main()
