"""Decoding: from the R networks' bucket outputs back to scores of the K classes.

Class ``k`` falls in bucket ``h_r(k)`` of repetition ``r``; its score merges
the ``R`` outputs of those buckets.  The gather runs in torch on whatever
device the outputs live on, one block of rows at a time.
"""

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
    if aggregation == "logit_sum":
        return total
    mean = total / len(outputs)
    if aggregation == "unbiased":
        return (mean - 1.0 / n_buckets) * (n_buckets / (n_buckets - 1.0))
    return mean
