"""A generator of extreme classification problems of any size."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from .._utils import float_or_inf


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        # indices are int64: a larger n_features was numpy's "high is out
        # of bounds for int64"
        "n_classes": [Interval(Integral, 2, 2**63 - 1, closed="both")],
        "n_features": [Interval(Integral, 1, 2**63 - 1, closed="both")],
        "n_labels": [Interval(Integral, 1, None, closed="left")],
        "multilabel": ["boolean"],
        "features_per_class": [Interval(Integral, 1, None, closed="left")],
        "informative_per_label": [Interval(Integral, 1, None, closed="left")],
        "noise_features": [Interval(Integral, 0, None, closed="left")],
        "power": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_extreme_classification(
    n_samples=10_000,
    n_classes=10_000,
    n_features=100_000,
    *,
    n_labels=1,
    multilabel=False,
    features_per_class=10,
    informative_per_label=4,
    noise_features=4,
    power=1.0,
    random_state=None,
):
    """Generate a learnable extreme classification problem with sparse features.

    Class frequencies follow a power law (class ``k`` is drawn with
    probability proportional to ``1 / (k + 1) ** power``, so class 0 is the
    most frequent, as in real label spaces).  Each class owns a random
    signature of ``features_per_class`` features; a sample draws
    ``informative_per_label`` features from the signature of each of its
    labels plus ``noise_features`` uniformly random features.  ``X`` holds
    the counts.  Memory is ``O(n_samples + n_classes * features_per_class)``:
    ``n_classes = 10**6`` is fine.

    Parameters
    ----------
    n_samples : int, default=10_000
        Number of samples.
    n_classes : int, default=10_000
        Number of classes ``K``.
    n_features : int, default=100_000
        Number of features.
    n_labels : int, default=1
        Labels per sample when ``multilabel=True``, at most ``n_classes``:
        distinct classes drawn without replacement (each from the power law
        restricted to the classes the sample has not drawn yet; where
        float64 cannot resolve the mass left, in a very steep law, the most
        frequent classes left are taken in order); ignored otherwise.
    multilabel : bool, default=False
        Return a CSR label-indicator matrix instead of a 1-D class vector.
    features_per_class : int, default=10
        Size of each class's feature signature.
    informative_per_label : int, default=4
        Signature features drawn (with replacement) per label of a sample.
    noise_features : int, default=4
        Uniformly random features added to every sample.
    power : float, default=1.0
        Exponent of the power law of class frequencies (0: uniform).
    random_state : int, RandomState instance or None, default=None
        Seed of the generator.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
        Feature counts.
    y : ndarray of shape (n_samples,) or csr_matrix of shape (n_samples, n_classes)
        Class indices, or the 0/1 label indicator if ``multilabel``.

    Examples
    --------
    >>> from sklearn_mach.datasets import make_extreme_classification
    >>> X, y = make_extreme_classification(n_samples=100, n_classes=1000,
    ...                                    n_features=5000, random_state=0)
    >>> X.shape, y.shape
    ((100, 5000), (100,))
    """
    # plain ints: True passes the Integral checks (as 1, as in scikit-learn),
    # but numpy's size arguments refuse it
    n_samples, n_classes, n_features, n_labels = map(
        int, (n_samples, n_classes, n_features, n_labels)
    )
    features_per_class, informative_per_label, noise_features = map(
        int, (features_per_class, informative_per_label, noise_features)
    )
    power = float_or_inf(power)  # an int of 2**1024 or more: as steep as inf
    rng = check_random_state(random_state)
    signatures = rng.randint(n_features, size=(n_classes, features_per_class))
    with np.errstate(over="ignore"):  # a steep law: the tail's weights are 0
        weights = 1.0 / np.arange(1, n_classes + 1, dtype=np.float64) ** power
    cdf = np.cumsum(weights / weights.sum())
    if multilabel and n_labels > n_classes:
        raise ValueError(
            f"n_labels={n_labels} distinct labels per sample need at least as "
            f"many classes, but n_classes={n_classes}."
        )
    labels = _draw_distinct(rng, cdf, n_samples, n_labels if multilabel else 1)

    picks = rng.randint(
        features_per_class, size=(n_samples, labels.shape[1], informative_per_label)
    )
    informative = signatures[labels[:, :, None], picks].reshape(n_samples, -1)
    noise = rng.randint(n_features, size=(n_samples, noise_features))
    columns = np.hstack([informative, noise])
    rows = np.repeat(np.arange(n_samples), columns.shape[1])
    X = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, columns.ravel())),
        shape=(n_samples, n_features),
    )
    X.sum_duplicates()
    if not multilabel:
        return X, labels[:, 0]
    rows = np.repeat(np.arange(n_samples), labels.shape[1])
    Y = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, labels.ravel())),
        shape=(n_samples, n_classes),
    )
    return X, Y


def _draw_distinct(rng, cdf, n_samples, n_draws):
    """``n_draws`` distinct classes per sample, drawn without replacement.

    Draw ``j`` of a sample comes from the distribution ``cdf`` restricted to
    the classes the sample has not drawn yet: a uniform point on the mass
    left, mapped past the intervals of the drawn classes (taken in
    increasing order) to a class.  No rejection, so frequent classes cost
    no extra rounds; ``O(n_samples * n_draws ** 2)``.
    """
    n_classes = len(cdf)
    below = np.concatenate([[0.0], cdf[:-1]])  # mass of the classes before c
    mass = cdf - below
    labels = np.empty((n_samples, n_draws), dtype=np.intp)
    drawn_mass = np.zeros(n_samples)
    for j in range(n_draws):
        point = rng.random_sample(n_samples) * np.maximum(1.0 - drawn_mass, 0.0)
        drawn = np.sort(labels[:, :j], axis=1)
        for c in drawn.T:
            point = np.where(point >= below[c], point + mass[c], point)
        new = np.minimum(np.searchsorted(cdf, point), n_classes - 1)
        # Where the mass left is below float64's resolution (a steep power
        # law) the point runs past the last class, and rounding at an
        # interval's edge can land on a drawn class: take the most probable
        # class not drawn yet, the lowest index missing from the sorted
        # drawn classes (one exists since j < n_classes).
        astray = (point >= cdf[-1]) | (drawn == new[:, None]).any(axis=1)
        if j and astray.any():  # (the first draw, multiclass data: as drawn)
            missing = drawn[astray] != np.arange(j)
            new[astray] = np.where(missing.any(axis=1), missing.argmax(axis=1), j)
        labels[:, j] = new
        drawn_mass += mass[new]
    return labels
