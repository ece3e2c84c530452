"""Ranking metrics of extreme classification (input conventions: the
public module's docstring, ``sklearn_mach/metrics/__init__.py``)."""

import re
import reprlib
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._utils import float_or_inf, is_missing

# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_k(k):
    """Return ``k`` as an ``int``, or raise if it is not a positive integer."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


#: Scores of tied rows ``top_k_indices`` resolves at a time.
_TIE_BLOCK = 1 << 20


@validate_params(
    {"scores": ["array-like"], "k": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def top_k_indices(scores, k):
    """Column indices of the ``k`` highest scores of each row, best first.

    Exact for floating and integer scores (other real dtypes are compared
    as float64), and computed with :func:`numpy.argpartition` (no full sort of
    the rows).  Ties are broken in favour of the lower column index, also at the
    boundary of the top ``k``.

    Parameters
    ----------
    scores : array-like of shape (n_samples, n_classes)
        Scores; higher is better.  Must not contain NaN.
    k : int
        Number of columns to return.  Values larger than ``n_classes``
        return every column.

    Returns
    -------
    top : ndarray of shape (n_samples, min(k, n_classes))
        Column indices of the best scores, best first.

    Examples
    --------
    >>> from sklearn_mach.metrics import top_k_indices
    >>> top_k_indices([[0.1, 0.5, 0.5, 0.9]], 2)
    array([[3, 1]])
    """
    k = _check_k(k)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got an array of shape {scores.shape}.")
    if scores.dtype.kind in "USc":  # numpy would read "10" as a number; complex
        raise ValueError(
            f"scores must be real numbers, got an array of dtype {scores.dtype}."
        )
    if scores.dtype == np.bool_:
        scores = scores.astype(np.int8)
    if np.issubdtype(scores.dtype, np.integer):
        neg = ~scores  # -x - 1 (or max - x, unsigned): exact, reverses the order
    elif np.issubdtype(scores.dtype, np.floating):
        neg = -scores
    else:
        try:
            neg = -scores.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"scores must be real numbers, got an array of dtype {scores.dtype}."
            ) from None
    if neg.dtype.kind == "f" and np.isnan(neg).any():
        raise ValueError("scores contains NaN.")
    n_classes = scores.shape[1]
    k = min(k, n_classes)
    if k == 0:
        return np.empty((scores.shape[0], 0), dtype=np.intp)
    if k == n_classes:
        return np.argsort(neg, axis=1, kind="stable")
    part = np.argpartition(neg, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(neg, part, axis=1).max(axis=1)
    # Rows whose k-th best value is tied with an unselected column: the
    # partition picked arbitrary tied columns, choose the lowest ones instead.
    # Blocks of such rows keep the temporaries small: every row of sparse
    # probabilities is ambiguous when k exceeds its non-zero scores.
    ambiguous = np.flatnonzero(np.count_nonzero(neg <= kth[:, None], axis=1) > k)
    step = max(1, _TIE_BLOCK // n_classes)
    for start in range(0, ambiguous.size, step):
        rows = ambiguous[start : start + step]
        sub, threshold = neg[rows], kth[rows, None]
        better, tied = sub < threshold, sub == threshold
        need = k - np.count_nonzero(better, axis=1, keepdims=True)
        chosen = better | (tied & (np.cumsum(tied, axis=1) <= need))
        part[rows] = np.nonzero(chosen)[1].reshape(-1, k)
    part.sort(axis=1)
    order = np.argsort(np.take_along_axis(neg, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _nullable_frame(y_pred):
    """A 2-D pandas frame with nullable (masked) columns as the numpy array
    its columns would make without their masks (numpy's promotion: floats
    where any column is a float), or ``None`` for anything else, which
    ``np.asarray`` takes as it is (it would make such a frame an object
    array).  A missing value is NaN in floats (a NaN score), a
    ``ValueError`` in integers (class indices)."""
    if getattr(y_pred, "ndim", None) != 2 or not hasattr(y_pred, "to_numpy"):
        return None
    dtypes = list(getattr(y_pred, "dtypes", ()))
    if not any(hasattr(d, "numpy_dtype") for d in dtypes):
        return None
    plain = [getattr(d, "numpy_dtype", d) for d in dtypes]
    if not all(isinstance(d, np.dtype) and d.kind in "fiu" for d in plain):
        return None
    dtype = np.result_type(*plain)
    if dtype.kind == "f":
        return y_pred.to_numpy(dtype=dtype, na_value=np.nan)
    if y_pred.isna().to_numpy().any():
        raise ValueError("y_pred holds missing class indices.")
    return y_pred.to_numpy(dtype=dtype)


def _ranked_predictions(y_pred, k):
    """Ranked class indices ``(n_samples, <=k)`` and the score width or None."""
    if sp.issparse(y_pred):
        raise TypeError(
            "y_pred must be a dense array of scores or of ranked class indices; "
            "got a sparse matrix."
        )
    plain = _nullable_frame(y_pred)
    y_pred = np.asarray(y_pred) if plain is None else plain
    if y_pred.ndim != 2:
        raise ValueError(
            "y_pred must be 2-D: scores of shape (n_samples, n_classes) or ranked "
            f"class indices of shape (n_samples, n_ranked); got shape {y_pred.shape}."
        )
    if np.issubdtype(y_pred.dtype, np.integer):
        ranked = _class_indices(y_pred[:, :k], "y_pred")
        if ranked.shape[1] > 1:
            ordered = np.sort(ranked, axis=1)
            repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
            if repeated.size:
                raise ValueError(
                    f"y_pred repeats a class index within row {repeated[0]}; a "
                    "ranking must list distinct classes."
                )
        return ranked, None
    if np.issubdtype(y_pred.dtype, np.floating):
        if y_pred.shape[1] == 0:
            raise ValueError("y_pred is a score matrix with 0 columns.")
        if np.isnan(y_pred).any():
            raise ValueError("y_pred contains NaN scores.")
        return top_k_indices(y_pred, k).astype(np.int64, copy=False), y_pred.shape[1]
    raise TypeError(
        "y_pred must have a floating dtype (scores) or an integer dtype (ranked "
        f"class indices); got dtype {y_pred.dtype}."
    )


#: Class indices must leave room for a width of ``index + 1`` in int64.
_MAX_CLASS_INDEX = 2**63 - 2


def _class_indices(values, name):
    """Integer class indices as int64, checked to lie in ``[0, 2**63 - 1)``."""
    if values.size and (values.min() < 0 or values.max() > _MAX_CLASS_INDEX):
        bad = values.min() if values.min() < 0 else values.max()
        raise ValueError(
            f"{name} contains class index {int(bad)}: class indices lie in "
            f"[0, {_MAX_CLASS_INDEX}]."
        )
    return values.astype(np.int64, copy=False)


def _vector_of_indices(y_true, name):
    """``y_true`` as an array, a 1-D one of integers in an object or pandas
    nullable container as integers; a missing value raises."""
    if getattr(y_true, "ndim", None) == 1 and hasattr(
        getattr(y_true, "dtype", None), "numpy_dtype"
    ):  # pandas' masked dtypes: np.asarray makes their NA a NaN
        if y_true.isna().any():
            raise ValueError(f"{name} holds missing class indices.")
        y_true = y_true.to_numpy(dtype=y_true.dtype.numpy_dtype)
    y = np.asarray(y_true)
    if y.ndim == 1 and y.dtype == object:
        if all(
            isinstance(v, Integral) and not isinstance(v, (bool, np.timedelta64))
            for v in y
        ):
            return _class_indices(y, name)
        if any(_is_missing_scalar(v) for v in y):
            raise ValueError(f"{name} holds missing class indices.")
    return y


def _is_missing_scalar(value):
    """:func:`is_missing` of a value that is no container (an array element
    compares element-wise, which ``is_missing`` takes for pandas' NA)."""
    return not hasattr(value, "__len__") and is_missing(value)


def _label_matrix(y_true, n_classes=None, min_classes=0, name="y_true"):
    """Canonical binary CSR label matrix of ``y_true``.

    ``n_classes`` fixes the width of a 1-D ``y_true``; otherwise its width is
    the larger of ``max(y_true) + 1`` and ``min_classes``.  ``name`` is the
    argument's name in error messages.
    """
    if sp.issparse(y_true):
        if len(y_true.shape) != 2:
            raise ValueError(
                f"{name} must be 2-D when sparse, got shape {y_true.shape}."
            )
        Y = sp.csr_matrix(y_true, copy=True)
        Y.sum_duplicates()
        Y.eliminate_zeros()
        if not np.all(Y.data == 1):
            raise ValueError(f"{name} must be a label-indicator matrix of 0s and 1s.")
        Y.sort_indices()
        return Y
    y = _vector_of_indices(y_true, name)
    if y.ndim == 2:
        try:
            binary = bool(np.isin(y, (0, 1)).all())
        except TypeError:  # values that do not compare, such as pandas' NA
            binary = False
        if not binary:
            raise ValueError(f"{name} must be a label-indicator matrix of 0s and 1s.")
        return sp.csr_matrix(y != 0)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"A 1-D {name} must hold integer class indices; got dtype "
            f"{y.dtype}. Encode labels first (e.g. with LabelEncoder)."
        )
    y = _class_indices(y, name)
    largest = int(y.max()) + 1 if y.size else 0
    if n_classes is None:
        n_classes = max(largest, min_classes)
    elif largest > n_classes:
        raise ValueError(
            f"y_true contains class index {largest - 1}, out of range for "
            f"{n_classes} classes."
        )
    indptr = np.arange(y.size + 1)
    return sp.csr_matrix(
        (np.ones(y.size, dtype=bool), y, indptr), shape=(y.size, n_classes)
    )


