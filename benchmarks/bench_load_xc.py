"""Memory and time of load_xc_repository on a file of short lines.

    python benchmarks/bench_load_xc.py [--other <checkout>] [--rounds 2]

Writes the training set of pypi-maskedword (under ``SKLEARN_MACH_DATA``;
about 6 features and one label a line, 60 characters) with
``dump_xc_repository`` to a temporary file, or, with ``--synthetic N``,
``N`` random rows of the same shape, and loads it in a fresh Python
process for each run, with the process's peak resident memory (Linux's
``VmHWM``) reset just before, so that each peak is that load's alone.  It prints the file's size, the seconds the load
took, and the peak's growth during the load, in MiB and as a multiple of
the file's size.  ``--other`` names another checkout whose
``sklearn_mach`` loads the same file in runs alternating with this one's
(this machine's speed drifts: only runs made together compare); the
other column is the ``sklearn_mach`` this script imports.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent

# Run in a fresh interpreter: imports first, then the load alone is measured
# (Linux: the peak of /proc/self/status, reset by /proc/self/clear_refs).
LOAD = """
import json, sys, time
import numpy, scipy.sparse, sklearn_mach
from sklearn_mach.datasets import load_xc_repository

def status(field):  # kB
    with open("/proc/self/status") as f:
        return 1024 * int(next(l for l in f if l.startswith(field)).split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from the resident size now
before = status("VmRSS:")
start = time.perf_counter()
X, Y = load_xc_repository(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "growth": status("VmHWM:") - before,
                  "nnz": [X.nnz, Y.nnz], "version": sklearn_mach.__version__,
                  "from": sklearn_mach.__file__}))
"""


def dataset(synthetic, seed=0):
    """X, Y to write: pypi-maskedword's training set, or random rows alike."""
    if synthetic is None:
        sys.path.insert(0, str(HERE))
        import common

        directory = common.DATA_DIR / "pypi-maskedword"
        X = sp.load_npz(directory / "X_train.npz")
        Y = sp.load_npz(directory / "Y_train.npz")
        return X, Y, "pypi-maskedword's training set"
    rng = np.random.RandomState(seed)
    columns = np.sort(rng.randint(78_453, size=(synthetic, 6)), axis=1)
    X = sp.csr_matrix(
        (np.ones(columns.size), columns.ravel(), np.arange(0, columns.size + 1, 6)),
        shape=(synthetic, 78_453),
    )
    X.sum_duplicates()  # a column drawn twice: one feature of value 2
    labels = rng.randint(18_069, size=synthetic)
    Y = sp.csr_matrix(
        (np.ones(synthetic), labels, np.arange(synthetic + 1)),
        shape=(synthetic, 18_069),
    )
    return X.astype(np.float32), Y.astype(np.float32), f"{synthetic:,} random rows"


def load_in_a_fresh_process(path, checkout):
    """The measurements of one load, by ``checkout``'s sklearn_mach."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(checkout)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    result = subprocess.run(  # not in the caller's directory: a checkout
        [sys.executable, "-c", LOAD, str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="another checkout to compare")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--synthetic", type=int, help="random rows instead of pypi-maskedword"
    )
    args = parser.parse_args(argv)

    import sklearn_mach
    from sklearn_mach.datasets import dump_xc_repository

    # the child runs in a temporary directory: absolute checkouts
    this = Path(sklearn_mach.__file__).resolve().parent.parent
    checkouts = [this] if args.other is None else [args.other.resolve(), this]

    X, Y, description = dataset(args.synthetic)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.txt"
        dump_xc_repository(X, Y, path)
        size = path.stat().st_size
        print(
            f"{description}: {X.shape[0]:,} lines, {X.nnz:,} features and "
            f"{Y.nnz:,} labels in all, a {size / 2**20:.1f} MiB file.\n"
        )
        print("| run | sklearn_mach | seconds | peak growth, MiB | x file size |")
        print("|---|---|---|---|---|")
        for round_ in range(1, args.rounds + 1):
            for checkout in checkouts:
                run = load_in_a_fresh_process(path, checkout)
                assert run["nnz"] == [X.nnz, Y.nnz], run
                source = Path(run["from"]).resolve().parent.parent
                if source != checkout:
                    raise SystemExit(
                        f"{checkout}: its sklearn_mach was not the one imported "
                        f"({source}); is it a checkout?"
                    )
                print(
                    f"| {round_} | {run['version']} (`{source}`) | "
                    f"{run['seconds']:.2f} | {run['growth'] / 2**20:.0f} | "
                    f"{run['growth'] / size:.1f} |"
                )


if __name__ == "__main__":
    main()
