"""MACH against a full-output network and peer XC libraries, across label-space sizes.

One table, dataset x method: P@1/P@3/P@5, fit and predict seconds, peak
resident memory and model size on disk; plus, for the MACH models, the
recall of candidate-bucket prediction (``predict_top_k(X, 5,
n_candidate_buckets=m)``) against the exact top 5.  Every (dataset, method)
runs in a fresh child process ("spawn"), so the peak RSS is that method's
(data loading included: the "data RSS" column is the child's peak right
after loading, before the method ran).  A method that fails, crashes or
runs past ``--timeout`` is reported as such in the table.

    python benchmarks/bench_scale.py --datasets bibtex delicious
    python benchmarks/bench_scale.py --datasets synthetic-K --k-sweep 1000 10000 100000 1000000 \\
        --methods mach mach-tuned full --tuned '{"n_buckets": 1024, "n_repetitions": 4}' --max-train 200000
    python benchmarks/bench_scale.py --datasets pypi-maskedword --max-train 100000 --max-test 10000 --max-epochs 3

Methods: ``mach`` (MACHClassifier defaults), ``mach-tuned`` (MACHClassifier
with the ``--tuned`` JSON parameters), ``full`` (``common.FullNetwork``: the
same training loop and network, one output per class), ``ovr-lr``
(one-vs-rest ``LogisticRegression(solver="liblinear")``; only for K <= 1000),
``napkinxc`` (napkinXC PLT) and ``omikuji`` (omikuji's Parabel).
napkinxc and omikuji are benchmark-only extras, not dependencies of
sklearn-mach: ``pip install napkinxc omikuji``; without them their rows read
"not installed".

Datasets: ``bibtex``, ``delicious``, ``pypi-maskedword`` (read by
``common.load_dataset`` from ``../shared/data`` or ``$SKLEARN_MACH_DATA``)
and ``synthetic-K`` (one dataset per K of ``--k-sweep``, or ``synthetic-5000``
for one K): multiclass ``make_extreme_classification`` data with a power-law
class distribution, ``max(20 * K, 50_000)`` training rows (capped by
``--max-train``), ``--n-features`` features and 10,000 separate test rows
(capped by ``--max-test``), generated once with a fixed seed.

``--max-epochs`` applies to MACH, tuned MACH and the full network alike.
P@k is hits among the first k predictions / k (``common.precision_from_top``).
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

REAL_DATASETS = ("bibtex", "delicious", "pypi-maskedword")
METHODS = ("mach", "mach-tuned", "full", "ovr-lr", "napkinxc", "omikuji")
OVR_MAX_CLASSES = 1000
CANDIDATE_BUCKETS = (1, 4, 16)
SYNTHETIC_TEST_ROWS = 10_000
TOP_K = 5


# --------------------------------------------------------------------------- data


def write_synthetic(n_classes, args, folder):
    """Generate ``synthetic-K`` once (``common.synthetic_dataset``) and store
    it as the CSR npz files ``load`` reads."""
    import common

    n_test = (
        SYNTHETIC_TEST_ROWS
        if args.max_test is None
        else min(SYNTHETIC_TEST_ROWS, args.max_test)
    )
    parts = common.synthetic_dataset(
        n_classes, args.max_train, n_test, args.n_features, args.seed
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, M in zip(("X_train", "Y_train", "X_test", "Y_test"), parts):
        sp.save_npz(folder / f"{name}.npz", M.tocsr(), compressed=False)


def load(spec):
    """X_train, Y_train, X_test, Y_test (CSR; Y a 0/1 indicator n x K)."""
    import common

    if spec["synthetic_dir"] is not None:
        folder = Path(spec["synthetic_dir"])
        return tuple(
            sp.load_npz(folder / f"{n}.npz").tocsr()
            for n in ("X_train", "Y_train", "X_test", "Y_test")
        )
    X_train, Y_train, X_test, Y_test = common.load_dataset(
        spec["dataset"], max_train=spec["max_train"], seed=spec["seed"]
    )
    X_test, Y_test = common.test_subset(X_test, Y_test, spec["max_test"], spec["seed"])
    return X_train, Y_train, X_test, Y_test


# --------------------------------------------------------------------------- helpers


def path_bytes(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def precision(Y_test, top):
    """P@k from ranked label ids; ``-1`` marks a missing prediction (never a hit)."""
    from common import precision_from_top

    top = np.asarray(top)
    if (top < 0).any():  # an extra, empty label column absorbs the padding
        Y_test = sp.hstack([Y_test, sp.csr_matrix((Y_test.shape[0], 1))], format="csr")
        top = np.where(top < 0, Y_test.shape[1] - 1, top)
    return precision_from_top(Y_test, top)


def pad_rows(rows, k=TOP_K):
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        row = list(row)[:k]
        out[i, : len(row)] = row
    return out


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


# --------------------------------------------------------------------------- methods
# Each returns (top-5 label ids of X_test, fit_s, predict_s, model bytes on disk,
# extra dict); ``tmp`` is a scratch directory of the child.


def run_mach(X_train, Y_train, X_test, spec, tmp, tuned=False):
    from sklearn_mach import MACHClassifier

    clf = MACHClassifier(random_state=spec["seed"])
    if tuned:
        clf.set_params(**spec["tuned"])
    if spec["max_epochs"] is not None:
        clf.set_params(max_epochs=spec["max_epochs"])
    _, fit_s = timed(fit_all_classes, clf, X_train, Y_train)
    (top, _), predict_s = timed(clf.predict_top_k, X_test, TOP_K)
    _, dense_s = timed(dense_pass, clf, X_test)
    clf.save(Path(tmp) / "model.skmach")
    clf.save(Path(tmp) / "model16.skmach", weights_dtype="float16")
    label = (
        f"B={clf.n_buckets_} R={clf.n_repetitions} batch={clf.batch_size_} "
        f"lr={clf.lr_:g} {clf.aggregation}"
    )
    if clf.n_hashed_features_ is not None:
        label += f" n_hashed_features={clf.n_hashed_features_}"
    if tuned:
        label += " (" + ", ".join(f"{k}={v}" for k, v in spec["tuned"].items()) + ")"
    extra = dict(
        config=label,
        epochs=len(clf.histories_[0]),
        dense_s=dense_s,
        model_fp16_bytes=path_bytes(Path(tmp) / "model16.skmach"),
        _clf=clf,
    )
    return top, fit_s, predict_s, path_bytes(Path(tmp) / "model.skmach"), extra


def fit_all_classes(clf, X_train, Y_train):
    """Fit MACH so that it knows all K classes, as the full network does.

    ``fit`` learns the classes present in ``y``; on a power-law synthetic
    set many of the K classes never occur in training, and MACH would then
    decode over fewer classes than K.  Then it is trained by ``partial_fit``
    with ``classes=range(K)``, one call per epoch: the same model as ``fit``
    (epoch t shuffles with seed s + t either way), with ``max_epochs``
    resolved by the first call.
    """
    from common import is_multiclass, targets_of

    y = targets_of(Y_train)
    n_classes = Y_train.shape[1]
    if not is_multiclass(Y_train) or len(np.unique(y)) == n_classes:
        return clf.fit(X_train, y)
    classes = np.arange(n_classes)
    clf.partial_fit(X_train, y, classes=classes)
    for _ in range(clf.max_epochs_ - 1):
        clf.partial_fit(X_train, y)
    return clf


def default_training(n_samples):
    """Batch size, learning rate and epochs that MACHClassifier's "auto" picks
    (the rules in its docstring), for the full network to train alike."""
    batch_size = 256 if n_samples < 200_000 else 1024
    return (
        batch_size,
        (1e-2 if batch_size <= 256 else 3e-3),
        (10 if n_samples < 200_000 else 5),
    )


def dense_pass(clf, X, block=4096):
    """One dense (n_samples x R*B) pass: every repetition's bucket outputs for
    X (the public networks_ on CSR blocks), no decoding."""
    import torch
    from common import csr_tensor

    with torch.no_grad():
        for start in range(0, X.shape[0], block):
            batch = csr_tensor(X[start : start + block])
            for net in clf.networks_:
                torch.softmax(net(batch), dim=1)


def candidate_recall(clf, X_test, exact):
    """Fraction of the exact top-k that candidate mode retrieves, ties counted.

    Many classes can tie exactly (e.g. all those sharing one bucket with the
    winner score ``1/R``), and which of them the exact top-k lists is
    arbitrary; so a returned class counts as retrieved when its (exact)
    score reaches the exact k-th best score.
    """
    rows = []
    k = exact.shape[1]
    _, exact_scores = clf.predict_top_k(X_test, k)
    kth = exact_scores[:, -1:].astype(np.float64)
    for m in CANDIDATE_BUCKETS:
        (_, scores), seconds = timed(
            clf.predict_top_k, X_test, k, n_candidate_buckets=m
        )
        hits = np.sum(scores >= kth - 1e-6 * np.maximum(1.0, np.abs(kth)))
        rows.append(dict(m=m, recall=hits / exact.size, predict_s=seconds))
    return rows


def run_full(X_train, Y_train, X_test, spec, tmp):
    import torch
    from common import FullNetwork

    from sklearn_mach import MACHClassifier

    params = MACHClassifier().get_params()
    n_classes = Y_train.shape[1]
    if n_classes > spec["full_max_classes"]:
        # Too slow to train here: build the same network untrained, for its size.
        from sklearn_mach import MACHNetwork

        module = MACHNetwork(X_train.shape[1], n_classes, params["hidden_layer_sizes"])
        torch.save(module.state_dict(), Path(tmp) / "full.pt")
        extra = dict(
            config=f"K={n_classes} outputs",
            epochs="",
            _status=f"size only (not trained: K > --full-max-classes {spec['full_max_classes']:,})",
        )
        return None, None, None, path_bytes(Path(tmp) / "full.pt"), extra
    batch_size, lr, epochs = default_training(X_train.shape[0])
    full = FullNetwork(
        hidden_layer_sizes=params["hidden_layer_sizes"],
        max_epochs=spec["max_epochs"] or epochs,
        batch_size=batch_size,
        lr=lr,
        seed=spec["seed"],
    )
    _, fit_s = timed(full.fit, X_train, Y_train)
    (top, _), predict_s = timed(full.predict_top_k, X_test, TOP_K)
    torch.save(full.module_.state_dict(), Path(tmp) / "full.pt")
    extra = dict(config=f"K={Y_train.shape[1]} outputs", epochs=full.max_epochs)
    return top, fit_s, predict_s, path_bytes(Path(tmp) / "full.pt"), extra


def run_ovr_lr(X_train, Y_train, X_test, spec, tmp):
    import joblib
    from common import is_multiclass, targets_of
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    multiclass = is_multiclass(Y_train)
    lr = LogisticRegression(solver="liblinear")
    if multiclass:
        # scikit-learn >= 1.8 refuses liblinear with >= 3 classes unless wrapped:
        # the wrapper is exactly liblinear's former one-vs-rest scheme.
        model, y = OneVsRestClassifier(lr), targets_of(Y_train)
    else:
        # Labels without any positive training sample are dropped (OneVsRest
        # would fit a constant for them; they can never be predicted anyway).
        keep = np.flatnonzero(np.diff(Y_train.tocsc().indptr) > 0)
        model, y = OneVsRestClassifier(lr), Y_train[:, keep]
    _, fit_s = timed(model.fit, X_train, y)

    def predict(X):
        scores = model.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
        k = min(TOP_K, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        labels = model.classes_[top] if multiclass else keep[top]
        return pad_rows(labels.tolist())

    top, predict_s = timed(predict, X_test)
    joblib.dump(model, Path(tmp) / "ovr.joblib")
    extra = dict(config="one-vs-rest liblinear", epochs="")
    return top, fit_s, predict_s, path_bytes(Path(tmp) / "ovr.joblib"), extra


def run_napkinxc(X_train, Y_train, X_test, spec, tmp):
    from napkinxc.models import PLT

    model_dir = Path(tmp) / "plt"
    y_list = [
        Y_train.indices[a:b].tolist()
        for a, b in zip(Y_train.indptr[:-1], Y_train.indptr[1:])
    ]
    model = PLT(str(model_dir), seed=spec["seed"])
    _, fit_s = timed(model.fit, X_train, y_list)
    preds, predict_s = timed(model.predict, X_test, top_k=TOP_K)
    extra = dict(config="PLT defaults", epochs="")
    return pad_rows(preds), fit_s, predict_s, path_bytes(model_dir), extra


def run_omikuji(X_train, Y_train, X_test, spec, tmp):
    import omikuji

    from sklearn_mach.datasets import dump_xc_repository

    data_path = Path(tmp) / "train.txt"
    _, dump_s = timed(dump_xc_repository, X_train, Y_train, data_path)
    hyper = omikuji.Model.default_hyper_param()
    # fit_s includes omikuji's parsing of the text file (not the writing of it).
    model, fit_s = timed(omikuji.Model.train_on_data, str(data_path), hyper)
    data_path.unlink()

    def predict(X):
        X = sp.csr_matrix(X)
        rows = []
        for i in range(X.shape[0]):
            a, b = X.indptr[i], X.indptr[i + 1]
            pairs = list(zip(X.indices[a:b].tolist(), X.data[a:b].tolist()))
            rows.append([label for label, _ in model.predict(pairs, top_k=TOP_K)])
        return pad_rows(rows)

    top, predict_s = timed(predict, X_test)  # no batch API: one call per row
    model.save(str(Path(tmp) / "omikuji"))
    extra = dict(
        config=f"Parabel defaults (file write {dump_s:.1f}s not counted)", epochs=""
    )
    return top, fit_s, predict_s, path_bytes(Path(tmp) / "omikuji"), extra


RUNNERS = {
    "mach": run_mach,
    "mach-tuned": lambda *a: run_mach(*a, tuned=True),
    "full": run_full,
    "ovr-lr": run_ovr_lr,
    "napkinxc": run_napkinxc,
    "omikuji": run_omikuji,
}
OPTIONAL_MODULES = {"napkinxc": "napkinxc.models", "omikuji": "omikuji"}


# --------------------------------------------------------------------------- child


def child(spec, conn):
    """Run one (dataset, method) and send back a dict of measurements."""
    import common

    log = open(spec["log"], "w")
    if not spec["verbose"]:  # peer libraries print to the C-level stdout/stderr
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    result = {}
    try:
        X_train, Y_train, X_test, Y_test = load(spec)
        result.update(
            n_train=X_train.shape[0],
            n_test=X_test.shape[0],
            K=Y_train.shape[1],
            data_rss_mib=common.peak_rss_mib(),
        )
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
            top, fit_s, predict_s, disk, extra = RUNNERS[spec["method"]](
                X_train, Y_train, X_test, spec, tmp
            )
            result.update(
                fit_s=fit_s,
                predict_s=predict_s,
                model_bytes=disk,
                peak_rss_mib=common.peak_rss_mib(),
            )
            if top is not None:
                result.update(precision(Y_test, top))
            clf = extra.pop("_clf", None)
            status = extra.pop("_status", "ok")
            result.update(extra)
            if clf is not None and spec["candidates"]:
                result["candidates"] = candidate_recall(clf, X_test, np.asarray(top))
        result["status"] = status
    except Exception as exc:  # reported in the table, never a crash of the run
        traceback.print_exc(file=log)
        result["status"] = (
            f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        )
    log.flush()
    conn.send(result)
    conn.close()


def run_one(spec, timeout):
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(spec, send))
    start = time.perf_counter()
    proc.start()
    send.close()
    result = None
    if recv.poll(timeout):
        try:
            result = recv.recv()
        except EOFError:  # the child died without answering (OOM kill, segfault)
            pass
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        if time.perf_counter() - start >= timeout:
            result = dict(status=f"timeout (> {timeout:g} s)")
        else:
            result = dict(status=f"crashed (exit code {proc.exitcode})")
    result["wall_s"] = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- report


def fmt(value, spec):
    return "—" if value is None or value == "" else format(value, spec)


COLUMNS = [
    "dataset",
    "K",
    "n_train",
    "n_test",
    "method",
    "config",
    "epochs",
    "P@1",
    "P@3",
    "P@5",
    "fit s",
    "predict s",
    "data RSS MiB",
    "peak RSS MiB",
    "model MB",
    "float16 MB",
    "status",
]


def table_row(row):
    return [
        row["dataset"],
        fmt(row.get("K"), ","),
        fmt(row.get("n_train"), ","),
        fmt(row.get("n_test"), ","),
        row["method"],
        row.get("config", ""),
        str(row.get("epochs", "")),
        fmt(row.get("P@1"), ".4f"),
        fmt(row.get("P@3"), ".4f"),
        fmt(row.get("P@5"), ".4f"),
        fmt(row.get("fit_s"), ".1f"),
        fmt(row.get("predict_s"), ".2f"),
        fmt(row.get("data_rss_mib"), ".0f"),
        fmt(row.get("peak_rss_mib"), ".0f"),
        fmt(
            None if row.get("model_bytes") is None else row["model_bytes"] / 1e6, ".2f"
        ),
        fmt(
            None
            if row.get("model_fp16_bytes") is None
            else row["model_fp16_bytes"] / 1e6,
            ".2f",
        ),
        row["status"],
    ]


def candidate_rows(row):
    return [
        [
            row["dataset"],
            row["method"],
            row.get("config", ""),
            str(c["m"]),
            f"{c['recall']:.4f}",
            f"{c['predict_s']:.2f}",
            fmt(row.get("predict_s"), ".2f"),
        ]
        for c in row.get("candidates", [])
    ]


def decoding_row(row):
    if row.get("dense_s") is None or row.get("predict_s") is None:
        return []
    return [
        [
            row["dataset"],
            fmt(row.get("K"), ","),
            fmt(row.get("n_test"), ","),
            row["method"],
            row.get("config", ""),
            f"{row['dense_s']:.2f}",
            f"{row['predict_s']:.2f}",
            f"{row['predict_s'] / row['dense_s']:.2f}",
        ]
    ]


DECODING_COLUMNS = [
    "dataset",
    "K",
    "queries",
    "method",
    "config",
    "dense pass s (n x R*B outputs)",
    "exact top-5 s (outputs + decoding)",
    "ratio",
]

CANDIDATE_COLUMNS = [
    "dataset",
    "method",
    "config",
    "n_candidate_buckets m",
    "recall of exact top-5",
    "predict s (candidates)",
    "predict s (exact)",
]


def markdown(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def header(argv):
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = (
        ", ".join(f"{x:.1f}" for x in os.getloadavg())
        if hasattr(os, "getloadavg")
        else "n/a"
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return (
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"load average at start {load}; torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"device {device}), Python {platform.python_version()}.\n\n"
        f"Command: `python {shlex.join(argv)}`"
    )


# --------------------------------------------------------------------------- main


def expand_datasets(names, k_sweep):
    out = []
    for name in names:
        if name == "synthetic-K":
            out += [f"synthetic-{k}" for k in k_sweep]
        elif name.startswith("synthetic-") and name[len("synthetic-") :].isdigit():
            out.append(name)
        elif name in REAL_DATASETS:
            out.append(name)
        else:
            raise SystemExit(
                f"unknown dataset {name!r}: one of {REAL_DATASETS} or synthetic-K / synthetic-<int>"
            )
    return out


def main(argv=None):
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["bibtex", "delicious", "synthetic-K"]
    )
    parser.add_argument(
        "--k-sweep", nargs="+", type=int, default=[1000, 10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--tuned",
        type=json.loads,
        default={"n_buckets": 1024, "n_repetitions": 8},
        help="JSON MACHClassifier parameters of mach-tuned",
    )
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument(
        "--n-features", type=int, default=100_000, help="of the synthetic datasets"
    )
    parser.add_argument(
        "--full-max-classes",
        type=int,
        default=200_000,
        help="above this K the full network is only built and saved, for its size",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per (dataset, method)"
    )
    parser.add_argument(
        "--no-candidates",
        action="store_true",
        help="skip the candidate-mode recall of the MACH models",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="let the children print")
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "scale.md")
    )
    args = parser.parse_args(argv[1:])
    if not isinstance(args.tuned, dict):
        raise SystemExit("--tuned must be a JSON object")

    import common

    datasets = expand_datasets(args.datasets, args.k_sweep)
    if any(d in REAL_DATASETS for d in datasets) and not common.DATA_DIR.is_dir():
        raise SystemExit(f"No datasets under {common.DATA_DIR}; set SKLEARN_MACH_DATA.")
    top_header = header(argv)
    print(top_header, flush=True)
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="bench_scale_data_"))
    try:
        for dataset in datasets:
            synthetic_dir = None
            if dataset.startswith("synthetic-"):
                synthetic_dir = scratch / dataset
                n_classes = int(dataset.split("-", 1)[1])
                _, gen_s = timed(write_synthetic, n_classes, args, synthetic_dir)
                print(f"\n[{dataset}] generated in {gen_s:.1f}s", flush=True)
            K = None
            for method in args.methods:
                row = dict(dataset=dataset, method=method)
                if method in OPTIONAL_MODULES:
                    try:
                        __import__(OPTIONAL_MODULES[method])
                    except ImportError:
                        row["status"] = "not installed"
                if method == "ovr-lr":
                    if K is None:
                        K = (
                            sp.load_npz(synthetic_dir / "Y_train.npz").shape[1]
                            if synthetic_dir
                            else sp.load_npz(
                                common.DATA_DIR / dataset / "Y_train.npz"
                            ).shape[1]
                        )
                    if K > OVR_MAX_CLASSES:
                        row["status"] = f"skipped (K > {OVR_MAX_CLASSES})"
                if "status" not in row:
                    spec = dict(
                        dataset=dataset,
                        method=method,
                        synthetic_dir=synthetic_dir and str(synthetic_dir),
                        max_train=args.max_train,
                        max_test=args.max_test,
                        max_epochs=args.max_epochs,
                        tuned=args.tuned,
                        seed=args.seed,
                        full_max_classes=args.full_max_classes,
                        candidates=not args.no_candidates,
                        verbose=args.verbose,
                        log=str(scratch / f"{dataset}.{method}.log"),
                    )
                    row.update(run_one(spec, args.timeout))
                    if row["status"] != "ok" and not args.verbose:
                        tail = (
                            Path(spec["log"])
                            .read_text(errors="replace")
                            .strip()
                            .splitlines()[-15:]
                        )
                        print(
                            "\n".join("    " + line for line in tail), file=sys.stderr
                        )
                K = row.get("K", K)
                rows.append(row)
                print("| " + " | ".join(table_row(row)) + " |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # Fill in K / sizes of rows whose method did not run, from a sibling row.
    for row in rows:
        for sibling in rows:
            if sibling["dataset"] == row["dataset"] and "K" in sibling:
                for key in ("K", "n_train", "n_test"):
                    row.setdefault(key, sibling[key])
                break

    table = markdown(COLUMNS, [table_row(r) for r in rows])
    cand = [line for r in rows for line in candidate_rows(r)]
    text = (
        f"{top_header}\n\n{table}\n\n"
        "P@k: hits in the top k / k. Peak RSS: the child process's `ru_maxrss` after fit, predict and "
        "save (data loading included; data RSS: right after loading). Model MB: bytes on disk / 1e6 "
        "(MACH: `save`, and `save(weights_dtype='float16')` in float16 MB; full: `torch.save(state_dict)`; ovr-lr: `joblib.dump`; napkinxc, omikuji: "
        "their model directory). ovr-lr drops labels without a training positive. Worker processes "
        "(MACH with n_jobs > 1 on a process backend) are not in the peak RSS.\n"
    )
    decoding = [line for r in rows for line in decoding_row(r)]
    if decoding:
        text += (
            "\nMACH exact top-5 (`predict_top_k(X_test, 5)`) against one dense score pass (the R "
            "networks' bucket outputs for the same queries, no decoding): the ratio is what decoding "
            "adds on top of the networks.\n\n"
            + markdown(DECODING_COLUMNS, decoding)
            + "\n"
        )
    if cand:
        text += (
            "\nMACH candidate mode: `predict_top_k(X_test, 5, n_candidate_buckets=m)`; recall = "
            "fraction of the exact top-5 it returns (a class whose score ties the exact 5th best counts).\n\n"
            + markdown(CANDIDATE_COLUMNS, cand)
            + "\n"
        )
    print("\n" + text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
