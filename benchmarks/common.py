"""Shared helpers of the benchmark scripts: data loading, the full-output baseline."""

import os
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from sklearn_mach.metrics import precision_at_k
from sklearn_mach._training import bucket_outputs, fit_repetition

DATA_DIR = Path(os.environ.get("SKLEARN_MACH_DATA", Path(__file__).parent.parent.parent / "shared" / "data"))


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


def is_multiclass(Y):
    return bool((np.diff(Y.indptr) == 1).all())


def targets_of(Y):
    """1-D class ids for a one-label-per-row indicator, else the indicator itself."""
    return Y.indices.astype(np.int64) if is_multiclass(Y) else Y


def model_bytes(modules):
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


class FullNetwork:
    """The baseline: MACH's own training loop and network, one output per class.

    A full-softmax (multiclass) or full-sigmoid (multilabel) network of the
    same hidden width, trained for the same epochs with the same optimizer,
    i.e. MACH with hashing switched off.
    """

    def __init__(self, hidden_layer_sizes=(256,), max_epochs=10, batch_size=256, lr=1e-3, seed=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, X, Y):
        self.multilabel_ = not is_multiclass(Y)
        self.module_, _, _ = fit_repetition(
            X, targets_of(Y), multilabel=self.multilabel_, n_outputs=Y.shape[1],
            module=None, hidden_layer_sizes=self.hidden_layer_sizes, optimizer="adam",
            lr=self.lr, max_epochs=self.max_epochs, batch_size=self.batch_size,
            device="cuda" if torch.cuda.is_available() else "cpu", seed=self.seed,
            n_threads=None, verbose=0,
        )
        return self

    def predict_top_k(self, X, k=5, block=2048):
        """Indices and scores of the ``k`` best classes, one block of rows at a time."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        out = "sigmoid" if self.multilabel_ else "softmax"
        labels, scores = [], []
        for i in range(0, X.shape[0], block):
            top = torch.topk(bucket_outputs(self.module_, X[i:i + block], device, out, 256), k, dim=1)
            labels.append(top.indices.cpu().numpy())
            scores.append(top.values.cpu().numpy())
        return np.concatenate(labels), np.concatenate(scores)


def precision_from_top(Y_true, top, ks=(1, 3, 5)):
    """P@k (hits among the k first predictions / k) from ranked class indices."""
    top = np.asarray(top, dtype=np.int64)  # integer: read as a ranking
    return {f"P@{k}": precision_at_k(Y_true, top, k=k) for k in ks}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