def _prepare(y_true, y_pred, k, n_classes=None, source=None):
    """Validate inputs; return the CSR labels, ranked indices and ``k``.

    ``source`` says where ``n_classes`` comes from, for the messages.
    """
    k = _check_k(k)
    expected = source or f"{n_classes} classes are expected"
    ranked, width = _ranked_predictions(y_pred, k)
    if width is not None:
        if n_classes is not None and width != n_classes:
            raise ValueError(f"y_pred has {width} score columns but {expected}.")
        n_classes, expected = width, f"{width} classes are expected"
    min_classes = int(ranked.max()) + 1 if ranked.size else 0
    Y = _label_matrix(y_true, n_classes, min_classes)
    if Y.shape[0] != ranked.shape[0]:
        raise ValueError(
            f"y_true has {Y.shape[0]} samples but y_pred has {ranked.shape[0]}."
        )
    if Y.shape[0] == 0:
        raise ValueError("Found 0 samples; ranking metrics need at least one.")
    if n_classes is not None and Y.shape[1] != n_classes:
        raise ValueError(f"y_true has {Y.shape[1]} label columns but {expected}.")
    if min_classes > Y.shape[1]:
        raise ValueError(
            f"y_pred contains class index {min_classes - 1}, out of range for "
            f"{Y.shape[1]} classes."
        )
    return Y, ranked, k


