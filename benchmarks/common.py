"""Shared helpers of the benchmark scripts: data loading, the full-output baseline."""

import contextlib
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

# an empty SKLEARN_MACH_DATA counts as unset, as in datasets.get_data_home
DATA_DIR = Path(
    os.environ.get("SKLEARN_MACH_DATA")
    or Path(__file__).parent.parent.parent / "shared" / "data"
)


def peak_rss_mib():
    """This process's peak resident memory so far, in MiB (``ru_maxrss``)."""
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@contextlib.contextmanager
def switched(owner, name, value):
    """Set a library switch (``owner.name``, a module or class attribute)
    to ``value`` while in the block, and restore it after, also on error."""
    shipped = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, shipped)


def linear_products(onednn):
    """A linear layer's three products, ``x @ W.T + b``, ``g.T @ x`` and
    ``g @ W``, through oneDNN (as ``_network._OneDNNLinear`` computes them)
    or through torch's BLAS (as ``F.linear`` and its backward)."""
    if onednn:
        from sklearn_mach._network import _LINEAR_OP as op

        return (
            lambda x, W, b: op(x, W, b, "none", [], ""),
            lambda g, x: op(g.T, x.T, None, "none", [], ""),
            lambda g, W: op(g, W.T, None, "none", [], ""),
        )
    return (
        lambda x, W, b: torch.addmm(b, x, W.T),
        lambda g, x: g.T @ x,
        lambda g, W: g @ W,
    )


def load_dataset(name, max_train=None, seed=0):
    """X_train, Y_train, X_test, Y_test (CSR) of a dataset under ``DATA_DIR``.

    Rows are shuffled (pypi-maskedword is stored in source order); with
    ``max_train`` a random subset of the training rows is kept.
    """
    folder = DATA_DIR / name
    X_train = sp.load_npz(folder / "X_train.npz").tocsr()
    Y_train = sp.load_npz(folder / "Y_train.npz").tocsr()
    X_test = sp.load_npz(folder / "X_test.npz").tocsr()
    Y_test = sp.load_npz(folder / "Y_test.npz").tocsr()
    order = np.random.default_rng(seed).permutation(X_train.shape[0])
    if max_train is not None:
        order = order[:max_train]
    return X_train[order], Y_train[order], X_test, Y_test


def top1_top5(top, y):
    """Top-1 and top-5 accuracy of ``top`` (class ids, best first) for labels ``y``."""
    return (
        float(np.mean(top[:, 0] == y)),
        float(np.mean((top[:, :5] == y[:, None]).any(axis=1))),
    )


def test_subset(X_test, Y_test, max_test, seed=0):
    """``max_test`` random test rows (all if ``None`` or more), in their order."""
    if max_test is None or max_test >= X_test.shape[0]:
        return X_test, Y_test
    rows = np.sort(np.random.default_rng(seed).permutation(X_test.shape[0])[:max_test])
    return X_test[rows], Y_test[rows]


#: The CPU-epoch target's settings (issue 8): one epoch at B=512, R=4, 4,096
#: hashed input rows, batch 256, lr 0.01, mean aggregation (the last three
#: were 0.1's defaults, so 0.1 runs them too), on the CPU also where CUDA is.
CPU_EPOCH_SETTINGS = dict(
    n_buckets=512,
    n_repetitions=4,
    n_hashed_features=4096,
    batch_size=256,
    lr=0.01,
    aggregation="mean",
    max_epochs=1,
    random_state=0,
    device="cpu",
)


def training_subset(name, rows=0):
    """X, y (class ids) and K of ``rows`` random training rows of ``name`` (0: all).

    ``name`` is a folder under ``DATA_DIR`` or ``synthetic-K``.  The rows
    keep :func:`load_dataset`'s shuffled order (fit shuffles anyway).
    """
    if name.startswith("synthetic-"):
        n_classes = int(name.split("-", 1)[1])
        X, Y, _, _ = synthetic_dataset(n_classes, rows or None, n_test=10)
    else:
        X, Y, _, _ = load_dataset(name)
    keep = np.sort(np.random.default_rng(0).permutation(X.shape[0])[: rows or None])
    return X[keep], Y[keep].indices, Y.shape[1]


