"""Ranking metrics of extreme classification, and scorers for model selection.

All metrics compare a set of true labels per sample with a ranking of the
classes per sample, and return the mean over samples (higher is better).

Input conventions shared by every metric:

``y_true``
    A label-indicator matrix of shape ``(n_samples, n_classes)`` (dense
    array, or any scipy sparse matrix/array such as ``csr_matrix`` or
    ``csr_array``) whose entries are 0 or 1, or a 1-D array of integer class
    indices in ``[0, n_classes)`` (multiclass data: one true label per
    sample).

``y_pred``
    Either a **floating** array of scores of shape ``(n_samples, n_classes)``
    (higher is better; the ``k`` best are taken exactly, ties broken in
    favour of the lower class index), or an **integer** array of shape
    ``(n_samples, n_ranked)`` of class indices ranked best first (for
    instance ``MACHClassifier.predict_top_k`` on a multilabel model, whose
    ``classes_`` are ``arange(n_classes)``).  The dtype alone decides: an
    integer array is always read as ranked indices, a floating one always as
    scores.  When a ranked array has fewer than ``k`` columns, the missing
    positions count as misses.

Samples with no true label score 0 on precision, recall and nDCG (they are
not dropped from the average), as in the Extreme Classification
Repository's tools.  The propensity-scored metrics are a ratio of sums
over the samples (what the ranking achieves over what the best ranking
achieves), to which such samples add nothing, as in napkinXC.
"""

from ._ranking import (
    get_scorer,
    get_scorer_names,
    label_propensities,
    make_at_k_scorer,
    ndcg_at_k,
    precision_at_k,
    psndcg_at_k,
    psprecision_at_k,
    recall_at_k,
    top_k_indices,
)

__all__ = [
    "get_scorer",
    "get_scorer_names",
    "label_propensities",
    "make_at_k_scorer",
    "ndcg_at_k",
    "precision_at_k",
    "psndcg_at_k",
    "psprecision_at_k",
    "recall_at_k",
    "top_k_indices",
]
