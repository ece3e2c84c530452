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


def top_buckets(outputs, n_candidate_buckets):
    """Indices of the ``m`` best buckets of each row, for each repetition.

    Parameters
    ----------
    outputs : sequence of R arrays of shape (n_rows, n_buckets)
        Bucket outputs of each repetition (higher is better).
    n_candidate_buckets : int
        ``m``; capped at ``n_buckets``.

    Returns
    -------
    tops : list of R int arrays of shape (n_rows, m)
        In no particular order within a row.
    """
    m = min(n_candidate_buckets, outputs[0].shape[1])
    return [np.argpartition(-out, m - 1, axis=1)[:, :m] for out in outputs]


def candidate_classes(tops, members):
    """Classes of the selected buckets of every repetition, one padded row per sample.

    Parameters
    ----------
    tops : sequence of R int arrays of shape (n_rows, m)
        The buckets selected in each repetition (see :func:`top_buckets`).
    members : sequence of R pairs ``(indptr, classes)``
        The classes of each bucket, as returned by
        :meth:`CountMinLabelHasher.bucket_members`.

    Returns
    -------
    candidates : ndarray of shape (n_rows, width), int64
        Row ``i`` lists the classes of the selected buckets of every
        repetition for sample ``i`` (a class may appear once per repetition
        that selects it), padded with -1.  Built with no sort and no loop
        over samples: every class lands at ``its row, the row's earlier
        repetitions' count + its position``.
    """
    n_rows, m = tops[0].shape
    spans = []  # per repetition: first member and size of every selected bucket
    for top, (indptr, _) in zip(tops, members):
        starts = indptr[top].ravel()
        spans.append((starts, indptr[top + 1].ravel() - starts))
    per_row = [lengths.reshape(n_rows, m).sum(axis=1) for _, lengths in spans]
    width = max(1, int(np.sum(per_row, axis=0).max(initial=0)))
    candidates = np.full(n_rows * width, -1, dtype=np.int64)
    filled = np.arange(n_rows, dtype=np.int64) * width  # next free slot per row
    for (starts, lengths), count, (_, classes) in zip(spans, per_row, members):
        # Members of the selected buckets, in order, without a loop: bucket
        # j's members sit at starts[j] + 0, 1, ..., lengths[j] - 1.
        total = int(lengths.sum())
        steps = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        source = np.repeat(starts, lengths) + steps
        # Row i's new classes go to its next free slots, in order.
        first = np.cumsum(count) - count  # where row i's run starts in source
        target = np.repeat(filled - first, count) + np.arange(total)
        candidates[target] = classes[source]
        filled += count
    return candidates.reshape(n_rows, width)