def synthetic_dataset(
    n_classes, max_train=None, n_test=10_000, n_features=20_000, seed=0
):
    """X_train, Y_train, X_test, Y_test (CSR) of the ``synthetic-K`` set.

    Multiclass :func:`~sklearn_mach.datasets.make_extreme_classification`
    data with a power-law class distribution, ``max(20 K, 50,000)`` training
    rows (capped by ``max_train``) and ``n_test`` test rows from one call
    (same class signatures); ``Y`` is the 0/1 indicator.
    """
    from sklearn_mach.datasets import make_extreme_classification

    n_train = max(20 * n_classes, 50_000)
    if max_train is not None:
        n_train = min(n_train, max_train)
    X, y = make_extreme_classification(
        n_train + n_test, n_classes, n_features, power=1.0, random_state=seed
    )
    Y = sp.csr_matrix(
        (np.ones(len(y), dtype=np.float32), (np.arange(len(y)), y)),
        shape=(len(y), n_classes),
    )
    return X[:n_train].tocsr(), Y[:n_train], X[n_train:].tocsr(), Y[n_train:]


def is_multiclass(Y):
    return bool((np.diff(Y.indptr) == 1).all())


def targets_of(Y):
    """1-D class ids for a one-label-per-row indicator, else the indicator itself."""
    return Y.indices.astype(np.int64) if is_multiclass(Y) else Y


def model_bytes(modules):
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


class FullNetwork:
    """The baseline: MACH's network with one output per class, trained alike.

    A full-softmax (multiclass) or full-sigmoid (multilabel)
    :class:`~sklearn_mach.MACHNetwork` of the same hidden width, trained by
    a plain torch loop with the same optimizer (:class:`~sklearn_mach.LazyAdam`),
    batch size, learning rate and epochs: MACH with hashing switched off.
    """

    def __init__(
        self, hidden_layer_sizes=(256,), max_epochs=10, batch_size=256, lr=1e-3, seed=0
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, X, Y):
        from sklearn_mach import LazyAdam, MACHNetwork

        self.multilabel_ = not is_multiclass(Y)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(self.seed)
        nnz_per_batch = self.batch_size * X.nnz / X.shape[0]
        net = MACHNetwork(
            X.shape[1],
            Y.shape[1],
            self.hidden_layer_sizes,
            sparse_gradient=X.shape[1] > 8 * nnz_per_batch,
        ).to(device)
        optimizer = LazyAdam(net.parameters(), lr=self.lr)
        targets = Y if self.multilabel_ else targets_of(Y)
        rng = np.random.default_rng(self.seed)
        for _ in range(self.max_epochs):
            order = rng.permutation(X.shape[0])
            for start in range(0, len(order), self.batch_size):
                rows = np.sort(order[start : start + self.batch_size])
                logits = net(csr_tensor(X[rows]).to(device))
                if self.multilabel_:
                    target = torch.from_numpy(
                        targets[rows].toarray().astype(np.float32)
                    ).to(device)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        logits, target
                    )
                else:
                    loss = torch.nn.functional.cross_entropy(
                        logits, torch.from_numpy(targets[rows]).to(device)
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.module_ = net.eval()
        return self

    def predict_top_k(self, X, k=5, block=2048):
        """Indices and scores of the ``k`` best classes, one block of rows at a time."""
        device = next(self.module_.parameters()).device
        labels, scores = [], []
        with torch.no_grad():
            for i in range(0, X.shape[0], block):
                logits = self.module_(csr_tensor(X[i : i + block]).to(device))
                top = torch.topk(logits, k, dim=1)  # same order as the probabilities
                labels.append(top.indices.cpu().numpy())
                scores.append(top.values.cpu().numpy())
        return np.concatenate(labels), np.concatenate(scores)


def csr_tensor(X):
    """Rows of a scipy CSR matrix as a float32 ``torch.sparse_csr`` tensor."""
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    return torch.sparse_csr_tensor(
        torch.from_numpy(X.indptr.astype(np.int64)),
        torch.from_numpy(X.indices.astype(np.int64)),
        torch.from_numpy(X.data),
        size=X.shape,
        check_invariants=False,
    )


def precision_from_top(Y_true, top, ks=(1, 3, 5)):
    """P@k (hits among the k first predictions / k) from ranked class indices."""
    top = np.asarray(top, dtype=np.int64)  # integer: read as a ranking
    from sklearn_mach.metrics import precision_at_k

    return {f"P@{k}": precision_at_k(Y_true, top, k=k) for k in ks}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
