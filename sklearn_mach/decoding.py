"""Decoding: from the R networks' bucket outputs back to scores of the K classes.

Class ``k`` falls in bucket ``h_r(k)`` of repetition ``r``; its score merges
the ``R`` outputs of those buckets.  The gather runs in torch on whatever
device the outputs live on, one block of rows at a time.
"""

import numpy as np
import torch

#: For each aggregation, the transformation of the logits each repetition
#: contributes, for multiclass and for multilabel targets.
BUCKET_OUTPUT = {
    "mean": {False: "softmax", True: "sigmoid"},
    "unbiased": {False: "softmax", True: "sigmoid"},
    "logit_sum": {False: "log_softmax", True: "logits"},
}


def aggregate(outputs, buckets, aggregation, n_buckets):
    """Merge per-repetition bucket outputs into class scores.

    Parameters
    ----------
    outputs : sequence of R tensors of shape (n_samples, n_buckets)
        Bucket probabilities (``"mean"``, ``"unbiased"``) or log-probabilities
        / logits (``"logit_sum"``) of each repetition.
    buckets : tensor of shape (R, n_classes), int64
        ``buckets[r, k] = h_r(k)``, on the device of ``outputs``.
    aggregation : {"mean", "unbiased", "logit_sum"}
        ``"mean"``: ``mean_r P_r(h_r(k))``.  ``"unbiased"``:
        ``B / (B - 1) * (mean - 1 / B)``, which removes the expected mass
        that colliding classes add to a bucket.  ``"logit_sum"``:
        ``sum_r z_r(h_r(k))``, a product of the repetitions' probabilities.
    n_buckets : int
        ``B``.

    Returns
    -------
    scores : tensor of shape (n_samples, n_classes)
    """
    total = None
    for out, bucket_of_class in zip(outputs, buckets):
        gathered = out.index_select(1, bucket_of_class)
        total = gathered if total is None else total.add_(gathered)
    return _merge(total, len(outputs), aggregation, n_buckets)


def _merge(total, n_repetitions, aggregation, n_buckets):
    """Class scores from the sum over repetitions of their bucket outputs."""
    if aggregation == "logit_sum":
        return total
    mean = total / n_repetitions
    if aggregation == "unbiased":
        return (mean - 1.0 / n_buckets) * (n_buckets / (n_buckets - 1.0))
    return mean


def top_k_exact(scores, k):
    """The ``k`` best classes of each row of a block of class scores (numpy)."""
    top = torch.topk(scores, k, dim=1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()


def candidate_classes(outputs, members, n_candidate_buckets):
    """Union, per row, of the classes in the top buckets of every repetition.

    Parameters
    ----------
    outputs : sequence of R arrays of shape (n_rows, n_buckets)
        Bucket outputs of each repetition (higher is better).
    members : sequence of R pairs ``(indptr, classes)``
        The classes of each bucket, as returned by
        :meth:`CountMinLabelHasher.bucket_members`.
    n_candidate_buckets : int
        Number ``m`` of top buckets taken from each repetition.

    Returns
    -------
    rows, classes : ndarrays of the same length
        The distinct (row, class) candidate pairs, sorted by row then class.
    """
    n_rows, n_buckets = outputs[0].shape
    m = min(n_candidate_buckets, n_buckets)
    pairs = []
    for out, (indptr, classes) in zip(outputs, members):
        top = np.argpartition(-out, m - 1, axis=1)[:, :m]
        starts = indptr[top].ravel()
        lengths = indptr[top + 1].ravel() - starts
        # Position of every member of every selected bucket, without a loop.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(lengths.sum())
        rows = np.repeat(np.arange(n_rows), lengths.reshape(n_rows, m).sum(axis=1))
        pairs.append(rows.astype(np.int64) * len(classes) + classes[positions])
    keys = np.unique(np.concatenate(pairs))
    n_classes = len(members[0][1])
    return keys // n_classes, keys % n_classes


def top_k_of_candidates(rows, classes, scores, n_rows, k):
    """Best ``k`` (class, score) per row among scored candidate pairs.

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        Rows with fewer than ``k`` candidates are padded with index -1 and
        score -inf.
    """
    order = np.lexsort((-scores, rows))
    rows, classes, scores = rows[order], classes[order], scores[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    indices = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=scores.dtype)
    indices[rows[keep], rank[keep]] = classes[keep]
    values[rows[keep], rank[keep]] = scores[keep]
    return indices, values


def score_pairs(outputs, buckets, rows, classes, aggregation, n_buckets):
    """Aggregated scores of given (row, class) pairs (numpy, see :func:`aggregate`)."""
    total = np.zeros(len(rows), dtype=np.float64)
    for out, bucket_of_class in zip(outputs, buckets):
        total += out[rows, bucket_of_class[classes]]
    return _merge(total, len(outputs), aggregation, n_buckets)