def top_k_of_candidates(candidates, scores, k, n_repetitions):
    """Best ``k`` distinct classes per row of a padded candidate matrix.

    Parameters
    ----------
    candidates : ndarray of shape (n_rows, width)
        Class ids, -1 for padding; a class appears at most ``n_repetitions``
        times in a row, always with the same score.
    scores : ndarray of shape (n_rows, width)
        Their scores (ignored where ``candidates`` is -1).
    k : int
    n_repetitions : int

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        Rows with fewer than ``k`` distinct candidates are padded with index
        -1 and score -inf.
    """
    scores = np.where(candidates < 0, -np.inf, scores)
    # The k * R best entries hold at least k distinct classes (or all).
    width = min(k * n_repetitions, scores.shape[1])
    best = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    top_classes = np.take_along_axis(candidates, best, axis=1)
    top_scores = np.take_along_axis(scores, best, axis=1)
    # Drop repeated classes: sort each row by class, keep the first copy.
    order = np.argsort(top_classes, axis=1, kind="stable")
    top_classes = np.take_along_axis(top_classes, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    repeated = np.zeros_like(top_classes, dtype=bool)
    repeated[:, 1:] = top_classes[:, 1:] == top_classes[:, :-1]
    top_scores[repeated | (top_classes < 0)] = -np.inf
    # Best first; ties broken by the lower class id (rows are sorted by class).
    rank = np.argsort(-top_scores, axis=1, kind="stable")[:, :k]
    indices = np.take_along_axis(top_classes, rank, axis=1)
    values = np.take_along_axis(top_scores, rank, axis=1)
    indices[~np.isfinite(values)] = -1
    if indices.shape[1] < k:  # fewer candidate slots than k
        pad = k - indices.shape[1]
        indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return indices, values


def score_candidates(outputs, buckets, candidates, aggregation, n_buckets):
    """Aggregated scores of a padded candidate matrix (see :func:`aggregate`)."""
    n_rows = candidates.shape[0]
    classes = np.maximum(candidates, 0)  # padding scored as class 0, masked later
    # Gathers from the flattened outputs: row i's bucket b is at i * B + b.
    row_start = (np.arange(n_rows, dtype=np.int64) * n_buckets)[:, None]
    total = np.zeros(candidates.shape, dtype=np.float64)
    for out, bucket_of_class in zip(outputs, buckets):
        flat = np.ascontiguousarray(out).reshape(-1)
        total += flat.take(bucket_of_class.take(classes) + row_start)
    return _merge(total, len(outputs), aggregation, n_buckets)


#: certified_top_k holds at most about this many (row, candidate) pairs at once.
_CANDIDATES_PER_CHUNK = 1 << 22


def pruning_pays(n_classes, n_buckets, n_repetitions, n_candidate_buckets=1):
    """Whether scoring the classes of the top ``m`` buckets beats scoring all.

    A round of :func:`certified_top_k` scores about ``R * m * K / B``
    candidates, ``R`` gathers each, against ``R * K`` gathers for every
    class; its bookkeeping costs a few times more per candidate.
    """
    return (
        n_classes >= 8 * n_buckets
        and 4 * n_repetitions * n_candidate_buckets <= n_buckets
    )


def certified_top_k(outputs, members, buckets, k, aggregation, n_buckets, dense_top_k):
    """Exact top ``k`` from a few buckets per repetition (threshold algorithm).

    A class outside the ``m`` best buckets of every repetition has, in each
    repetition ``r``, an output at most ``t_r``, the ``(m+1)``-th best
    bucket output of that row; so its score is at most the merge of
    ``sum_r t_r``.  Once the ``k``-th best candidate reaches that bound, no
    other class can beat it and the candidates' top ``k`` is exact (up to
    ties).  Rows not yet certified double ``m`` and go again, scoring only
    the buckets they add; when another round would no longer pay
    (:func:`pruning_pays`), the rows left are scored over all classes by
    ``dense_top_k``.

    Parameters
    ----------
    outputs : sequence of R float arrays of shape (n_rows, n_buckets)
        Bucket outputs, transformed as ``aggregation`` needs (see
        :data:`BUCKET_OUTPUT`).
    members : sequence of R pairs ``(indptr, classes)``
        See :meth:`CountMinLabelHasher.bucket_members`.
    buckets : ndarray of shape (R, n_classes)
        ``buckets[r, k] = h_r(k)``.
    k : int
    aggregation : {"mean", "unbiased", "logit_sum"}
    n_buckets : int
    dense_top_k : callable
        ``dense_top_k(rows) -> (indices, values)``: the exact top ``k`` of
        these rows (indices into the block), scoring every class.

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        On proved rows ties go to the lower class id; rows scored by
        ``dense_top_k`` break them as it does.
    """
    n_rows = outputs[0].shape[0]
    n_classes = buckets.shape[1]
    n_repetitions = len(outputs)
    # Best k found so far per row (-1 / -inf: none yet).
    indices = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf)
    pending = np.arange(n_rows)
    scored, m = 0, 1  # buckets of rank < scored are scored already
    while len(pending) and pruning_pays(n_classes, n_buckets, n_repetitions, m):
        # Each round scores only the classes of the buckets ranked
        # [scored, m), about R * (m - scored) * K / B per row, and holds at
        # most _CANDIDATES_PER_CHUNK of them at once.
        width = n_repetitions * (m - scored) * -(-n_classes // n_buckets)
        step = max(1, _CANDIDATES_PER_CHUNK // width)
        failed = []
        for start in range(0, len(pending), step):
            rows = pending[start : start + step]
            if len(rows) == n_rows:  # every row: no copy of the outputs
                outs = outputs
            else:
                outs = [out[rows] for out in outputs]
            proved, indices[rows], values[rows] = _certify_round(
                outs, members, buckets, k, aggregation,
                n_buckets, scored, m, indices[rows], values[rows],
            )
            failed.append(rows[~proved])
        pending = np.concatenate(failed)
        scored, m = m, 2 * m
    if len(pending):
        indices[pending], values[pending] = dense_top_k(pending)
    return indices, values.astype(outputs[0].dtype)


def _certify_round(
    outputs, members, buckets, k, aggregation, n_buckets, start, stop, indices, values
):
    """One round of :func:`certified_top_k` on some rows.

    Scores the classes of the buckets ranked ``[start, stop)`` of every
    repetition, merges them into the best ``k`` so far (``indices``,
    ``values``) and tells which rows are now proved.
    """
    n_repetitions = len(outputs)
    # The stop + 1 best outputs, sorted: the buckets to score, and the bound.
    best = [torch.topk(torch.from_numpy(out), stop + 1, dim=1) for out in outputs]
    tops = [b.indices[:, start:stop].numpy() for b in best]
    bound = _merge(
        sum(b.values[:, stop].double().numpy() for b in best),
        n_repetitions, aggregation, n_buckets,
    )
    candidates = candidate_classes(tops, members)
    scores = score_candidates(outputs, buckets, candidates, aggregation, n_buckets)
    new_indices, new_values = top_k_of_candidates(candidates, scores, k, n_repetitions)
    # A class seen in an earlier round may come again (from another
    # repetition): at most twice among the 2k, with the same score.
    indices, values = top_k_of_candidates(
        np.hstack([indices, new_indices]), np.hstack([values, new_values]), k, 2
    )
    proved = (indices[:, -1] >= 0) & (values[:, -1] >= bound)
    return proved, indices, values
