"""Ranking metrics of extreme classification."""

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array


def top_k_indices(scores, k):
    """Column indices of the ``k`` highest scores of each row, best first.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes)
    k : int

    Returns
    -------
    top : ndarray of shape (n_samples, min(k, n_classes))
    """
    scores = np.asarray(scores)
    k = min(int(k), scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def precision_at_k(y_true, y_score, k=1):
    """Precision at k: the fraction of the k top-scored labels that are true.

    The standard definition divides the hits by ``k`` for every sample
    (not by ``min(k, |y|)``, which inflates the score for samples with
    fewer than ``k`` labels).

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes)
        Label indicator matrix.
    y_score : array-like of shape (n_samples, n_classes)
        Scores; higher is better.
    k : int, default=1

    Returns
    -------
    precision : float
    """
    Y = sp.csr_matrix(check_array(y_true, accept_sparse="csr", ensure_2d=True))
    top = top_k_indices(check_array(y_score), k)
    if Y.shape[0] != top.shape[0]:
        raise ValueError(
            f"y_true has {Y.shape[0]} samples but y_score has {top.shape[0]}."
        )
    rows = np.repeat(np.arange(Y.shape[0]), top.shape[1])
    hits = np.asarray(Y[rows, top.ravel()]).reshape(top.shape) > 0
    return float(hits.sum(axis=1).mean() / k)
