"""Decoding: from the R networks' bucket outputs back to scores of the K classes.

Class ``k`` falls in bucket ``h_r(k)`` of repetition ``r``; its score merges
the ``R`` outputs of those buckets.  A :class:`Decoder`, built once per
fitted model, turns blocks of bucket outputs into class scores or into the
top ``k`` classes: densely on the outputs' device, or on the CPU by a
threshold algorithm that scores only the classes of the best buckets.
Blocks are sized from scikit-learn's ``working_memory``.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn import get_config

from ._device import cpu_path
from ._hashing import bucket_members
from ._utils import read_only_tensor

#: For each aggregation, the transformation of the logits each repetition
#: contributes, for multiclass and for multilabel targets.
BUCKET_OUTPUT = {
    "mean": {False: "softmax", True: "sigmoid"},
    "unbiased": {False: "softmax", True: "sigmoid"},
    "logit_sum": {False: "log_softmax", True: "logits"},
}


def aggregate(outputs, buckets, aggregation, n_buckets, buffers=None):
    """Merge per-repetition bucket outputs into class scores.

    Parameters
    ----------
    outputs : sequence of R tensors of shape (n_samples, n_buckets)
        Bucket probabilities (``"mean"``, ``"unbiased"``) or log-probabilities
        / logits (``"logit_sum"``) of each repetition.
    buckets : tensor of shape (R, n_classes), int32 or int64
        ``buckets[r, k] = h_r(k)``, on the device of ``outputs``.
    aggregation : {"mean", "unbiased", "logit_sum"}
        ``"mean"``: ``mean_r P_r(h_r(k))``.  ``"unbiased"``:
        ``B / (B - 1) * (mean - 1 / B)``, which removes the expected mass
        that colliding classes add to a bucket.  ``"logit_sum"``:
        ``sum_r z_r(h_r(k))``, a product of the repetitions' probabilities.
    n_buckets : int
        ``B``.
    buffers : pair of tensors of shape (n_samples, n_classes), default=None
        Where to sum and to gather, instead of fresh tensors: the scores
        are then the first buffer.

    Returns
    -------
    scores : tensor of shape (n_samples, n_classes)
    """
    total = None
    for out, bucket_of_class in zip(outputs, buckets):
        if buffers is None:
            gathered = out.index_select(1, bucket_of_class)
        else:
            buffer = buffers[0 if total is None else 1]
            gathered = torch.index_select(out, 1, bucket_of_class, out=buffer)
        total = gathered if total is None else total.add_(gathered)
    in_place = buffers is not None
    return _merge(total, len(outputs), aggregation, n_buckets, in_place=in_place)


def _merge(total, n_repetitions, aggregation, n_buckets, in_place=False):
    """Class scores from the sum over repetitions of their bucket outputs.

    ``total`` is a torch tensor or a numpy array; ``in_place`` overwrites
    it.  Either way the same operations in the same order: the same scores
    bit for bit.
    """
    if aggregation == "logit_sum":
        return total
    if in_place:
        total /= n_repetitions
        mean = total
    else:
        mean = total / n_repetitions  # fresh: the steps below may reuse it
    if aggregation == "unbiased":
        mean -= 1.0 / n_buckets
        mean *= n_buckets / (n_buckets - 1.0)
    return mean


def top_k_exact(scores, k):
    """The ``k`` best classes of each row of a block of class scores.

    Runs where ``scores`` live (a torch tensor).  Ties go to the lower class
    index, as :func:`numpy.argmax` breaks them, both in the order of the
    ``k`` returned and at the ``k``-th place.  NaN scores (from inputs that
    overflow float32) rank above every number, as in :func:`torch.topk`
    and :func:`numpy.argmax`, and tie with each other.

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
    """
    values, indices = torch.topk(scores, k, dim=1)
    kth = values[:, -1:]
    # topk ranks NaN first: a row with one has it in the first place
    _, straddle = _at_least(scores, kth, k, values[:, 0].isnan().any())
    if straddle.numel():  # more classes tie the k-th score than places are left
        block = scores[straddle]
        keep = _first_k(block, kth[straddle], k)
        chosen = torch.nonzero(keep)[:, 1].view(-1, k)  # ascending class ids
        indices[straddle] = chosen
        values[straddle] = block.gather(1, chosen)
    indices, order = indices.sort(dim=1)
    values, order = values.gather(1, order).sort(dim=1, descending=True, stable=True)
    return indices.gather(1, order).cpu().numpy(), values.cpu().numpy()


def _at_least(scores, kth, k, any_nan):
    """Mask of the scores that rank at or above the ``k``-th best ``kth``
    (NaN too, where ``any_nan``: NaN compares False), and the rows where
    more than ``k`` do: ties at the ``k``-th place, for :func:`_first_k`."""
    keep = scores >= kth
    if any_nan:
        keep |= scores.isnan()
    # counted as bytes: torch sums a bool tensor through int64, 4 times slower
    counts = keep.view(torch.uint8).sum(dim=1, dtype=torch.int32)
    return keep, torch.nonzero(counts > k).squeeze(1)


def _first_k(scores, kth, k):
    """Mask of the ``k`` best scores of each row, given the ``k``-th best.

    Every score above ``kth`` (NaN first), then the first positions that
    tie with it, as many as places are left: ties go to the lower position.
    ``kth`` of shape (n_rows, 1); NaN where the ``k`` best are all NaN.
    """
    nan, kth_nan = scores.isnan(), kth.isnan()
    above = ((scores > kth) | nan) & ~kth_nan
    tied = torch.where(kth_nan, nan, scores == kth)
    need = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (torch.cumsum(tied, dim=1) <= need))


def _best_positions(scores, k):
    """Positions of the ``k`` best scores of each row, ascending (torch).

    The ``k`` that :func:`top_k_exact` returns (NaN first, ties at the
    ``k``-th place to the lower position), found by selection alone: an
    unsorted :func:`torch.topk` gives the ``k``-th best score, then a pass
    keeps what ranks at or above it.  Linear in the row, where a sort is
    not: at ``k = 10**5`` sorting every chunk of classes, and then the
    chunks' lists, took most of the time of an exact top ``k``.
    """
    top = torch.topk(scores, k, dim=1, sorted=False).values
    top_nan = top.isnan()  # topk takes NaN first: a row with one has it here
    # the k-th best: the least number among the k best, NaN if they all are
    kth = torch.where(top_nan, torch.inf, top).amin(dim=1, keepdim=True)
    kth[top_nan.all(dim=1)] = torch.nan
    keep, straddle = _at_least(scores, kth, k, top_nan.any())
    if straddle.numel():  # more positions tie the k-th score than places are left
        keep[straddle] = _first_k(scores[straddle], kth[straddle], k)
    return torch.nonzero(keep)[:, 1].view(-1, k)


def _merge_chunk(best, first, scores, k):
    """The best ``k`` of the best so far and a chunk of class scores.

    ``best`` is ``None`` or ``(classes, scores)``, each of shape (n_rows,
    at most k), in ascending class order; ``scores`` are those of classes
    ``first, first + 1, ...``, all above ``best``'s.  The chunk's best
    ``k`` follow ``best``'s, and the best ``k`` of both are selected
    (:func:`_best_positions`): in class order again, positions in the
    joined rows break ties to the lower class.
    """
    if scores.shape[1] > k:
        keep = _best_positions(scores, k)
        classes, scores = keep + first, scores.gather(1, keep)
    else:  # all of them, out of the buffer the next chunk overwrites
        classes = torch.arange(first, first + scores.shape[1]).expand_as(scores)
        scores = scores.clone()
    if best is None:
        return classes, scores
    classes = torch.cat([best[0], classes], dim=1)
    scores = torch.cat([best[1], scores], dim=1)
    if scores.shape[1] > k:
        keep = _best_positions(scores, k)
        classes, scores = classes.gather(1, keep), scores.gather(1, keep)
    return classes, scores


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
        In no particular order within a row; NaN outputs count as the best,
        as :func:`torch.topk` ranks them.
    """
    m = min(n_candidate_buckets, outputs[0].shape[1])
    tops = []
    for out in outputs:
        keys = -out  # argpartition puts NaN last: make it the smallest key
        keys[np.isnan(keys)] = -np.inf
        tops.append(np.argpartition(keys, m - 1, axis=1)[:, :m])
    return tops


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
    Every NaN becomes the positive quiet NaN, whose key is above +inf's:
    NaN ranks first whatever its sign bit (set in x86's ``inf - inf``).
    """
    scores = np.asarray(scores, dtype=np.float32) + np.float32(0)  # -0.0 is 0.0
    scores[np.isnan(scores)] = np.float32(np.nan)
    bits = scores.view(np.int32)
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
        Their scores (ignored where ``candidates`` is -1).
    k : int
    n_repetitions : int

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        Best first, ties to the lower class id.  Rows with fewer than ``k``
        distinct candidates are padded with index -1 and score -inf.
    """
    if np.asarray(scores).dtype != np.float32:
        return _top_k_of_candidates_sorted(candidates, scores, k)
    keys = _rank_keys(scores, candidates)
    n_rows, width = keys.shape
    # The k * R best entries hold at least k distinct classes (or all).
    take = min(k * n_repetitions, width)
    keys = np.take_along_axis(
        keys, np.argpartition(keys, width - take, axis=1)[:, width - take :], 1
    )
    keys = np.sort(keys, axis=1)[:, ::-1]  # best first, copies of a class adjacent
    keys[:, 1:][keys[:, 1:] == keys[:, :-1]] = np.iinfo(np.int64).min
    keys = np.sort(keys, axis=1)[:, ::-1][:, :k]
    if keys.shape[1] < k:  # fewer candidate slots than k
        keys = np.pad(
            keys,
            ((0, 0), (0, k - keys.shape[1])),
            constant_values=np.iinfo(np.int64).min,
        )
    padding = keys == np.iinfo(np.int64).min
    indices = 0xFFFFFFFF - (keys & 0xFFFFFFFF)
    bits = keys >> 32
    bits ^= (bits >> 31) & 0x7FFFFFFF
    values = bits.astype(np.int32).view(np.float32)
    indices[padding], values[padding] = -1, -np.inf
    return indices, values


def _top_k_of_candidates_sorted(candidates, scores, k):
    """:func:`top_k_of_candidates` by a full sort of each row (any float dtype)."""
    padding = candidates < 0
    scores = np.where(padding, -np.inf, scores)
    classes = np.where(padding, np.iinfo(np.int64).max, candidates)
    order = _nan_first_order(scores, classes)
    classes = np.take_along_axis(classes, order, 1)
    scores = np.take_along_axis(scores, order, 1)
    dropped = classes == np.iinfo(np.int64).max
    dropped[:, 1:] |= (
        classes[:, 1:] == classes[:, :-1]
    )  # copies of a class are adjacent
    rank = np.argsort(dropped, axis=1, kind="stable")[:, :k]
    indices = np.take_along_axis(classes, rank, 1)
    values = np.take_along_axis(scores, rank, 1)
    missing = np.take_along_axis(dropped, rank, 1)
    indices[missing], values[missing] = -1, -np.inf
    if indices.shape[1] < k:
        pad = ((0, 0), (0, k - indices.shape[1]))
        indices = np.pad(indices, pad, constant_values=-1)
        values = np.pad(values, pad, constant_values=-np.inf)
    return indices, values


def _nan_first_order(scores, ties):
    """Per row, the order of higher scores first, NaN (of either sign)
    before every number, equal scores by ascending ``ties`` (stable)."""
    nan = np.isnan(scores)
    return np.lexsort((ties, np.where(nan, 0, -scores), ~nan), axis=1)


def score_candidates(outputs, buckets, candidates, aggregation, n_buckets):
    """Aggregated scores of a padded candidate matrix (see :func:`aggregate`)."""
    n_rows = candidates.shape[0]
    classes = np.maximum(candidates, 0)  # padding scored as class 0, masked later
    # Gathers from the flattened outputs: row i's bucket b is at i * B + b.
    row_start = (np.arange(n_rows, dtype=np.int64) * n_buckets)[:, None]
    # Summed in the outputs' dtype and in repetition order, as aggregate()
    # does: a class gets bit for bit the score the dense path gives it.
    # Overflowing outputs (inf and -inf) sum to NaN silently, as torch's do:
    # numpy would warn, from threads whose np.errstate the caller cannot set.
    total = None
    with np.errstate(invalid="ignore", over="ignore"):
        for out, bucket_of_class in zip(outputs, buckets):
            flat = np.ascontiguousarray(out).reshape(-1)
            gathered = flat.take(bucket_of_class.take(classes) + row_start)
            total = gathered if total is None else np.add(total, gathered, out=total)
        return _merge(total, len(outputs), aggregation, n_buckets)


def working_rows(row_bytes, budget=None):
    """How many rows of ``row_bytes`` each fit in ``budget`` bytes.

    ``budget`` defaults to scikit-learn's ``working_memory``.  That setting
    is thread-local: work handed to other threads gets its share of the
    caller's budget explicitly.
    """
    if budget is None:
        budget = get_config()["working_memory"] * 2**20
    return max(1, int(budget // max(1, row_bytes)))


def decoding_budget():
    """Bytes of temporaries decoding may hold: half of ``working_memory``.

    The other half holds the block of bucket outputs being decoded (see
    ``MACHClassifier._chunks``).
    """
    return get_config()["working_memory"] * 2**20 / 2


#: On the CPU class scores are summed this many classes at a time, into
#: reused buffers (``Decoder._iter_chunks``).  Whole rows of K scores, two
#: fresh (rows, K) temporaries per repetition, made exact top-k about 4
#: times slower at K = 3e6 and R = 32 (benchmarks/results/decode_memory.md):
#: page faults and memory traffic instead of gathers.
_CLASS_CHUNK = 2**16

#: On the CPU a block of rows of class scores takes at most this much (at
#: least one row): for K up to _CLASS_CHUNK its (rows, K) sum and gather
#: stay in the caches; above, the callers' temporaries per block stay
#: small.  Under scikit-learn's default 1 GiB working_memory, blocks of
#: 120 MB per repetition made exact top-5 of 10,000 queries at K = 15,000,
#: R = 8 take 3.37 s against 1.45 s (benchmarks/results/decode_blocks.md).
_CPU_SCORE_BLOCK_BYTES = 2**24

#: Devices decoded the CPU's way: exact top-k pruned where it pays, class
#: scores by chunks of classes, blocks capped at _CPU_SCORE_BLOCK_BYTES.
#: Elsewhere (an accelerator, and the CPU under SKLEARN_MACH_TEST_GROUPED=1)
#: whole rows of scores under working_memory alone.  The same scores either
#: way.
_CPU_DEVICES = cpu_path({"cpu"})

#: Bytes a round of certified_top_k holds per (row, candidate) pair: the
#: candidates, their gathered buckets, scores and selection keys.
_CANDIDATE_BYTES = 128


#: Exact top-k's rounds widen while ``_PRUNING_FACTOR * R * m <= B``: at
#: most ``K / 4`` candidates a row (benchmarks/bench_pruning.py compares
#: other factors, and ``math.inf``: never prune).
_PRUNING_FACTOR = 4


#: Whether exact top-k gives up rows its rounds will not prove (see
#: certified_top_k; benchmarks/bench_pruning.py times both).
_GIVE_UP = True


def pruning_pays(n_classes, n_buckets, n_repetitions, n_candidate_buckets=1):
    """Whether scoring the classes of the top ``m`` buckets beats scoring all.

    A round of :func:`certified_top_k` scores about ``R * m * K / B``
    candidates, ``R`` gathers each, against ``R * K`` gathers for every
    class; its bookkeeping costs a few times more per candidate.
    """
    return (
        n_classes >= 8 * n_buckets
        and _PRUNING_FACTOR * n_repetitions * n_candidate_buckets <= n_buckets
    )


def certified_top_k(
    outputs, members, buckets, k, aggregation, n_buckets, dense_top_k, budget=None
):
    """Exact top ``k`` from a few buckets per repetition (threshold algorithm).

    A class outside the ``m`` best buckets of every repetition has, in each
    repetition ``r``, an output at most ``t_r``, the ``(m+1)``-th best
    bucket output of that row; so its score is at most the merge of
    ``sum_r t_r``.  Once the ``k``-th best candidate exceeds that bound, no
    other class can beat it and the candidates' top ``k`` is exact (up to
    ties).  Rows not yet certified double ``m`` and go again, scoring only
    the buckets they add; when another round would no longer pay
    (:func:`pruning_pays`), the rows left are scored over all classes by
    ``dense_top_k``.  The first round takes the least ``m`` whose buckets
    can hold ``k`` classes (:func:`_first_round`); if no round can, every
    row goes to ``dense_top_k`` at once.

    A row also goes to ``dense_top_k`` early when its rounds will not prove
    it.  Its gap, the bound minus its ``k``-th best score, shrinks by about
    the same amount each time ``m`` doubles (it fell linearly in ``log m``
    on trained and on barely trained models alike); a row whose gap would
    still be open after the rounds left, plus one, at the pace of its last
    round (or the median row's, if faster) stops there (:func:`_hopeless`).
    Flat scores (a barely trained model, or classes seen once) then cost a
    few cheap rounds, not every round (each as dear as all before it) on
    top of the dense scoring.

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
    budget : int, default=None
        Bytes of temporary arrays a round may hold (see
        :func:`working_rows`).

    Returns
    -------
    indices, values : ndarrays of shape (n_rows, k)
        On proved rows ties go to the lower class id; rows scored by
        ``dense_top_k`` break them as it does.
    """
    n_rows = outputs[0].shape[0]
    n_classes = buckets.shape[1]
    n_repetitions = len(outputs)
    m = _first_round(members, k)
    if not pruning_pays(n_classes, n_buckets, n_repetitions, m):
        # no round can hold k candidates (k above about K / 4): each would
        # score for nothing before the dense scoring
        return dense_top_k(np.arange(n_rows))
    # Best k found so far per row (-1 / -inf: none yet).  In the outputs'
    # dtype, as the candidates' scores: float64 sent every round's merge
    # down top_k_of_candidates' lexsort (most of a round's time at large
    # k) instead of its selection keys, and took twice the memory.
    indices = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=outputs[0].dtype)
    pending = np.arange(n_rows)
    gaps = np.full(n_rows, np.inf)  # bound minus k-th best, after the last round
    given_up = []
    scored = 0  # buckets of rank < scored are scored already
    while len(pending) and pruning_pays(n_classes, n_buckets, n_repetitions, m):
        # Each round scores only the classes of the buckets ranked
        # [scored, m), about R * (m - scored) * K / B per row, and merges
        # them into the best k so far (2k entries), as many rows at once
        # as the budget holds.
        width = n_repetitions * (m - scored) * -(-n_classes // n_buckets)
        step = working_rows((width + 2 * k) * _CANDIDATE_BYTES, budget)
        left = _rounds_left(n_classes, n_buckets, n_repetitions, m)
        failed = []
        for start in range(0, len(pending), step):
            rows = pending[start : start + step]
            if len(rows) == n_rows:  # every row: no copy of the outputs
                outs = outputs
            else:
                outs = [out[rows] for out in outputs]
            proved, indices[rows], values[rows], bound = _certify_round(
                outs,
                members,
                buckets,
                k,
                aggregation,
                n_buckets,
                scored,
                m,
                indices[rows],
                values[rows],
            )
            with np.errstate(invalid="ignore"):  # -inf - -inf: -inf outputs
                # in float64: rounded to the outputs' dtype, the gaps
                # would give up other rows than before
                gap = bound - values[rows, -1].astype(np.float64)
            hopeless = _hopeless(gap, gaps[rows], proved, left) & _GIVE_UP
            gaps[rows] = gap
            failed.append(rows[~proved & ~hopeless])
            given_up.append(rows[~proved & hopeless])
        pending = np.concatenate(failed)
        scored, m = m, 2 * m
    pending = np.sort(np.concatenate([pending, *given_up]))
    if len(pending):
        indices[pending], values[pending] = dense_top_k(pending)
    return indices, values


def _first_round(members, k):
    """The ``m`` of :func:`certified_top_k`'s first round: the least power of 2
    whose ``m`` largest buckets of every repetition hold ``k`` classes.

    A row is proved only once it has ``k`` candidates: a round with fewer
    has no ``k``-th best score, hence no gap, and is never given up
    (:func:`_hopeless`).  At ``K = 2 * 10**5``, ``B = 4096``, ``R = 2``
    and ``k = 2 * 10**4``, eight rounds of ten had no row with ``k``
    candidates: they scored, and merged ``2k`` entries a row, for nothing.
    """
    # classes in the m largest buckets, summed over repetitions, at m - 1
    held = sum(np.cumsum(np.sort(np.diff(indptr))[::-1]) for indptr, _ in members)
    m = 1
    while m < len(held) and held[m - 1] < k:
        m *= 2
    return m


def _hopeless(gap, last_gap, proved, left):
    """Rows whose gap the ``left`` rounds to come will not close.

    A row's pace is how much its gap shrank in this round, or, if faster,
    the median pace of the rows here not yet proved: one round's pace is
    noisy, and a row given up too early costs a dense scoring it might
    have avoided.  It is hopeless if its gap exceeds ``left + 1`` rounds at
    that pace.  No gap yet (fewer than ``k`` candidates) or NaN scores: not
    hopeless.
    """
    with np.errstate(invalid="ignore"):  # inf - inf: no k-th best before
        shrink = last_gap - gap
        finite = np.isfinite(shrink) & ~proved
        if finite.any():
            shrink = np.fmax(shrink, np.median(shrink[finite]))
        return np.isfinite(gap) & (gap > (left + 1) * shrink)


def _rounds_left(n_classes, n_buckets, n_repetitions, m):
    """How many rounds :func:`certified_top_k` may run after the one at ``m``."""
    left = 0
    while pruning_pays(n_classes, n_buckets, n_repetitions, m * 2 ** (left + 1)):
        left += 1
    return left


def _certify_round(
    outputs, members, buckets, k, aggregation, n_buckets, start, stop, indices, values
):
    """One round of :func:`certified_top_k` on some rows.

    Scores the classes of the buckets ranked ``[start, stop)`` of every
    repetition, merges them into the best ``k`` so far (``indices``,
    ``values``) and tells which rows are now proved.  Returns ``proved,
    indices, values, bound``: ``bound`` is the highest score a class
    outside the candidates can have.
    """
    n_repetitions = len(outputs)
    # The stop + 1 best outputs, sorted: the buckets to score, and the bound.
    best = [torch.topk(torch.from_numpy(out), stop + 1, dim=1) for out in outputs]
    tops = [b.indices[:, start:stop].numpy() for b in best]
    if start:
        # The start best buckets are the ones earlier rounds scored unless
        # a tie straddles rank start: topk orders tied outputs anew for
        # each k, so this round's first start may hold a bucket none
        # scored.  Those rows score ranks [0, start) again; the others get
        # bucket n_buckets there, which has no members.
        for r, b in enumerate(best):
            ranked = b.values.numpy()
            before, at = ranked[:, start - 1], ranked[:, start]
            tied = (before == at) | (np.isnan(before) & np.isnan(at))
            if tied.any():
                head = np.where(tied[:, None], b.indices[:, :start].numpy(), n_buckets)
                tops[r] = np.hstack([head, tops[r]])
        if any(top.shape[1] > stop - start for top in tops):
            width = max(top.shape[1] for top in tops)
            tops = [
                np.pad(
                    top, ((0, 0), (width - top.shape[1], 0)), constant_values=n_buckets
                )
                for top in tops
            ]
            members = [(np.append(indptr, indptr[-1]), cls) for indptr, cls in members]
    # Summed as scores are: rounding is monotone, so no class outside the
    # candidates can score above it.
    total = best[0].values[:, stop].numpy().copy()
    with np.errstate(invalid="ignore", over="ignore"):  # as score_candidates
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
    return proved, indices, values, bound


class Decoder:
    """The decoding of one fitted model: its buckets and, once needed, their members.

    Parameters
    ----------
    buckets : ndarray of shape (n_repetitions, n_classes)
        ``buckets[r, k] = h_r(k)``.
    n_buckets : int
    """

    def __init__(self, buckets, n_buckets):
        # The hasher's own int32 table, not a copy: at K = 1e7 and R = 32 a
        # copy would take 1.3 GB (2.6 GB as int64).  index_select and take
        # accept int32 indices.
        buckets = np.ascontiguousarray(buckets)
        if buckets.dtype not in (np.int32, np.int64):
            buckets = buckets.astype(np.int64)
        self.buckets = buckets
        self.n_buckets = n_buckets
        self._members = None
        self._on_device = {}

    def __getstate__(self):
        return {
            "buckets": self.buckets,
            "n_buckets": self.n_buckets,
            "_members": None,
            "_on_device": {},
        }

    def members(self):
        """``(indptr, classes)`` of every bucket, per repetition (computed once)."""
        if self._members is None:
            self._members = [bucket_members(b, self.n_buckets) for b in self.buckets]
        return self._members

    def _buckets_on(self, device):
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = read_only_tensor(self.buckets).to(device)
        return self._on_device[key]

    def prunes(self, device):
        """Whether exact top-k goes through the threshold algorithm (CPU only)."""
        n_repetitions, n_classes = self.buckets.shape
        return torch.device(device).type in _CPU_DEVICES and pruning_pays(
            n_classes, self.n_buckets, n_repetitions
        )

    def _by_chunks(self, outputs):
        """Whether class scores are computed ``_CLASS_CHUNK`` classes at a time.

        On the CPU, whole rows of ``K`` scores cost two fresh ``(rows, K)``
        temporaries per repetition (page faults and memory traffic); a
        GPU's memory and caching allocator serve them well.
        """
        return (
            outputs[0].device.type in _CPU_DEVICES
            and self.buckets.shape[1] > _CLASS_CHUNK
        )

    def _iter_chunks(self, block, aggregation):
        """Yield ``(first, scores)`` of classes ``first`` to ``first + _CLASS_CHUNK``.

        For a block of rows on the CPU: :func:`aggregate` on the chunk's
        columns, in two buffers reused for every chunk (the same operations:
        each class gets the same score bit for bit).  ``scores`` is a buffer
        that the next chunk overwrites.
        """
        n_classes = self.buckets.shape[1]
        n, width = block[0].shape[0], min(_CLASS_CHUNK, n_classes)
        sums = torch.empty(n * width, dtype=block[0].dtype)
        gathers = torch.empty_like(sums)
        buckets = self._buckets_on("cpu")
        for first in range(0, n_classes, width):
            columns = buckets[:, first : first + width]
            c = columns.shape[1]
            views = sums[: n * c].view(n, c), gathers[: n * c].view(n, c)
            yield first, aggregate(block, columns, aggregation, self.n_buckets, views)

    def iter_scores(self, outputs, aggregation, budget=None):
        """Yield the class scores of ``outputs`` in blocks of rows (torch)."""
        n_rows, n_classes = outputs[0].shape[0], self.buckets.shape[1]
        budget = budget or decoding_budget()
        by_chunks = self._by_chunks(outputs)
        if outputs[0].device.type in _CPU_DEVICES:
            # whole rows: blocks that stay in the caches; by chunks, blocks
            # whose callers' float64 temporaries stay small (multilabel
            # predict held 1.2 GB for blocks of 33 rows at K = 10**6 under
            # the default working_memory)
            budget = min(budget, _CPU_SCORE_BLOCK_BYTES)
        step = working_rows(16 * n_classes, budget)
        buckets = None if by_chunks else self._buckets_on(outputs[0].device)
        for start in range(0, n_rows, step):
            block = [o[start : start + step] for o in outputs]
            if not by_chunks:
                yield aggregate(block, buckets, aggregation, self.n_buckets)
                continue
            scores = torch.empty(len(block[0]), n_classes, dtype=block[0].dtype)
            for first, chunk in self._iter_chunks(block, aggregation):
                scores[:, first : first + chunk.shape[1]] = chunk
            yield scores

    def top_k(self, outputs, k, aggregation, n_candidate_buckets=None):
        """The ``k`` best classes for one block of outputs, best first.

        Parameters
        ----------
        outputs : list of R tensors of shape (n_rows, n_buckets)
            Bucket outputs transformed as ``aggregation`` needs
            (:data:`BUCKET_OUTPUT`).
        k : int
        aggregation : {"mean", "unbiased", "logit_sum"}
        n_candidate_buckets : int, default=None
            ``None``: exact.  ``m``: the best among the classes of the ``m``
            best buckets of each repetition (rows with fewer than ``k`` such
            classes are scored exactly).

        Returns
        -------
        indices, values : ndarrays of shape (n_rows, k)
        """
        if n_candidate_buckets is not None and n_candidate_buckets >= self.n_buckets:
            # every class a candidate: the exact top k, over all classes
            return self._dense(outputs, k, aggregation)
        if n_candidate_buckets is None and not self.prunes(outputs[0].device):
            return self._dense(outputs, k, aggregation)
        outputs = [o.cpu().numpy() for o in outputs]
        self.members()  # built once here, not by each thread at once
        # numpy gathers release the GIL: split the rows between torch's
        # threads, each with its share of the caller's working_memory
        n_threads = max(1, torch.get_num_threads())
        budget = decoding_budget() / n_threads
        if n_candidate_buckets is None:

            def decode(outs):
                return certified_top_k(
                    outs,
                    self.members(),
                    self.buckets,
                    k,
                    aggregation,
                    self.n_buckets,
                    dense_top_k=lambda rows: self._dense_rows(
                        outs, rows, k, aggregation, budget
                    ),
                    budget=budget,
                )
        else:

            def decode(outs):
                return self._candidates(
                    outs, k, aggregation, n_candidate_buckets, budget
                )

        parts = [
            p for p in np.array_split(np.arange(len(outputs[0])), n_threads) if len(p)
        ]
        with ThreadPoolExecutor(len(parts)) as pool:
            results = list(pool.map(decode, [[o[p] for o in outputs] for p in parts]))
        return (
            np.concatenate([r[0] for r in results]),
            np.concatenate([r[1] for r in results]),
        )

    def _dense(self, outputs, k, aggregation, budget=None):
        if self._by_chunks(outputs):
            tops = self._iter_chunked_top_k(outputs, k, aggregation, budget)
        else:
            tops = (
                top_k_exact(s, k)
                for s in self.iter_scores(outputs, aggregation, budget)
            )
        # each block written into the result as it comes: a list of blocks
        # and their concatenation held the (n_rows, k) result twice
        n_rows = outputs[0].shape[0]
        indices = np.empty((n_rows, k), dtype=np.int64)
        values = torch.empty((n_rows, k), dtype=outputs[0].dtype).numpy()
        start = 0
        for top_indices, top_values in tops:
            stop = start + len(top_indices)
            indices[start:stop], values[start:stop] = top_indices, top_values
            start = stop
        return indices, values

    def _iter_chunked_top_k(self, outputs, k, aggregation, budget=None):
        """Exact top ``k`` of blocks of rows, ``_CLASS_CHUNK`` classes at a time.

        Each chunk's scores join the best ``k`` so far, kept in class
        order, and the joined row's best ``k`` are selected, not sorted
        (:func:`_merge_chunk`): ties go to the lower class.  Once a block's
        chunks are all in, its ``k`` are sorted, best first.  NaN scores
        rank first, as in :func:`top_k_exact`, and tie with each other.
        """
        n_rows, n_classes = outputs[0].shape[0], self.buckets.shape[1]
        width = min(_CLASS_CHUNK, n_classes)
        # per row: the chunk's sum and one gathered repetition, and the
        # masks and tie counts of its selection; then the best k so far
        # joined to the chunk's (class ids and scores, int64 and float64 at
        # most), the same for their selection, and the block's final sort
        row_bytes = width * (2 * outputs[0].element_size() + 16) + k * 128
        step = working_rows(row_bytes, budget or decoding_budget())
        for start in range(0, n_rows, step):
            block = [o[start : start + step] for o in outputs]
            best = None
            for first, scores in self._iter_chunks(block, aggregation):
                best = _merge_chunk(best, first, scores, k)
            classes, scores = best
            # in class order: a stable sort leaves ties to the lower class
            values, order = scores.sort(dim=1, descending=True, stable=True)
            yield classes.gather(1, order).numpy(), values.numpy()

    def _dense_rows(self, outputs, rows, k, aggregation, budget=None):
        outputs = [torch.from_numpy(o[rows]) for o in outputs]
        return self._dense(outputs, k, aggregation, budget)

    def _candidates(self, outputs, k, aggregation, m, budget):
        """Top ``k`` among the classes of the ``m`` best buckets, a sub-block
        of rows at a time: about ``R * m * K / B`` candidates per row, each
        with its gathered buckets, scores and keys, held within ``budget``."""
        n_rows, n_classes = outputs[0].shape[0], self.buckets.shape[1]
        width = len(outputs) * m * -(-n_classes // self.n_buckets)  # m < B (top_k)
        if width * _CANDIDATE_BYTES > budget:  # one row does not fit
            return self._sliced_candidates(outputs, k, aggregation, m, budget)
        step = working_rows(width * _CANDIDATE_BYTES, budget)
        if step >= n_rows:
            return self._candidate_block(outputs, k, aggregation, m, budget)
        parts = [
            self._candidate_block(
                [o[start : start + step] for o in outputs], k, aggregation, m, budget
            )
            for start in range(0, n_rows, step)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate(
            [p[1] for p in parts]
        )

    def _sliced_candidates(self, outputs, k, aggregation, m, budget):
        """:meth:`_candidates` for rows whose candidates exceed ``budget``:
        one row at a time, a slice of one repetition's ``m`` buckets at a
        time.  A repetition's buckets hold distinct classes, so each slice's
        best ``k`` are distinct, and every class of the row's best ``k`` is
        among the best ``k`` of its slice (no class ranks above it there
        that does not overall): merging the slices' lists gives the same
        classes and scores as one pass."""
        n_rows, n_classes = outputs[0].shape[0], self.buckets.shape[1]
        per_bucket = -(-n_classes // self.n_buckets)
        group = max(1, int(budget // (per_bucket * _CANDIDATE_BYTES)))
        tops = top_buckets(outputs, m)
        members = self.members()
        indices = np.empty((n_rows, k), dtype=np.int64)
        values = np.empty((n_rows, k), dtype=outputs[0].dtype)
        for i in range(n_rows):
            row = [o[i : i + 1] for o in outputs]
            # padding until found: a row whose every slice is empty stays
            # short, and is scored exactly below
            best = np.full((1, k), -1, np.int64), np.full((1, k), -np.inf, values.dtype)
            for top, member in zip(tops, members):
                for first in range(0, m, group):
                    candidates = candidate_classes(
                        [top[i : i + 1, first : first + group]], [member]
                    )
                    if (candidates < 0).all():  # empty buckets only (padding)
                        continue
                    scores = score_candidates(
                        row, self.buckets, candidates, aggregation, self.n_buckets
                    )
                    found = top_k_of_candidates(
                        candidates, scores, min(k, candidates.shape[1]), 1
                    )
                    # merged as found: k entries held, not k per slice (a
                    # class is at most once in each list)
                    best = top_k_of_candidates(
                        np.concatenate([best[0], found[0]], 1),
                        np.concatenate([best[1], found[1]], 1),
                        k,
                        2,
                    )
            indices[i], values[i] = best
        return self._short_rows_exactly(outputs, indices, values, aggregation, budget)

    def _candidate_block(self, outputs, k, aggregation, m, budget):
        tops = top_buckets(outputs, m)
        candidates = candidate_classes(tops, self.members())
        scores = score_candidates(
            outputs, self.buckets, candidates, aggregation, self.n_buckets
        )
        indices, values = top_k_of_candidates(candidates, scores, k, len(outputs))
        return self._short_rows_exactly(outputs, indices, values, aggregation, budget)

    def _short_rows_exactly(self, outputs, indices, values, aggregation, budget):
        """``indices, values`` of candidate top k, with the rows that had
        fewer than ``k`` candidates (padded with -1) scored over all
        classes instead."""
        short = np.flatnonzero(indices[:, -1] < 0)
        if len(short):
            indices[short], values[short] = self._dense_rows(
                outputs, short, indices.shape[1], aggregation, budget
            )
        return indices, values
