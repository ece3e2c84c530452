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
    """The ``k`` best classes of each row of a block of class scores (numpy).

    Ties go to the lower class index, as :func:`numpy.argmax` breaks them,
    both in the order of the ``k`` returned and at the ``k``-th place.
    """
    values, indices = (t.cpu().numpy() for t in torch.topk(scores, k, dim=1))
    kth = values[:, -1:]
    scores = scores.cpu().numpy()
    straddle = np.flatnonzero((scores >= kth).sum(axis=1) > k)
    if len(straddle):  # more classes tie the k-th score than places are left
        block, kth_s = scores[straddle], kth[straddle]
        tied = block == kth_s
        need = k - (block > kth_s).sum(axis=1, keepdims=True)
        keep = (block > kth_s) | (tied & (np.cumsum(tied, axis=1) <= need))
        indices[straddle] = np.nonzero(keep)[1].reshape(len(straddle), k)
        values[straddle] = np.take_along_axis(block, indices[straddle], axis=1)
    order = np.lexsort((indices, -values), axis=1)
    return np.take_along_axis(indices, order, 1), np.take_along_axis(values, order, 1)


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


def _rank_keys(scores, classes):
    """One int64 per entry, larger for a higher score, then for a lower class.

    The float32 score's bits, made monotone, fill the high half and the
    complement of the class id the low half; padding (class -1) gets the
    smallest key.  Selecting by key breaks ties as ``numpy.argmax`` does.
    """
    bits = (np.asarray(scores, dtype=np.float32) + np.float32(0)).view(np.int32)
    bits = bits.astype(np.int64)
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: reverse their order
    keys = (bits << 32) | (0xFFFFFFFF - np.maximum(classes, 0))
    keys[classes < 0] = np.iinfo(np.int64).min
    return keys


def top_k_of_candidates(candidates, scores, k, n_repetitions):
    """Best ``k`` distinct classes per row of a padded candidate matrix.

    Parameters
    ----------
    candidates : ndarray of shape (n_rows, width)
        Class ids, -1 for padding; a class appears at most ``n_repetitions``
        times in a row, always with the same score.
    scores : ndarray of shape (n_rows, width)
        Their float32 scores (ignored where ``candidates`` is -1).
    k : int
    n_repetitions : int

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        Best first, ties to the lower class id.  Rows with fewer than ``k``
        distinct candidates are padded with index -1 and score -inf.
    """
    keys = _rank_keys(scores, candidates)
    n_rows, width = keys.shape
    # The k * R best entries hold at least k distinct classes (or all).
    take = min(k * n_repetitions, width)
    keys = np.take_along_axis(keys, np.argpartition(keys, width - take, axis=1)[:, width - take:], 1)
    keys = np.sort(keys, axis=1)[:, ::-1]  # best first, copies of a class adjacent
    keys[:, 1:][keys[:, 1:] == keys[:, :-1]] = np.iinfo(np.int64).min
    keys = np.sort(keys, axis=1)[:, ::-1][:, :k]
    if keys.shape[1] < k:  # fewer candidate slots than k
        keys = np.pad(keys, ((0, 0), (0, k - keys.shape[1])),
                      constant_values=np.iinfo(np.int64).min)
    padding = keys == np.iinfo(np.int64).min
    indices = 0xFFFFFFFF - (keys & 0xFFFFFFFF)
    bits = keys >> 32
    bits ^= (bits >> 31) & 0x7FFFFFFF
    values = bits.astype(np.int32).view(np.float32)
    indices[padding], values[padding] = -1, -np.inf
    return indices, values


def score_candidates(outputs, buckets, candidates, aggregation, n_buckets):
    """Aggregated scores of a padded candidate matrix (see :func:`aggregate`)."""
    n_rows = candidates.shape[0]
    classes = np.maximum(candidates, 0)  # padding scored as class 0, masked later
    # Gathers from the flattened outputs: row i's bucket b is at i * B + b.
    row_start = (np.arange(n_rows, dtype=np.int64) * n_buckets)[:, None]
    # Summed in the outputs' dtype and in repetition order, as aggregate()
    # does: a class gets bit for bit the score the dense path gives it.
    total = None
    for out, bucket_of_class in zip(outputs, buckets):
        flat = np.ascontiguousarray(out).reshape(-1)
        gathered = flat.take(bucket_of_class.take(classes) + row_start)
        total = gathered if total is None else np.add(total, gathered, out=total)
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
    # Summed as scores are: rounding is monotone, so no class outside the
    # candidates can score above it.
    total = best[0].values[:, stop].numpy().copy()
    for b in best[1:]:
        total += b.values[:, stop].numpy()
    bound = _merge(total, n_repetitions, aggregation, n_buckets)
    candidates = candidate_classes(tops, members)
    scores = score_candidates(outputs, buckets, candidates, aggregation, n_buckets)
    new_indices, new_values = top_k_of_candidates(candidates, scores, k, n_repetitions)
    # A class seen in an earlier round may come again (from another
    # repetition): at most twice among the 2k, with the same score.
    indices, values = top_k_of_candidates(
        np.hstack([indices, new_indices]), np.hstack([values, new_values]), k, 2
    )
    # strictly above: a class outside the candidates cannot even tie
    proved = (indices[:, -1] >= 0) & (values[:, -1] > bound)
    return proved, indices, values