def _hits(Y, ranked):
    """Boolean ``(n_samples, n_ranked)``: whether each ranked class is true.

    ``Y`` must be a CSR matrix with sorted indices and no explicit zeros.
    """
    n_samples, n_classes = Y.shape
    indices = Y.indices
    if n_samples * n_classes >= 2**62:
        # row * n_classes + column would wrap in int64 (64-bit item ids as
        # class indices): number only the classes that occur, in order
        seen = np.unique(np.concatenate([indices, ranked.ravel()]))
        indices, ranked = np.searchsorted(seen, indices), np.searchsorted(seen, ranked)
        n_classes = len(seen)
    rows = np.repeat(np.arange(n_samples, dtype=np.int64), np.diff(Y.indptr))
    true_keys = rows * n_classes + indices  # sorted: rows, then columns
    if true_keys.size == 0:
        return np.zeros(ranked.shape, dtype=bool)
    query = np.arange(n_samples, dtype=np.int64)[:, None] * n_classes + ranked
    pos = np.minimum(np.searchsorted(true_keys, query), true_keys.size - 1)
    return true_keys[pos] == query


def _discounts(k):
    """DCG position discounts ``1 / log2(l + 2)`` for ``l = 0 .. k-1``."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


def _depth(Y, ranked, k):
    """The ranks a metric at ``k`` can reach: no more than the ranked
    classes or a sample's true labels (``k=10**10`` allocated by ``k``)."""
    n_true = np.diff(Y.indptr)
    return min(k, max(ranked.shape[1], int(n_true.max()) if n_true.size else 0))


def _ideal_dcg(n_true, k):
    """Ideal DCG@k of each sample: ``sum_{l < min(k, n_true)} 1 / log2(l + 2)``."""
    cumulative = np.concatenate([[0.0], np.cumsum(_discounts(k))])
    return cumulative[np.minimum(n_true, k)]


def _safe_ratio(numerator, denominator):
    """Elementwise ``numerator / denominator`` with 0 where the latter is 0."""
    return numerator / np.where(denominator > 0, denominator, 1.0)


# ---------------------------------------------------------------------------
# Plain metrics
# ---------------------------------------------------------------------------


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_pred": ["array-like", "sparse matrix"],
        "k": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def precision_at_k(y_true, y_pred, k=5):
    """Precision at k: the fraction of the ``k`` top-ranked classes that are true.

    For each sample, the number of true labels among its ``k`` best-ranked
    classes divided by ``k``, averaged over samples.  This is the standard
    definition of the extreme classification literature.  Some code,
    including the reference MACH implementation, divides by
    ``min(k, |y|)`` instead, which inflates the score of samples with fewer
    than ``k`` labels: here a sample with a single, correctly top-ranked
    label has a precision at 3 of 1/3, not 1.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes) or (n_samples,)
        Label-indicator matrix, or integer class indices (see
        :mod:`sklearn_mach.metrics`).
    y_pred : array-like of shape (n_samples, n_classes) or (n_samples, n_ranked)
        Floating scores (higher is better) or integer class indices ranked
        best first: the dtype alone decides, so integer scores are read as
        class indices.
    k : int, default=5
        Number of top-ranked classes to evaluate.

    Returns
    -------
    precision : float
        Mean precision at ``k``, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach.metrics import precision_at_k
    >>> y_true = np.array([[1, 0, 0], [0, 1, 1]])
    >>> scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.7, 0.1]])
    >>> precision_at_k(y_true, scores, k=2)
    0.5
    >>> precision_at_k(y_true, np.array([[0, 1], [1, 0]]), k=2)
    0.5
    """
    Y, ranked, k = _prepare(y_true, y_pred, k)
    return float(_hits(Y, ranked).sum() / (k * Y.shape[0]))


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_pred": ["array-like", "sparse matrix"],
        "k": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def recall_at_k(y_true, y_pred, k=5):
    """Recall at k: the fraction of the true labels found in the top ``k``.

    For each sample, the number of true labels among its ``k`` best-ranked
    classes divided by its number of true labels, averaged over all samples.
    Samples without any true label have a recall of 0 and are kept in the
    average (the Extreme Classification Repository's convention, and
    scikit-learn's ``zero_division=0``); remove them beforehand to average
    over labelled samples only.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes) or (n_samples,)
        Label-indicator matrix, or integer class indices.
    y_pred : array-like of shape (n_samples, n_classes) or (n_samples, n_ranked)
        Floating scores (higher is better) or integer class indices ranked
        best first: the dtype alone decides, so integer scores are read as
        class indices.
    k : int, default=5
        Number of top-ranked classes to evaluate.

    Returns
    -------
    recall : float
        Mean recall at ``k``, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach.metrics import recall_at_k
    >>> y_true = np.array([[1, 0, 0], [0, 1, 1]])
    >>> scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.7, 0.1]])
    >>> recall_at_k(y_true, scores, k=1)
    0.75
    """
    Y, ranked, k = _prepare(y_true, y_pred, k)
    n_hits = _hits(Y, ranked).sum(axis=1)
    return float(np.mean(_safe_ratio(n_hits, np.diff(Y.indptr))))


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_pred": ["array-like", "sparse matrix"],
        "k": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def ndcg_at_k(y_true, y_pred, k=5):
    """Normalised discounted cumulative gain at k (binary relevance).

    ``DCG@k = sum_{l < k} y[rank l] / log2(l + 2)`` is divided by the ideal
    ``DCG@k = sum_{l < min(k, |y|)} 1 / log2(l + 2)`` of the sample, and the
    ratio averaged over samples (the definition of Jain et al. and of the
    Extreme Classification Repository).  Samples without any true label
    score 0.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes) or (n_samples,)
        Label-indicator matrix, or integer class indices.
    y_pred : array-like of shape (n_samples, n_classes) or (n_samples, n_ranked)
        Floating scores (higher is better) or integer class indices ranked
        best first: the dtype alone decides, so integer scores are read as
        class indices.
    k : int, default=5
        Number of top-ranked classes to evaluate.

    Returns
    -------
    ndcg : float
        Mean nDCG at ``k``, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach.metrics import ndcg_at_k
    >>> round(ndcg_at_k(np.array([[0, 1, 0]]), np.array([[0.9, 0.5, 0.1]]), k=2), 4)
    0.6309
    """
    Y, ranked, k = _prepare(y_true, y_pred, k)
    depth = _depth(Y, ranked, k)
    dcg = _hits(Y, ranked) @ _discounts(depth)[: ranked.shape[1]]
    return float(np.mean(_safe_ratio(dcg, _ideal_dcg(np.diff(Y.indptr), depth))))


