"""Where a CPU training step goes: the operators of one epoch, per step.

    python benchmarks/profile_cpu.py --rows 300000 > benchmarks/results/profile_cpu_after.md
    python benchmarks/profile_cpu.py --rows 0 --no-profile --grouped

Trains ``MACHClassifier`` with the settings of the CPU epoch target
(B=512, R=4, 4,096 hashed input rows, batch 256, lr 0.01) for one epoch on
``--rows`` random rows of pypi-maskedword (or ``--dataset``; 0: all),
under ``torch.profiler``, and prints a Markdown table of the operators by
self CPU time, in milliseconds per network step (one network, one
batch).  Run it on two trees to compare them: it imports ``sklearn_mach``
from wherever Python finds it.  ``--no-profile`` only times the fit; ``--grouped`` trains the
repetitions in groups, the GPU's path, on the CPU; ``--defaults`` uses
``MACHClassifier()``'s settings (one epoch) instead; ``--n-jobs`` trains
repetitions in parallel (in threads, or the joblib ``--backend`` named);
``--torch-loss`` trains with ``F.cross_entropy`` in place of the shipped
loss (see ``bench_loss.py``); ``--linear onednn`` or ``--linear blas``
runs the linear layers' float32 products through oneDNN or through
torch's BLAS whatever the CPU (``auto``, the default: as shipped; see
``bench_linear_cpu.py``).
"""

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import joblib
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextlib.contextmanager
def grouped_on_cpu(grouped):
    """Train on the GPU's grouped path on the CPU too while in the block
    (``_training._GROUPED_DEVICES``), and restore the shipped devices after.
    Without ``grouped`` it imports nothing, so that 0.1 is still timed."""
    if not grouped:
        yield
        return
    import common

    from sklearn_mach import _training

    devices = _training._GROUPED_DEVICES | {"cpu"}
    with common.switched(_training, "_GROUPED_DEVICES", devices):
        yield


@contextlib.contextmanager
def linear_products(choice):
    """Run the linear layers' products as ``choice`` says while in the block
    (``_network._ONEDNN_LINEAR``), and restore the shipped choice after.
    ``"auto"`` imports nothing, so that 0.1 is still timed."""
    if choice == "auto":
        yield
        return
    import common

    from sklearn_mach import _network

    with common.switched(_network, "_ONEDNN_LINEAR", choice == "onednn"):
        yield


def main(argv=None):
    import bench_loss
    import common

    import sklearn_mach
    from sklearn_mach import MACHClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="pypi-maskedword",
        help="a dataset under the data folder, or synthetic-K (K classes)",
    )
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--grouped", action="store_true")
    parser.add_argument("--defaults", action="store_true")
    parser.add_argument("--torch-loss", action="store_true")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--linear", choices=["auto", "onednn", "blas"], default="auto")
    parser.add_argument(
        "--backend", default=None, help="a joblib backend for --n-jobs (loky, ...)"
    )
    args = parser.parse_args(argv)
    if args.linear != "auto" and args.backend not in (None, "threading"):
        # the switch is a module flag of this process: workers would import
        # the shipped choice and the output would name the wrong products
        parser.error("--linear applies in this process only: use threads")
    settings = (
        dict(max_epochs=1, random_state=0, device="cpu")
        if args.defaults
        else common.CPU_EPOCH_SETTINGS
    )
    if args.n_jobs is not None:
        settings = dict(settings, n_jobs=args.n_jobs)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, _ = common.training_subset(args.dataset, args.rows)
    # warm up imports and allocators outside the profile
    products = linear_products(args.linear)
    with grouped_on_cpu(args.grouped), products:
        MACHClassifier(**dict(settings, n_repetitions=1)).fit(X[:5000], y[:5000])
    profiling = (
        contextlib.nullcontext()
        if args.no_profile
        else profile(activities=[ProfilerActivity.CPU])
    )
    backend = (
        contextlib.nullcontext()
        if args.backend is None
        else joblib.parallel_config(backend=args.backend)
    )
    loss = bench_loss.training_loss("torch" if args.torch_loss else "shipped")
    products = linear_products(args.linear)
    with grouped_on_cpu(args.grouped), products, profiling as prof, backend, loss:
        start = time.perf_counter()
        clf = MACHClassifier(**settings).fit(X, y)
        seconds = time.perf_counter() - start
    # getattr: also times 0.1 (PYTHONPATH=<0.1 checkout>), which has no
    # "auto" batch size and no n_iter_
    batch_size = getattr(clf, "batch_size_", clf.batch_size)
    steps = clf.n_repetitions * -(-X.shape[0] // batch_size)
    assert getattr(clf, "n_iter_", 1) == 1
    print(
        f"sklearn_mach {sklearn_mach.__version__} from "
        f"`{Path(sklearn_mach.__file__).parent}`; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}.\n"
    )
    print(
        f"Settings {settings} (B={getattr(clf, 'n_buckets_', clf.n_buckets)}, "
        f"R={clf.n_repetitions}, "
        f"batch {batch_size}, "
        f"{getattr(clf, 'n_hashed_features_', clf.n_hashed_features)} hashed rows); "
        f"{X.shape[0]:,} rows, {steps:,} network steps: "
        f"fit {seconds:.1f} s, {1e3 * seconds / steps:.3f} ms per network step"
        + (" (grouped)" if args.grouped else "")
        + (" (F.cross_entropy)" if args.torch_loss else "")
        + {"auto": "", "onednn": " (oneDNN products)", "blas": " (BLAS products)"}[
            args.linear
        ]
        + (".\n" if args.no_profile else " (profiler on).\n")
    )
    if args.no_profile:
        return
    events = sorted(
        prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True
    )
    total = sum(e.self_cpu_time_total for e in events)
    print("| operator | calls per step | self ms per step | share |")
    print("|---|---|---|---|")
    for e in events[: args.top]:
        print(
            f"| `{e.key}` | {e.count / steps:.2f} | "
            f"{e.self_cpu_time_total / 1e3 / steps:.3f} | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )
    print(f"| all operators | | {total / 1e3 / steps:.3f} | 100% |")


if __name__ == "__main__":
    main()
