"""The training loss's subnormals: torch's cross-entropy against the shipped one.

    python benchmarks/bench_loss.py --rows 100000 300000 --rounds 2 > benchmarks/results/loss_cpu.md
    python benchmarks/bench_loss.py --dataset synthetic-100 --rows 2000 --rounds 1

Once a network is confident, many of its log-probabilities fall below -87,
where float32 ``exp`` returns subnormal numbers, which CPUs process 25-50x
slower than normal ones (``bench_subnormal.py``, part 1).
``F.cross_entropy`` takes ``exp`` of every log-probability in its backward
pass, and the output layer's gradient products then read the subnormals.
The shipped loss (``sklearn_mach._network._CrossEntropy``) sets
probabilities below ``2 exp(-60)`` of the largest to exactly 0 instead.

For each ``--rows`` (random training rows of the dataset), this fits
one network, ``MACHClassifier(n_repetitions=1, random_state=0)``, with its
other settings at their defaults (``"auto"`` picks batch, lr and epochs by
the number of rows), once with the shipped loss and once with
``F.cross_entropy`` put back in its place (the loss's CUDA path), alternating the order over
``--rounds`` rounds (ABBA) so that this machine's drift hits both alike.
For each fit it prints the ms per network step of every epoch (from the
training history), P@1 on ``--test-rows`` test rows (real datasets) and
the share of log-probabilities below -87.3 on 1,000 training rows after
the fit: the entries whose ``exp`` is subnormal (or 0) in float32.
"""

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: float32 exp(x) is subnormal or 0 below this
SUBNORMAL_EXP = float(np.log(np.finfo(np.float32).tiny))


@contextlib.contextmanager
def training_loss(loss):
    """Train with ``loss``: "shipped", or "torch" (``F.cross_entropy``).

    "torch" takes the loss's own switch to the path that CUDA devices run
    (``BucketLoss._CUT_DEVICES`` without the CPU).  "shipped" imports
    nothing, so that ``profile_cpu.py`` still times 0.1.
    """
    if loss == "shipped":
        yield
        return
    import common

    from sklearn_mach._network import BucketLoss

    with common.switched(BucketLoss, "_CUT_DEVICES", set()):
        yield


def fit_once(X, y, settings, loss):
    """The fitted classifier and its fit seconds, with ``loss`` in training."""
    from sklearn_mach import MACHClassifier

    with training_loss(loss):
        clf = MACHClassifier(**settings)
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
    return clf, seconds


def low_log_probability_share(clf, X):
    """Share of the networks' log-probabilities on ``X`` below SUBNORMAL_EXP."""
    from sklearn_mach._network import run_networks

    X = X.astype(np.float32)
    outputs = run_networks(clf.networks_, X, "cpu", "log_softmax", 256)
    return float(np.mean([(out < SUBNORMAL_EXP).float().mean() for out in outputs]))


def main(argv=None):
    import common

    import sklearn_mach

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    # the CPU's loss and its switch, whatever the machine
    settings = dict(n_repetitions=1, random_state=0, device="cpu")
    if args.max_epochs is not None:
        settings["max_epochs"] = args.max_epochs
    print(
        f"sklearn_mach {sklearn_mach.__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}.\n\n"
        f"{args.dataset}; MACHClassifier({', '.join(f'{k}={v}' for k, v in settings.items())})"
        f"; 'torch' is F.cross_entropy in place of the shipped loss.\n"
    )
    X_test = Y_test = None
    if not args.dataset.startswith("synthetic-"):
        _, _, X_test, Y_test = common.load_dataset(args.dataset)
        X_test, Y_test = X_test[: args.test_rows], Y_test[: args.test_rows]
    print(
        "| rows | round | loss | B, batch, lr | fit s | ms per step, each epoch "
        "| P@1 | log-probabilities below -87.3 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for rows in args.rows:
        X, y, _ = common.training_subset(args.dataset, rows)
        # warm up imports and allocators outside the timings
        fit_once(X[:2000], y[:2000], dict(settings, max_epochs=1), "shipped")
        for round_ in range(1, args.rounds + 1):
            order = ("shipped", "torch") if round_ % 2 else ("torch", "shipped")
            for loss in order:
                clf, seconds = fit_once(X, y, settings, loss)
                steps = -(-X.shape[0] // clf.batch_size_)  # one network's
                per_epoch = [1e3 * row["dur"] / steps for row in clf.histories_[0]]
                p_at_1 = "-"
                if X_test is not None:
                    top, _ = clf.predict_top_k(X_test, 1)
                    p_at_1 = (
                        f"{common.precision_from_top(Y_test, top, (1,))['P@1']:.4f}"
                    )
                share = low_log_probability_share(clf, X[:1000])
                print(
                    f"| {X.shape[0]:,} | {round_} | {loss} | {clf.n_buckets_}, "
                    f"{clf.batch_size_}, {clf.lr_:g} | {seconds:.1f} "
                    f"| {', '.join(f'{v:.2f}' for v in per_epoch)} | {p_at_1} "
                    f"| {share:.2%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