# ---------------------------------------------------------------------------
# Propensity-scored metrics
# ---------------------------------------------------------------------------


@validate_params(
    {
        "Y_train": ["array-like", "sparse matrix"],
        "A": [Interval(Real, 0, None, closed="neither")],
        "B": [Interval(Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def label_propensities(Y_train, A=0.55, B=1.5):
    """Label propensities of Jain, Prabhu and Varma (KDD 2016).

    ``p_l = 1 / (1 + C (N_l + B) ** -A)`` with ``C = (log N - 1) (B + 1) ** A``,
    where ``N`` is the number of training samples and ``N_l`` the number of
    them tagged with label ``l``.  Rare labels get small propensities, hence
    large weights ``1 / p_l`` in :func:`psprecision_at_k` and
    :func:`psndcg_at_k`.  The paper uses ``A, B = 0.5, 0.4`` on Wikipedia
    data, ``0.6, 2.6`` on Amazon data and ``0.55, 1.5`` elsewhere.

    Parameters
    ----------
    Y_train : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Label-indicator matrix of the training set (0s and 1s).
    A : float, default=0.55
        Positive exponent.
    B : float, default=1.5
        Positive offset.

    Returns
    -------
    propensity : ndarray of shape (n_labels,)
        Propensity of each label, in ``(0, 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach.metrics import label_propensities
    >>> Y = np.array([[1, 0], [1, 0], [1, 1], [1, 0]])
    >>> p = label_propensities(Y)
    >>> bool(p[0] > p[1])  # the frequent label is more likely to be tagged
    True
    """
    for name, value in (("A", A), ("B", B)):
        if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if not sp.issparse(Y_train) and np.ndim(Y_train) != 2:
        raise ValueError(
            "Y_train must be a 2-D label-indicator matrix, got shape "
            f"{np.shape(Y_train)}."
        )
    Y = _label_matrix(Y_train, name="Y_train")
    n_samples = Y.shape[0]
    if n_samples < 3:
        raise ValueError(
            f"label_propensities needs at least 3 training samples (log N - 1 must "
            f"be positive); got {n_samples}."
        )
    frequencies = np.bincount(Y.indices, minlength=Y.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):  # checked below
        # an int past float64 (2**1100) is inf: propensities of 0, refused
        a, b = (float_or_inf(v) for v in (A, B))
        C = (np.log(n_samples) - 1.0) * np.power(b + 1.0, a)
        propensity = 1.0 / (1.0 + C * np.power(frequencies + b, -a))
    if not np.all(np.isfinite(propensity) & (propensity > 0)):
        raise ValueError(
            f"A={A!r} and B={B!r} give propensities that are not positive "
            "floating-point numbers (float64 overflows or underflows)."
        )
    return propensity


def _check_propensity(propensity):
    """Validated 1-D float array of strictly positive propensities."""
    try:
        p = np.asarray(propensity)
        if p.dtype.kind in "US":  # numpy would read "10" as a number
            raise ValueError
        p = p.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValueError(
            f"propensity must be 1-D numbers, got {reprlib.repr(propensity)}."
        ) from None
    if p.ndim != 1:
        raise ValueError(f"propensity must be 1-D, got shape {p.shape}.")
    if not np.all(np.isfinite(p) & (p > 0)):
        raise ValueError("propensity must contain finite, strictly positive values.")
    return p


def _best_weights(Y, weights, k):
    """``(n_samples, k)``: each sample's true-label weights, largest first, 0-padded."""
    n_true = np.diff(Y.indptr)
    rows = np.repeat(np.arange(Y.shape[0]), n_true)
    values = weights[Y.indices]
    order = np.lexsort((-values, rows))
    rank = np.arange(rows.size) - Y.indptr[rows]  # rows stay sorted under order
    keep = rank < k
    best = np.zeros((Y.shape[0], k))
    best[rows[keep], rank[keep]] = values[order][keep]
    return best


def _propensity_gains(y_true, y_pred, propensity, k):
    """Labels, ranked gains ``hits / p``, the best achievable gains and the
    ranks they reach (see :func:`_depth`).

    Both scaled by the smallest propensity of a true label: the metrics
    are their ratios, and the gains of true labels, at most 1, cannot
    overflow (``1 / p`` did for ``p`` near 1e-308, and their sums sooner,
    which gave NaN scores).  Classes that are never true gain nothing;
    their weights are cut at 1 (``0 * inf`` would be NaN).
    """
    p = _check_propensity(propensity)
    Y, ranked, k = _prepare(
        y_true,
        y_pred,
        k,
        n_classes=p.size,
        source=f"propensity has {p.size} entries (one per class)",
    )
    scale = p[Y.indices].min() if Y.nnz else 1.0
    with np.errstate(over="ignore"):
        weights = np.minimum(scale / p, 1.0)
    gains = _hits(Y, ranked) * weights[ranked]
    depth = _depth(Y, ranked, k)
    return Y, gains, _best_weights(Y, weights, depth), depth


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_pred": ["array-like", "sparse matrix"],
        "propensity": ["array-like"],
        "k": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def psprecision_at_k(y_true, y_pred, propensity, k=5):
    """Propensity-scored precision at k, normalised by its best value.

    Each hit on label ``l`` in the top ``k`` counts ``1 / p_l``.  As in the
    Extreme Classification Repository, the sum over samples is divided by
    the same sum for the best possible ranking (each sample's true labels
    ordered by decreasing ``1 / p_l``), so that a perfect ranking scores 1::

        PSP@k = sum_i sum_{l in top_k(i)} y_il / p_l
                / sum_i max_{|S| <= k} sum_{l in S} y_il / p_l

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes) or (n_samples,)
        Label-indicator matrix, or integer class indices.
    y_pred : array-like of shape (n_samples, n_classes) or (n_samples, n_ranked)
        Floating scores (higher is better) or integer class indices ranked
        best first: the dtype alone decides, so integer scores are read as
        class indices.
    propensity : array-like of shape (n_classes,)
        Label propensities, e.g. from :func:`label_propensities` on the
        training labels.
    k : int, default=5
        Number of top-ranked classes to evaluate.

    Returns
    -------
    psprecision : float
        Normalised propensity-scored precision at ``k``, in ``[0, 1]``
        (0 when no sample has a true label).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach.metrics import psprecision_at_k
    >>> y_true = np.array([[1, 1, 0]])
    >>> psprecision_at_k(y_true, np.array([[0]]), [0.5, 0.25, 1.0], k=1)
    0.5
    """
    _, gains, best, _ = _propensity_gains(y_true, y_pred, propensity, k)
    return float(_safe_ratio(gains.sum(), best.sum()))


@validate_params(
    {
        "y_true": ["array-like", "sparse matrix"],
        "y_pred": ["array-like", "sparse matrix"],
        "propensity": ["array-like"],
        "k": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def psndcg_at_k(y_true, y_pred, propensity, k=5):
    """Propensity-scored nDCG at k, normalised by its best value.

    The DCG with gains ``y_il / p_l`` of each sample is divided by the
    sample's ideal (unweighted) DCG@k, as in :func:`ndcg_at_k`; as in the
    Extreme Classification Repository, the sum of these over samples is
    then divided by the same sum for the best possible ranking (each
    sample's true labels ordered by decreasing ``1 / p_l``), so that a
    perfect ranking scores 1.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_samples, n_classes) or (n_samples,)
        Label-indicator matrix, or integer class indices.
    y_pred : array-like of shape (n_samples, n_classes) or (n_samples, n_ranked)
        Floating scores (higher is better) or integer class indices ranked
        best first: the dtype alone decides, so integer scores are read as
        class indices.
    propensity : array-like of shape (n_classes,)
        Label propensities, e.g. from :func:`label_propensities` on the
        training labels.
    k : int, default=5
        Number of top-ranked classes to evaluate.

    Returns
    -------
    psndcg : float
        Normalised propensity-scored nDCG at ``k``, in ``[0, 1]`` (0 when no
        sample has a true label).
    """
    Y, gains, best, depth = _propensity_gains(y_true, y_pred, propensity, k)
    discounts = _discounts(depth)
    ideal = _ideal_dcg(np.diff(Y.indptr), depth)
    achieved = _safe_ratio(gains @ discounts[: gains.shape[1]], ideal).sum()
    achievable = _safe_ratio(best @ discounts, ideal).sum()
    return float(_safe_ratio(achieved, achievable))


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------

_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "psprecision": psprecision_at_k,
    "psndcg": psndcg_at_k,
}
_PROPENSITY_METRICS = ("psprecision", "psndcg")


def _class_positions(classes, labels):
    """Index of each label in ``classes`` (-1 where absent), any label type."""
    classes, labels = np.asarray(classes), np.asarray(labels)
    missing = np.full(labels.shape, -1, dtype=np.int64)
    if classes.size == 0:
        return missing
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    try:
        pos = np.minimum(np.searchsorted(ordered, labels), ordered.size - 1)
        found = ordered[pos] == labels
    except TypeError:  # incomparable types (e.g. str labels, int classes)
        return missing
    return np.where(found, order[pos], missing)


def _missing(value):
    """Whether a label is None, a NaN of any type, or pandas' NA (whose
    comparisons raise)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def _kind(labels, every=True):
    """The labels' type for the scorers' checks: "string", "number" or the
    array's kind.  An object array is judged by its values (``every``), or
    by its first (classes, which fit takes of one type)."""
    kind = labels.dtype.kind
    if kind in "US":
        return "string"
    if kind in "biuf":
        return "number"
    if kind == "O" and labels.size:
        values = labels.ravel() if every else labels.ravel()[:1]
        strings = [isinstance(v, (str, bytes)) for v in values]
        if all(strings):
            return "string"
        if not any(strings) and all(isinstance(v, (Real, np.bool_)) for v in values):
            return "number"
        if any(strings):  # strings beside other values
            return "mixed"
    return kind


def _fitted_on_indicator(estimator):
    """Whether ``estimator`` says it was fitted on a label-indicator target
    (a Pipeline's last step, a search's ``best_estimator_``, looked through):
    sklearn-mach's own flag, or a label binarizer's ``y_type_`` (one-vs-rest,
    MLP)."""
    while (inner := _wrapped(estimator)) is not None:
        estimator = inner
    if getattr(estimator, "_multilabel", False) is True:
        return True
    return any(
        getattr(getattr(estimator, name, None), "y_type_", None)
        == "multilabel-indicator"
        for name in ("label_binarizer_", "_label_binarizer")
    )


def _scorer_targets(y, classes, indicator=False):
    """Labels of a scorer call as a ``(n_samples, n_classes)`` indicator.

    A dense one-column ``y`` is a column of labels, as ``fit`` takes it,
    unless the estimator was fitted on an indicator (``indicator``) or has
    one class (a multilabel model of one label).
    """
    if not sp.issparse(y):
        y = np.asarray(y)  # e.g. an indicator given as a list of lists
        column = y.ndim == 2 and y.shape[1] == 1
        if column and classes is not None and len(classes) > 1 and not indicator:
            y = y.ravel()
    if sp.issparse(y) or y.ndim == 2:
        if classes is not None and y.shape[1] != len(classes):
            raise ValueError(
                f"y has {y.shape[1]} label columns but the estimator has "
                f"{len(classes)} classes_."
            )
        return y
    if classes is None:
        raise TypeError(
            "1-D targets can only be scored for an estimator with a classes_ attribute."
        )
    # as scikit-learn's scorers: NaN is no label, and numbers never match
    # strings (labels unknown to the estimator count as misses)
    if (y.dtype.kind == "f" and not np.all(np.isfinite(y))) or (
        y.dtype.kind == "O" and any(map(_missing, y.ravel()))
    ):
        raise ValueError("Input y contains NaN, None or infinity.")
    given, fitted = _kind(y), _kind(np.asarray(classes), every=False)
    if given == "mixed":
        raise ValueError("Mix of label input types in y: strings and other values.")
    if {given, fitted} == {"string", "number"}:
        raise ValueError(
            f"Mix of label input types: y holds {given}s and the estimator's "
            f"classes_ {fitted}s."
        )
    positions = _class_positions(classes, y)
    known = positions >= 0  # unknown labels: empty rows, i.e. misses
    indptr = np.concatenate([[0], np.cumsum(known)])
    return sp.csr_matrix(
        (np.ones(known.sum()), positions[known], indptr),
        shape=(positions.size, len(classes)),
    )


def _top_k_ranker(estimator):
    """The estimator whose ``predict_top_k`` ranks, and the transforms before it.

    A :class:`~sklearn.pipeline.Pipeline` or a fitted search
    (:class:`~sklearn.model_selection.GridSearchCV`, ...) does not expose
    its final estimator's ``predict_top_k``; its ``decision_function``
    would build the full ``(n_samples, n_classes)`` matrix instead.  So
    they are looked through: the pipeline's steps before the last transform
    ``X``, as its ``decision_function`` would, and a search's refitted
    ``best_estimator_`` ranks, as its methods delegate.  Returns
    ``(ranker, transforms)``, the fitted steps whose ``transform`` to apply
    in turn (each step's own, as the pipeline applies them: a sliced
    pipeline would check that its last step is fitted, which a stateless
    one need not be); ``(None, [])`` where no ``predict_top_k`` is found.
    """
    transforms = []
    while not hasattr(estimator, "predict_top_k"):
        inner = _wrapped(estimator)
        if inner is None:
            return None, []
        if isinstance(estimator, Pipeline):
            transforms.extend(
                step
                for _, step in estimator.steps[:-1]
                if step is not None and step != "passthrough"
            )
        estimator = inner
    return estimator, transforms


def _wrapped(estimator):
    """The estimator that ``estimator`` delegates to: a Pipeline's last
    step, a fitted search's ``best_estimator_``; ``None`` for any other."""
    if isinstance(estimator, Pipeline):
        return estimator.steps[-1][1]
    if hasattr(estimator, "cv_results_") and hasattr(estimator, "best_estimator_"):
        return estimator.best_estimator_
    return None


def _scorer_ranking(estimator, X, classes, k):
    """Ranked class indices (integer) or class scores (float) of ``X``."""
    ranker, transforms = _top_k_ranker(estimator)
    if ranker is not None:
        for step in transforms:
            X = step.transform(X)
        labels, _ = ranker.predict_top_k(X, k=k)
        labels = np.asarray(labels)
        if classes is None:
            return labels.astype(np.int64)
        ranked = _class_positions(classes, labels)
        if ranked.size and ranked.min() < 0:
            raise ValueError("predict_top_k returned labels that are not in classes_.")
        return ranked
    for method in ("decision_function", "predict_proba"):
        if hasattr(estimator, method):
            scores = getattr(estimator, method)(X)
            break
    else:
        raise TypeError(
            f"{type(estimator).__name__} has none of predict_top_k, "
            "decision_function or predict_proba: it cannot rank classes."
        )
    if isinstance(scores, list):  # multi-output predict_proba: P(label) columns
        scores = _positive_probabilities(estimator, scores)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:  # binary decision_function: score of classes_[1]
        scores = np.column_stack([-scores, scores])
    if classes is not None and scores.ndim == 2 and scores.shape[1] != len(classes):
        raise ValueError(
            f"{type(estimator).__name__}.{method} returned {scores.shape[1]} "
            f"columns, but the estimator has {len(classes)} classes_: its "
            "scores do not follow its classes (one-vs-one decision_function?)."
        )
    return scores


def _positive_probabilities(estimator, probas):
    """P(label present) per output of a multi-output ``predict_proba``.

    Output ``i``'s columns follow ``estimator.classes_[i]``: the column of
    class 1 (``True``) is the label's probability, and an output whose
    training labels were all 0 (a rare label absent from a
    cross-validation fold) has probability 0.
    """
    per_output = getattr(estimator, "classes_", None)
    if not isinstance(per_output, list) or len(per_output) != len(probas):
        raise TypeError(
            f"{type(estimator).__name__}.predict_proba returned one array per "
            "output, but its classes_ is not the matching list of per-output "
            "classes: the label probabilities cannot be located."
        )
    columns = []
    for i, (proba, classes) in enumerate(zip(probas, per_output)):
        proba, classes = np.asarray(proba), np.asarray(classes)
        if not np.isin(classes, [0, 1]).all():
            raise ValueError(
                f"Output {i} has classes {classes.tolist()}: ranking needs 0/1 "
                "labels per output (a label-indicator matrix)."
            )
        positive = np.flatnonzero(classes == 1)
        columns.append(
            proba[:, positive[0]] if positive.size else np.zeros(proba.shape[0])
        )
    return np.column_stack(columns)


def _single_output_classes(classes):
    """``classes`` where they are one 1-D array of labels, else ``None``
    (a multi-output estimator's list of per-output classes)."""
    if isinstance(classes, (list, tuple)) and any(
        np.ndim(c) > 0 for c in classes
    ):  # per-output arrays, ragged or not (numpy < 1.24 made ragged ones 1-D)
        return None
    try:
        return classes if np.ndim(classes) == 1 else None
    except ValueError:  # a ragged sequence of another kind
        return None


class _AtKScorer:
    """Scoring callable ``scorer(estimator, X, y) -> float`` of an @k metric."""

    def __init__(self, metric, k, propensity=None):
        self.metric = metric
        self.k = k
        self.propensity = propensity

    def __call__(self, estimator, X, y, sample_weight=None):
        if sample_weight is not None:
            # scikit-learn's scorers pass it on (permutation_importance)
            raise TypeError(
                f"{self!r} takes no sample_weight: the @k metrics average "
                "over samples unweighted."
            )
        classes = _single_output_classes(getattr(estimator, "classes_", None))
        n_propensities = None if self.propensity is None else len(self.propensity)
        if classes is not None and n_propensities not in (None, len(classes)):
            raise ValueError(
                f"propensity has {n_propensities} entries but "
                f"{type(estimator).__name__} has {len(classes)} classes_: the "
                "propensities must follow its classes_.  A 1-D target's "
                "training fold that lacks a class fits fewer; keep every class "
                "in each training fold, or score a label-indicator target."
            )
        y_true = _scorer_targets(y, classes, _fitted_on_indicator(estimator))
        y_pred = _scorer_ranking(estimator, X, classes, self.k)
        kwargs = {} if self.propensity is None else {"propensity": self.propensity}
        return _METRICS[self.metric](y_true, y_pred, k=self.k, **kwargs)

    def __repr__(self):
        extra = "" if self.propensity is None else ", propensity=..."
        return f"make_at_k_scorer(metric={self.metric!r}, k={self.k}{extra})"


@validate_params(
    {
        "metric": [StrOptions(set(_METRICS))],
        "k": [Interval(Integral, 1, None, closed="left")],
        "propensity": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def make_at_k_scorer(metric="precision", k=5, *, propensity=None):
    """Make a scoring callable of an @k ranking metric for model selection.

    The returned ``scorer(estimator, X, y)`` can be passed as ``scoring`` to
    :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_val_score`, etc.  It ranks the
    classes of ``X`` with ``estimator.predict_top_k(X, k)`` when available
    (also that of a :class:`~sklearn.pipeline.Pipeline`'s last step, after
    the steps before it, and of a fitted search's ``best_estimator_``),
    else with ``decision_function``, else with ``predict_proba``.  ``y`` is
    either a label-indicator matrix whose columns are the estimator's
    classes (multilabel estimators, ``classes_ == arange(n_labels)``), or a
    1-D array (or one column) of labels, located in
    ``estimator.classes_``;
    labels absent from ``classes_`` count as misses, while NaN labels, and
    numbers against string classes (or strings against numbers), raise a
    ``ValueError``, as scikit-learn's scorers do.

    Parameters
    ----------
    metric : {"precision", "recall", "ndcg", "psprecision", "psndcg"}, \
            default="precision"
        The metric: :func:`precision_at_k`, :func:`recall_at_k`,
        :func:`ndcg_at_k`, :func:`psprecision_at_k` or :func:`psndcg_at_k`.
    k : int, default=5
        Number of top-ranked classes to evaluate.
    propensity : array-like of shape (n_classes,), default=None
        Label propensities, required by (and only by) the propensity-scored
        metrics.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, higher is better.  The @k
        metrics take no sample weights: a ``sample_weight`` passed to it
        (by :func:`~sklearn.inspection.permutation_importance`, say) raises
        a ``TypeError``.

    Examples
    --------
    >>> from sklearn.datasets import make_multilabel_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> from sklearn_mach.metrics import make_at_k_scorer
    >>> X, Y = make_multilabel_classification(n_samples=60, random_state=0)
    >>> scorer = make_at_k_scorer("precision", k=3)
    >>> clf = OneVsRestClassifier(LogisticRegression(solver="liblinear"))
    >>> scores = cross_val_score(clf, X, Y, scoring=scorer, cv=3)
    >>> bool(0 <= scores.min() <= scores.max() <= 1)
    True
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}.")
    k = _check_k(k)
    if metric in _PROPENSITY_METRICS:
        if propensity is None:
            raise ValueError(f"metric {metric!r} requires propensity.")
        propensity = _check_propensity(propensity)
    elif propensity is not None:
        raise ValueError(f"metric {metric!r} takes no propensity.")
    return _AtKScorer(metric, k, propensity)


#: The scorers :func:`get_scorer` knows by name, as ``(metric, k)``.
_NAMED = [
    ("precision", 1),
    ("precision", 3),
    ("precision", 5),
    ("recall", 5),
    ("ndcg", 3),
    ("ndcg", 5),
]


def get_scorer_names():
    """The names :func:`get_scorer` accepts (as in scikit-learn's ``get_scorer_names``).

    Returns
    -------
    names : list of str
        ``"{metric}_at_{k}"`` for the usual metrics and cut-offs; any
        ``"precision_at_<k>"``, ``"recall_at_<k>"`` or ``"ndcg_at_<k>"`` is
        accepted too.

    Examples
    --------
    >>> from sklearn_mach.metrics import get_scorer_names
    >>> get_scorer_names()[:3]
    ['ndcg_at_3', 'ndcg_at_5', 'precision_at_1']
    """
    return sorted(f"{metric}_at_{k}" for metric, k in _NAMED)


@validate_params({"scoring": [str]}, prefer_skip_nested_validation=True)
def get_scorer(scoring):
    """An @k scorer by name, for ``scoring=`` of scikit-learn's model selection.

    scikit-learn looks up strings in its own registry only; pass the object
    this returns (alone, or in a dict for multi-metric evaluation).

    Parameters
    ----------
    scoring : str
        ``"precision_at_<k>"``, ``"recall_at_<k>"`` or ``"ndcg_at_<k>"``
        (see :func:`get_scorer_names`).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, as :func:`make_at_k_scorer`
        makes it.

    Examples
    --------
    >>> from sklearn_mach.metrics import get_scorer
    >>> get_scorer("ndcg_at_5")
    make_at_k_scorer(metric='ndcg', k=5)
    """
    match = re.fullmatch(r"(precision|recall|ndcg)_at_([1-9][0-9]*)", scoring)
    if match is None:
        raise ValueError(
            f"{scoring!r} is not a sklearn-mach scorer name; use one of "
            f"{get_scorer_names()} or another k."
        )
    return make_at_k_scorer(match.group(1), int(match.group(2)))
