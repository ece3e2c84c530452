import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import GaussianNB

from sklearn_mach.metrics import (
    _ranking,
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

from .tracing import traced_peak

# Sample 0: labels {0, 2}, ranking 0 1 2 3 4 -> top 3: hit miss hit.
# Sample 1: labels {1},    ranking 2 3 1 0 4 -> top 3: miss miss hit.
# Sample 2: labels {0, 3, 4}, ranking 3 0 4 1 2 -> top 3: hit hit hit.
Y = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 1, 1]])
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.1, 0.0],
        [0.1, 0.2, 0.9, 0.3, 0.0],
        [0.5, 0.0, 0.0, 0.9, 0.1],
    ]
)
RANKED = np.array([[0, 1, 2, 3, 4], [2, 3, 1, 0, 4], [3, 0, 4, 1, 2]])
PROPENSITY = np.array([0.5, 0.25, 1.0, 0.8, 0.4])  # weights 2, 4, 1, 1.25, 2.5
D1, D2 = 1.0, 1.0 / math.log2(3)  # discounts of ranks 1, 2 (rank 3: 0.5)

EXPECTED = {
    (precision_at_k, 1): (1 + 0 + 1) / 3,
    (precision_at_k, 3): (2 / 3 + 1 / 3 + 3 / 3) / 3,
    (precision_at_k, 5): (2 / 5 + 1 / 5 + 3 / 5) / 3,
    (recall_at_k, 1): (1 / 2 + 0 + 1 / 3) / 3,
    (recall_at_k, 3): 1.0,
    (ndcg_at_k, 1): (1 + 0 + 1) / 3,
    (ndcg_at_k, 3): ((D1 + 0.5) / (D1 + D2) + 0.5 / D1 + 1.0) / 3,
}
PS_EXPECTED = {
    (psprecision_at_k, 1): (2 + 0 + 1.25) / (2 + 4 + 2.5),
    (psprecision_at_k, 3): 1.0,  # every true label is in the top 3
    (psndcg_at_k, 3): (
        (2 * D1 + 1 * 0.5) / (D1 + D2)
        + (4 * 0.5) / D1
        + (1.25 * D1 + 2 * D2 + 2.5 * 0.5) / (D1 + D2 + 0.5)
    )
    / (
        (2 * D1 + 1 * D2) / (D1 + D2)
        + (4 * D1) / D1
        + (2.5 * D1 + 2 * D2 + 1.25 * 0.5) / (D1 + D2 + 0.5)
    ),
}

SPARSE_FORMATS = [sp.csr_matrix, sp.csr_array, sp.csc_matrix]


@pytest.mark.parametrize("metric, k", list(EXPECTED))
def test_hand_computed_values(metric, k):
    assert metric(Y, SCORES, k=k) == pytest.approx(EXPECTED[metric, k])


@pytest.mark.parametrize("metric, k", list(PS_EXPECTED))
def test_propensity_scored_hand_computed_values(metric, k):
    value = metric(Y, SCORES, PROPENSITY, k=k)
    assert value == pytest.approx(PS_EXPECTED[metric, k])


@pytest.mark.parametrize("metric, k", list(EXPECTED) + list(PS_EXPECTED))
@pytest.mark.parametrize("sparse_format", SPARSE_FORMATS)
def test_scores_ranked_dense_and_sparse_agree(metric, k, sparse_format):
    args = (PROPENSITY,) if metric in (psprecision_at_k, psndcg_at_k) else ()
    reference = metric(Y, SCORES, *args, k=k)
    assert metric(Y, RANKED, *args, k=k) == pytest.approx(reference)
    assert metric(Y, RANKED[:, :k], *args, k=k) == pytest.approx(reference)
    assert metric(sparse_format(Y), SCORES, *args, k=k) == pytest.approx(reference)
    assert metric(sparse_format(Y), RANKED, *args, k=k) == pytest.approx(reference)


def test_perfect_ranking_scores_one():
    for metric in (ndcg_at_k, recall_at_k):
        assert metric(Y, Y + 0.5 * SCORES, k=3) == pytest.approx(1.0)
    for metric in (psprecision_at_k, psndcg_at_k):
        assert metric(Y, Y / PROPENSITY, PROPENSITY, k=2) == pytest.approx(1.0)


def test_precision_divides_by_k_not_by_label_count():
    # The reference MACH implementation divides by min(|y|, k): P@3 would be 1.
    y_true = np.array([[1, 0, 0, 0]])
    assert precision_at_k(
        y_true, np.array([[0.9, 0.3, 0.2, 0.1]]), k=3
    ) == pytest.approx(1 / 3)
    assert precision_at_k(y_true, np.array([[0]]), k=3) == pytest.approx(1 / 3)


def test_short_rankings_count_missing_positions_as_misses():
    assert precision_at_k(Y, RANKED[:, :1], k=3) == pytest.approx(2 / 9)
    assert recall_at_k(Y, RANKED[:, :1], k=3) == pytest.approx(EXPECTED[recall_at_k, 1])
    assert ndcg_at_k(Y, RANKED[:, :1], k=3) == pytest.approx(
        (1 / (D1 + D2) + 0 + 1 / (D1 + D2 + 0.5)) / 3
    )
    assert precision_at_k(Y, np.empty((3, 0), dtype=int), k=2) == 0.0


def test_k_larger_than_n_classes():
    assert precision_at_k(Y, SCORES, k=10) == pytest.approx(6 / 30)
    assert recall_at_k(Y, SCORES, k=10) == pytest.approx(1.0)
    # Every true label already lies in the top 3.
    assert ndcg_at_k(Y, SCORES, k=10) == pytest.approx(EXPECTED[ndcg_at_k, 3])


def test_samples_without_labels_score_zero():
    y_true = np.vstack([Y, np.zeros((1, 5), dtype=int)])
    scores = np.vstack([SCORES, np.arange(5.0)])
    for metric in (precision_at_k, recall_at_k, ndcg_at_k):
        assert metric(y_true, scores, k=3) == pytest.approx(
            3 / 4 * metric(Y, SCORES, k=3)
        )
    # Propensity-scored metrics are ratios of sums: unlabelled samples add 0.
    for metric in (psprecision_at_k, psndcg_at_k):
        assert metric(y_true, scores, PROPENSITY, k=1) == pytest.approx(
            metric(Y, SCORES, PROPENSITY, k=1)
        )
        assert metric(np.zeros((2, 5)), SCORES[:2], PROPENSITY, k=1) == 0.0


def test_multiclass_class_indices():
    y = np.array([2, 3, 0])
    onehot = np.eye(5, dtype=int)[y]
    for metric in (precision_at_k, recall_at_k, ndcg_at_k):
        for k in (1, 2, 3):
            assert metric(y, SCORES, k=k) == pytest.approx(metric(onehot, SCORES, k=k))
            assert metric(y, RANKED, k=k) == pytest.approx(metric(onehot, SCORES, k=k))
    assert precision_at_k(y, SCORES, k=1) == 0.0
    assert precision_at_k(y, SCORES, k=2) == pytest.approx(2 / 6)
    assert psprecision_at_k(y, RANKED, PROPENSITY, k=2) == pytest.approx(
        psprecision_at_k(onehot, SCORES, PROPENSITY, k=2)
    )


def test_top_k_indices_are_sorted_and_exact():
    scores = np.array([[0.1, 0.5, 0.3, 0.9]])
    np.testing.assert_array_equal(top_k_indices(scores, 3), [[3, 1, 2]])
    np.testing.assert_array_equal(top_k_indices(scores, 10), [[3, 1, 2, 0]])


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.uint64, bool])
def test_top_k_indices_integer_scores_are_exact(dtype):
    # integers beyond 2**53 (and the extremes of each type) used to be
    # ranked through float64, which merges neighbours
    info = np.iinfo(dtype) if dtype is not bool else None
    if info is None:
        scores = np.array([[False, True, True, False]])
    elif info.bits == 64:
        big = info.max - 1 if info.min == 0 else 2**53
        scores = np.array([[info.min, big, big + 1, info.max - 3]], dtype=dtype)
    else:
        scores = np.array([[info.min, info.max - 1, info.max, 0]], dtype=dtype)
    expected = np.argsort(-scores.astype(object), axis=1, kind="stable")
    for k in (1, 2, 4):
        np.testing.assert_array_equal(top_k_indices(scores, k), expected[:, :k])


def test_top_k_indices_break_ties_by_lower_index():
    np.testing.assert_array_equal(top_k_indices([[1.0, 1.0, 1.0, 1.0]], 2), [[0, 1]])
    np.testing.assert_array_equal(
        top_k_indices([[0.0, 2.0, 2.0, 2.0, 1.0]], 2), [[1, 2]]
    )
    rng = np.random.RandomState(0)
    scores = rng.randint(0, 4, size=(200, 30)).astype(np.float32)  # many ties
    for k in (1, 3, 7, 29, 30):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k_indices(scores, k), expected)


def test_top_k_indices_resolves_tied_rows_in_blocks(monkeypatch):
    # rows tied at the k-th score (sparse probabilities, k beyond a row's
    # non-zero scores) were resolved all at once: 2.6 times the memory of
    # untied rows, an int64 cumulative sum of every score among it
    def peak(scores):
        return traced_peak(lambda: top_k_indices(scores, 50))[1]

    rng = np.random.default_rng(0)
    untied = rng.random((400, 20000), dtype=np.float32)
    tied = np.where(untied < 0.999, np.float32(0), untied)
    assert peak(tied) < 1.3 * peak(untied)

    monkeypatch.setattr(_ranking, "_TIE_BLOCK", 64)  # blocks of 2 rows of 30
    scores = rng.integers(0, 3, size=(101, 30)).astype(np.float64)
    for k in (1, 4, 29):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k_indices(scores, k), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, object])
def test_top_k_indices_rejects_nan(dtype):
    # the docstring said NaN was not allowed, but it was ranked silently
    scores = np.array([[0.1, np.nan, 0.5, 0.9]]).astype(dtype)
    with pytest.raises(ValueError, match="scores contains NaN"):
        top_k_indices(scores, 2)


def test_non_numbers_are_named():
    # numpy's "could not convert string to float: 'a'"
    # strings reading as numbers too, as scikit-learn's numeric checks
    for strings in (["a", "b"], ["1", "10"]):
        with pytest.raises(ValueError, match="must be real numbers, got an array"):
            top_k_indices([strings], 1)
    # complex scores lost their imaginary part with a ComplexWarning only
    with pytest.raises(ValueError, match="scores must be real numbers.*complex128"):
        top_k_indices([[1 + 5j, 2 + 0j]], 1)
        with pytest.raises(ValueError, match="propensity must be 1-D numbers"):
            psprecision_at_k(np.eye(2, dtype=int), np.eye(2), strings, k=1)


def test_label_propensities_formula():
    Y_train = np.zeros((10, 3), dtype=int)
    Y_train[:, 0] = 1  # N_0 = 10
    Y_train[4, 1] = 1  # N_1 = 1, N_2 = 0
    A, B = 0.6, 2.6
    C = (math.log(10) - 1) * (B + 1) ** A
    expected = [1 / (1 + C * (n + B) ** -A) for n in (10, 1, 0)]
    np.testing.assert_allclose(label_propensities(Y_train, A=A, B=B), expected)
    np.testing.assert_allclose(
        label_propensities(sp.csr_array(Y_train), A=A, B=B), expected
    )
    p = label_propensities(Y_train)
    assert np.all((p > 0) & (p < 1)) and p[0] > p[1] > p[2]
    with pytest.raises(ValueError, match="Y_train must be a label-indicator"):
        label_propensities(Y_train * 2)
    # (B + 1) ** A in Python floats: OverflowError
    for A, B in [(1e300, 1.5), (400.0, 1e300), (2**1100, 1.5)]:
        with pytest.raises(ValueError, match="give propensities that are not"):
            label_propensities(Y_train, A=A, B=B)
    # finite floats up to float64's largest are used as they are (they were
    # taken as inf from 2**1023 up)
    A, B = 0.55, 9.0e307
    C = (math.log(10) - 1) * (B + 1) ** A
    expected = [1 / (1 + C * (n + B) ** -A) for n in (10, 1, 0)]
    np.testing.assert_allclose(label_propensities(Y_train, A=A, B=B), expected)


@pytest.mark.parametrize(
    "y_true, y_pred, k, error, match",
    [
        (Y, SCORES, 0, ValueError, "The 'k' parameter"),
        (Y, SCORES, 1.5, ValueError, "The 'k' parameter"),
        (Y, SCORES, True, ValueError, "k must be a positive integer"),
        (Y, SCORES[:2], 1, ValueError, "3 samples but y_pred has 2"),
        (Y, SCORES[:, :4], 1, ValueError, "5 label columns but 4"),
        (Y, -RANKED, 1, ValueError, r"y_pred contains class index -\d: .* lie in"),
        (Y, RANKED + 1, 5, ValueError, "class index 5, out of range for 5"),
        (
            Y,
            np.array([[0, 0], [1, 2], [3, 4]]),
            2,
            ValueError,
            "repeats a class index within row 0",
        ),
        (Y, SCORES > 0.5, 1, TypeError, "floating dtype"),
        (Y, SCORES[0], 1, ValueError, "y_pred must be 2-D"),
        (Y, sp.csr_matrix(SCORES), 1, TypeError, "sparse"),
        (Y, np.where(SCORES > 0.5, np.nan, SCORES), 1, ValueError, "NaN"),
        (2 * Y, SCORES, 1, ValueError, "0s and 1s"),
        (sp.csr_matrix(2 * Y), SCORES, 1, ValueError, "0s and 1s"),
        (np.array([0, 1, 5]), SCORES, 1, ValueError, "class index 5, out of range"),
        (np.array([0, -1, 2]), RANKED, 1, ValueError, "y_true contains class index -1"),
        (np.array([0.0, 1.0, 2.0]), SCORES, 1, TypeError, "integer class indices"),
        (Y[:0], SCORES[:0], 1, ValueError, "0 samples"),
    ],
    ids=lambda case: case if isinstance(case, str) else None,
)
def test_input_validation(y_true, y_pred, k, error, match):
    with pytest.raises(error, match=match):
        precision_at_k(y_true, y_pred, k=k)


def test_nullable_frames_of_scores_and_rankings():
    # a frame of nullable columns became an object array: "y_pred must have
    # a floating dtype (scores) or an integer dtype", though its columns are
    # floats or integers
    pd = pytest.importorskip("pandas")
    Y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    scores = pd.DataFrame([[0.9, 0.5, 0.1], [0.2, 0.7, 0.1], [0.3, 0.2, 0.1]])
    ranked = pd.DataFrame([[0, 1], [1, 0], [2, 0]])
    for metric in (precision_at_k, recall_at_k, ndcg_at_k):
        for frame, dtypes in ((scores, ("Float64", "Float32")), (ranked, ("Int64",))):
            expected = metric(Y, frame.to_numpy(), k=2)
            for dtype in dtypes:
                assert metric(Y, frame.astype(dtype), k=2) == expected
    # the dtype still decides: integer columns are class indices
    assert precision_at_k(Y, ranked.astype("UInt8"), k=1) == 1.0  # as scores: 0
    with pytest.raises(ValueError, match="y_pred contains NaN scores"):
        precision_at_k(Y, scores.astype("Float64").where(scores > 0.15), k=2)
    with pytest.raises(ValueError, match="y_pred holds missing class indices"):
        precision_at_k(Y, ranked.astype("Int64").where(ranked > 0), k=2)
    # as the same columns without masks: numpy's promotion, numpy's checks
    mixed = pd.DataFrame(
        {
            0: pd.array([0.9, 0.2, 0.3], dtype="Float64"),
            1: pd.array([1, 2, 0], dtype="Int64"),
            2: [0.1, 0.1, 0.1],
        }
    )
    assert precision_at_k(Y, mixed, k=2) == precision_at_k(
        Y, mixed.astype("float64").to_numpy(), k=2
    )
    assert precision_at_k(Y, ranked.astype({0: "Int64"}), k=2) == precision_at_k(
        Y, ranked.to_numpy(), k=2
    )
    huge = ranked.astype("UInt64")
    huge.iloc[0, 0] = 2**63 + 5
    with pytest.raises(ValueError, match="class index 9223372036854775813"):
        precision_at_k(Y, huge, k=2)
    with pytest.raises(ValueError, match="y_pred must be 2-D"):
        precision_at_k(Y, scores[0].astype("Float64"), k=1)


def test_missing_labels_of_nullable_frames_are_named():
    # pandas' NA made np.isin raise "boolean value of NA is ambiguous"
    pd = pytest.importorskip("pandas")
    Y = pd.DataFrame([[1, 0, 0], [0, 1, None], [0, 0, 1]], dtype="Int64")
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    with pytest.raises(ValueError, match="y_true must be a label-indicator"):
        precision_at_k(Y, scores, k=1)
    with pytest.raises(ValueError, match="Y_train must be a label-indicator"):
        label_propensities(Y)
    assert precision_at_k(Y.fillna(0), scores, k=1) == 1.0


def test_one_dimensional_indices_in_object_and_nullable_containers():
    # integers in an object array were refused ("got dtype object") where a
    # 2-D object indicator was read, and a nullable Series' missing value was
    # blamed on its dtype ("got dtype float64")
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.2, 0.3], [0.1, 0.2, 0.7]])
    labels = [1, 0, 1]
    expected = precision_at_k(np.array(labels), scores, k=1)
    assert expected == pytest.approx(2 / 3)
    for y in (
        np.array(labels, dtype=object),
        pd.Series(labels, dtype=object),
        pd.Series(labels, dtype="Int64"),
        pd.Series(labels, dtype="UInt8"),
    ):
        assert precision_at_k(y, scores, k=1) == expected
        assert recall_at_k(y, scores, k=2) == recall_at_k(labels, scores, k=2)
    not_a_time = np.empty(3, dtype=object)
    not_a_time[:] = [1, np.timedelta64("NaT"), 0]  # numpy calls it Integral
    for y in (
        not_a_time,
        pd.Series([1, None, 0], dtype="Int64"),
        np.array([1, None, 0], dtype=object),
        np.array([1, np.nan, 0], dtype=object),
        pd.Series([1, pd.NA, 0], dtype=object),
    ):
        with pytest.raises(ValueError, match="y_true holds missing class indices"):
            precision_at_k(y, scores, k=1)
    for y in ([1, True, 0], [1, 0.0, 0], ["1", "0", "1"]):
        with pytest.raises(TypeError, match="must hold integer class indices"):
            precision_at_k(np.array(y, dtype=object), scores, k=1)
    lists = pd.Series([np.array([1, 2]), np.array([0]), np.array([2])])  # parquet
    ragged = np.empty(3, dtype=object)
    ragged[:] = [[[1], [1, 2]], [0], [2]]
    for y in (lists, ragged):
        with pytest.raises(TypeError, match="must hold integer class indices"):
            precision_at_k(y, scores, k=1)
    with pytest.raises(ValueError, match="class index -1"):
        precision_at_k(np.array([1, -1, 0], dtype=object), scores, k=1)


def test_class_indices_of_64_bits():
    # row * n_classes + column wrapped in int64 (item ids as class indices):
    # 0.4 for a perfect ranking
    ids = np.array([2**62, 1, 2, 3, 4])
    assert precision_at_k(ids, ids[:, None], k=1) == 1.0
    assert ndcg_at_k(ids, ids[:, None], k=1) == 1.0
    Y = sp.csr_matrix((np.ones(5), (np.arange(5), ids)), shape=(5, 2**62 + 1))
    ranked = np.c_[ids, (ids + 1) % 2**62]
    assert precision_at_k(Y, ranked, k=2) == 0.5
    assert precision_at_k(Y, ranked[:, ::-1], k=1) == 0.0
    # an index whose width, index + 1, int64 cannot hold: scipy's
    # OverflowError, or (uint64 past 2**63) "negative class indices"
    for y_true, y_pred, name, bad in [
        (np.array([0, 1]), np.array([[2**63 - 1], [1]]), "y_pred", 2**63 - 1),
        (
            np.array([2**64 - 1, 1], np.uint64),
            np.array([[3], [1]]),
            "y_true",
            2**64 - 1,
        ),
        (
            np.array([0, 1]),
            np.array([[2**64 - 1], [1]], np.uint64),
            "y_pred",
            2**64 - 1,
        ),
    ]:
        for metric in (precision_at_k, recall_at_k):
            with pytest.raises(ValueError, match=f"{name} contains class index {bad}:"):
                metric(y_true, y_pred, k=1)


def test_metrics_at_a_huge_k_allocate_by_the_labels():
    # ndcg and the propensity metrics allocated arrays of k entries per
    # sample: a MemoryError at k=10**10
    Y3 = np.eye(3)
    assert ndcg_at_k(Y3, Y3, k=10**10) == recall_at_k(Y3, Y3, k=10**10) == 1.0
    assert precision_at_k(Y3, Y3, k=10**10) == pytest.approx(1e-10)
    for metric in (psprecision_at_k, psndcg_at_k):
        assert metric(Y3, Y3, np.ones(3) / 2, k=10**10) == 1.0


def test_propensity_validation():
    with pytest.raises(ValueError, match="4 score columns but propensity has 5 en"):
        psprecision_at_k(Y[:, :4], SCORES[:, :4], PROPENSITY, k=1)
    with pytest.raises(ValueError, match="4 label columns but propensity has 5 en"):
        psprecision_at_k(Y[:, :4], np.argsort(-SCORES)[:, :2], PROPENSITY, k=1)
    # finite and positive, but 1 / p, the gain, or the sum of gains
    # overflowed: NaN scores.  The scores do not depend on the scale.
    for metric in (psprecision_at_k, psndcg_at_k):
        expected = metric(Y, SCORES, PROPENSITY, k=2)
        for scale in (1e-300, 1e-307, 1e300):
            assert metric(Y, SCORES, PROPENSITY * scale, k=2) == pytest.approx(
                expected, rel=1e-12
            )
        assert metric(np.ones((1, 2)), [[0, 1]], [1e-308, 1e-308], k=2) == 1.0
        # scaled by the true labels' propensities, not by an unused class's
        assert metric([[0, 1, 1]], [[0, 1, 0.5]], [1e-300, 1e30, 1e30], k=1) == 1.0
        assert metric([[0, 1, 1]], [[0, 0.5, 1]], [1e-300, 3e20, 7e20], k=1) == (
            pytest.approx(metric([[0, 1, 1]], [[0, 0.5, 1]], [1, 3, 7], k=1))
        )
    with pytest.raises(ValueError, match="strictly positive"):
        psndcg_at_k(Y, SCORES, np.zeros(5), k=1)
    with pytest.raises(ValueError, match="at least 3 training samples"):
        label_propensities(Y[:2])
    for name in ("A", "B"):  # B=0 passed the constraint, then a plain error
        with pytest.raises(ValueError, match=f"The .{name}. parameter"):
            label_propensities(Y, **{name: 0})
    with pytest.raises(ValueError, match="2-D label-indicator"):
        label_propensities(np.array([0, 1, 2]))


def test_make_at_k_scorer_validation():
    with pytest.raises(ValueError, match="The .metric. parameter"):
        make_at_k_scorer("accuracy")
    with pytest.raises(ValueError, match="requires propensity"):
        make_at_k_scorer("psprecision")
    with pytest.raises(ValueError, match="takes no propensity"):
        make_at_k_scorer("precision", propensity=PROPENSITY)
    with pytest.raises(ValueError, match="The .k. parameter"):
        make_at_k_scorer("ndcg", k=0)
    assert set(get_scorer_names()) >= {
        "precision_at_1",
        "precision_at_3",
        "precision_at_5",
        "recall_at_5",
        "ndcg_at_5",
    }
    assert repr(get_scorer("ndcg_at_5")) == "make_at_k_scorer(metric='ndcg', k=5)"
    # permutation_importance passes sample_weight to its scorer: Python's
    # "unexpected keyword argument" named a private class
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression

    X, y = np.random.RandomState(0).rand(30, 3), np.arange(30) % 3
    model = LogisticRegression().fit(X, y)
    scorer = get_scorer("precision_at_1")
    match = r"make_at_k_scorer\(metric='precision', k=1\) takes no sample_weight"
    with pytest.raises(TypeError, match=match):
        permutation_importance(model, X, y, scoring=scorer, sample_weight=np.ones(30))
    assert permutation_importance(
        model, X, y, scoring=scorer, n_repeats=2
    ).importances.shape == (3, 2)
    assert repr(get_scorer("recall_at_20")) == "make_at_k_scorer(metric='recall', k=20)"
    for bad in ("accuracy", "precision_at_0", "precision@5"):
        with pytest.raises(ValueError, match="not a sklearn-mach scorer name"):
            get_scorer(bad)


def test_scorer_multilabel_decision_function_in_grid_search():
    X, Y_ml = make_multilabel_classification(
        n_samples=80, n_features=10, n_classes=6, random_state=0
    )
    search = GridSearchCV(
        OneVsRestClassifier(LogisticRegression(solver="liblinear")),
        {"estimator__C": [0.01, 1.0]},
        scoring={name: get_scorer(name) for name in ("precision_at_3", "ndcg_at_5")},
        refit="precision_at_3",
        cv=2,
    ).fit(X, Y_ml)
    results = search.cv_results_["mean_test_precision_at_3"]
    assert np.all((results > 0) & (results <= 1))
    best = search.best_estimator_
    scores = best.decision_function(X)
    assert get_scorer("precision_at_3")(best, X, Y_ml) == pytest.approx(
        precision_at_k(Y_ml, scores, 3)
    )
    assert get_scorer("ndcg_at_5")(best, X, sp.csr_array(Y_ml)) == pytest.approx(
        ndcg_at_k(Y_ml, scores, 5)
    )
    p = label_propensities(Y_ml)
    scorer = make_at_k_scorer("psprecision", k=3, propensity=p)
    assert scorer(best, X, Y_ml) == pytest.approx(
        psprecision_at_k(Y_ml, scores, p, k=3)
    )


def test_propensity_scorer_names_classes_a_fold_lacks(string_multiclass):
    # the error spoke of "label columns" for a 1-D target
    X, y = string_multiclass
    p = label_propensities(np.eye(4, dtype=int)[np.unique(y, return_inverse=True)[1]])
    scorer = make_at_k_scorer("psprecision", k=2, propensity=p)
    without_yak = y != "yak"
    clf = LogisticRegression().fit(X[without_yak], y[without_yak])
    with pytest.raises(ValueError, match="propensity has 4 entries but Logistic"):
        scorer(clf, X, y)
    full = LogisticRegression().fit(X, y)
    assert scorer(full, X, y) == pytest.approx(
        psprecision_at_k(
            np.unique(y, return_inverse=True)[1], full.decision_function(X), p, k=2
        )
    )


def test_scorer_indicator_as_list_of_lists():
    X, Y_ml = make_multilabel_classification(
        n_samples=60, n_features=10, n_classes=5, random_state=0
    )
    clf = OneVsRestClassifier(LogisticRegression(solver="liblinear")).fit(X, Y_ml)
    scorer = get_scorer("precision_at_3")
    assert scorer(clf, X, Y_ml.tolist()) == scorer(clf, X, Y_ml)


def test_scorer_takes_a_column_of_labels_as_labels(string_multiclass):
    # fit flattens an (n, 1) target (df[["label"]]), but the scorers took it
    # for an indicator of one label: every GridSearchCV score was NaN
    X, y = string_multiclass
    clf = LogisticRegression().fit(X, y)
    scorer = get_scorer("precision_at_1")
    column = pd.DataFrame({"label": y})
    assert scorer(clf, X, column) == scorer(clf, X, y) == clf.score(X, y)
    search = GridSearchCV(
        LogisticRegression(), {"C": [0.1, 1.0]}, scoring=scorer, cv=3
    ).fit(X, column.to_numpy())
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # but a multilabel model's truncated indicator is refused, as before
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sklearn_mach import MACHClassifier

    Y = np.column_stack([y == c for c in np.unique(y)[:3]]).astype(int)
    for model in (
        OneVsRestClassifier(LogisticRegression()).fit(X, Y),
        MACHClassifier(n_buckets=4, n_repetitions=2, max_epochs=1).fit(X, Y),
    ):
        for wrapped in (model, make_pipeline(FunctionTransformer(), model)):
            with pytest.raises(ValueError, match="y has 1 label columns"):
                scorer(wrapped, X, Y[:, :1])


def test_scorer_multi_output_predict_proba():
    # scikit-learn's multi-output classifiers return one predict_proba array
    # per label, its columns in classes_[i] order; a label that training
    # never saw on (or never off) has a single column.
    from sklearn.ensemble import RandomForestClassifier

    X, Y_ml = make_multilabel_classification(
        n_samples=80, n_features=10, n_classes=4, random_state=0
    )
    Y_train = Y_ml.copy()
    Y_train[:, 1] = 0  # never on: classes_[1] == [0]
    Y_train[:, 2] = 1  # always on: classes_[2] == [1]
    clf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y_train)
    assert [c.tolist() for c in clf.classes_] == [[0, 1], [0], [1], [0, 1]]
    probas = clf.predict_proba(X)
    p_on = np.column_stack(
        [probas[0][:, 1], np.zeros(len(X)), np.ones(len(X)), probas[3][:, 1]]
    )
    for name, metric in (("precision_at_2", precision_at_k), ("ndcg_at_3", ndcg_at_k)):
        k = int(name[-1])
        assert get_scorer(name)(clf, X, Y_ml) == pytest.approx(metric(Y_ml, p_on, k))


@pytest.fixture(scope="module")
def string_multiclass():
    X, y = make_classification(
        n_samples=120, n_features=8, n_informative=5, n_classes=4, random_state=0
    )
    return X, np.array(["cat", "dog", "emu", "yak"])[y]


def test_scorer_multiclass_string_labels(string_multiclass):
    X, y = string_multiclass
    search = GridSearchCV(
        LogisticRegression(solver="newton-cholesky"),
        {"C": [0.1, 1.0]},
        scoring=get_scorer("precision_at_1"),
        cv=3,
    ).fit(X, y)
    clf = search.best_estimator_
    # For one label per sample, precision@1 is the accuracy.
    assert get_scorer("precision_at_1")(clf, X, y) == pytest.approx(clf.score(X, y))
    # A label unseen in training is a miss.
    y_unseen = y.copy()
    y_unseen[:10] = "zebra"
    expected = np.mean(clf.predict(X)[10:] == y[10:]) * (len(y) - 10) / len(y)
    assert get_scorer("precision_at_1")(clf, X, y_unseen) == pytest.approx(expected)
    # but numbers against string classes, or NaN, are refused, as
    # scikit-learn's scorers refuse them (they counted as misses: 0.0)
    numbers = np.searchsorted(clf.classes_, y)
    with pytest.raises(ValueError, match="y holds numbers and the estimator's"):
        get_scorer("precision_at_1")(clf, X, numbers)
    numeric = LogisticRegression().fit(X, numbers)
    with pytest.raises(ValueError, match="y holds strings and the estimator's"):
        get_scorer("precision_at_1")(numeric, X, y)
    # object arrays (pandas) are judged by their values
    objects = LogisticRegression().fit(X, y.astype(object))
    with pytest.raises(ValueError, match="y holds numbers and the estimator's"):
        get_scorer("precision_at_1")(objects, X, numbers)
    with pytest.raises(ValueError, match="y holds strings and the estimator's"):
        get_scorer("precision_at_1")(numeric, X, y.astype(object))
    assert get_scorer("precision_at_1")(objects, X, y) == objects.score(X, y)
    # object labels with None, NaN or mixed types scored 0.0: every row a miss
    for bad, match in [
        (None, "contains NaN, None"),
        (float("nan"), "contains NaN, None"),
        (np.float32("nan"), "contains NaN, None"),
        (pd.NA, "contains NaN, None"),
        (1, "Mix of label input types in y"),
    ]:
        mixed = y.astype(object)
        mixed[5] = bad
        with pytest.raises(ValueError, match=match):
            get_scorer("precision_at_1")(objects, X, mixed)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        get_scorer("precision_at_1")(
            numeric, X, np.where(numbers == 0, np.nan, numbers)
        )


def test_scorer_predict_proba_path(string_multiclass):
    X, y = string_multiclass
    clf = GaussianNB().fit(X, y)  # no decision_function
    assert not hasattr(clf, "decision_function")
    indices = np.searchsorted(clf.classes_, y)
    for k in (1, 2):
        scorer = make_at_k_scorer("recall", k=k)
        assert scorer(clf, X, y) == pytest.approx(
            recall_at_k(indices, clf.predict_proba(X), k)
        )


def test_scorer_names_scores_that_do_not_follow_classes():
    # a one-vs-one decision_function (6 columns for 4 classes) was reported
    # as "y_true has 4 label columns but 6 classes are expected"
    from sklearn.svm import SVC

    X, y = make_classification(
        n_samples=60, n_features=6, n_informative=4, n_classes=4, random_state=0
    )
    ovo = SVC(decision_function_shape="ovo").fit(X, y)
    with pytest.raises(ValueError, match=r"SVC.decision_function returned 6 col"):
        get_scorer("precision_at_1")(ovo, X, y)
    ovr = SVC().fit(X, y)
    assert get_scorer("precision_at_1")(ovr, X, y) == pytest.approx(
        precision_at_k(y, ovr.decision_function(X), k=1)
    )


def test_scorer_binary_decision_function(string_multiclass):
    X, y = string_multiclass
    binary = np.where(y == "cat", "cat", "other")
    clf = LogisticRegression(solver="newton-cholesky").fit(X, binary)
    assert get_scorer("precision_at_1")(clf, X, binary) == pytest.approx(
        clf.score(X, binary)
    )


class _TopKStub:
    """An estimator ranking classes with predict_top_k only."""

    classes_ = np.array(["a", "b", "c"])

    def predict_top_k(self, X, k=5):
        labels = np.array([["c", "a", "b"], ["b", "c", "a"]])[:, :k]
        return labels, np.zeros(labels.shape)


def test_scorer_predict_top_k_path():
    y = np.array(["a", "b"])
    # Sample 0: "a" at rank 2; sample 1: "b" at rank 1.
    assert make_at_k_scorer("precision", k=1)(_TopKStub(), None, y) == pytest.approx(
        1 / 2
    )
    assert make_at_k_scorer("recall", k=2)(_TopKStub(), None, y) == pytest.approx(1.0)
    assert make_at_k_scorer("ndcg", k=2)(_TopKStub(), None, y) == pytest.approx(
        (D2 + 1) / 2
    )


def test_scorer_with_mach_classifier(string_multiclass):
    from sklearn_mach import MACHClassifier

    X, y = string_multiclass
    clf = MACHClassifier(
        n_buckets=8,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        max_epochs=5,
        random_state=0,
    ).fit(X, y)
    labels, _ = clf.predict_top_k(X, k=3)
    hits = (labels == y[:, None]).sum(axis=1)
    assert get_scorer("precision_at_3")(clf, X, y) == pytest.approx(hits.mean() / 3)
    assert get_scorer("precision_at_1")(clf, X, y) == pytest.approx(
        np.mean(labels[:, 0] == y)
    )


class _Stateless(TransformerMixin, BaseEstimator):
    """Scales by constants: fit learns nothing, so nothing marks it fitted."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return (X - 3) / 10


def test_scorer_ranks_through_pipelines_and_searches(string_multiclass, monkeypatch):
    # Pipeline and GridSearchCV hide predict_top_k; their decision_function
    # is the full (n_samples, n_classes) matrix, refused at large K
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_mach import MACHClassifier

    X, y = string_multiclass
    X = X * 10 + 3  # the scaler changes the input: a skipped step shows
    params = dict(n_buckets=8, n_repetitions=2, hidden_layer_sizes=(16,))
    pipe = make_pipeline(
        StandardScaler(), MACHClassifier(max_epochs=5, random_state=0, **params)
    ).fit(X, y)
    labels, _ = pipe[-1].predict_top_k(pipe[0].transform(X), k=3)
    expected = (labels == y[:, None]).sum(axis=1).mean() / 3
    search = GridSearchCV(pipe, {"machclassifier__max_epochs": [5]}, cv=2).fit(X, y)
    nested = make_pipeline(StandardScaler(), make_pipeline(StandardScaler(), pipe))

    def refuse(self, X):
        raise AssertionError("ranked through the full score matrix")

    monkeypatch.setattr(MACHClassifier, "decision_function", refuse)
    monkeypatch.setattr(MACHClassifier, "predict_proba", refuse)
    scorer = get_scorer("precision_at_3")
    assert scorer(pipe, X, y) == pytest.approx(expected)
    assert scorer(search, X, y) == pytest.approx(expected)
    nested.fit(X, y)
    inner = nested[-1][-1]
    labels, _ = inner[-1].predict_top_k(
        inner[0].transform(nested[-1][0].transform(nested[0].transform(X))), k=3
    )
    assert scorer(nested, X, y) == pytest.approx(
        (labels == y[:, None]).sum(axis=1).mean() / 3
    )
    # a stateless step has nothing fitted: a sliced pipeline's transform
    # called that "not fitted"
    shifted = make_pipeline(
        _Stateless(),
        "passthrough",
        MACHClassifier(max_epochs=5, random_state=0, **params),
    ).fit(X, y)
    labels, _ = shifted[-1].predict_top_k((X - 3) / 10, k=3)
    assert scorer(shifted, X, y) == pytest.approx(
        (labels == y[:, None]).sum(axis=1).mean() / 3
    )
    # without predict_top_k at the end, the pipeline's own scores rank
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    top = lr.classes_[np.argsort(-lr.decision_function(X), axis=1)[:, :3]]
    assert scorer(lr, X, y) == pytest.approx((top == y[:, None]).sum(1).mean() / 3)


def _naive(y_true, scores, propensity, k):
    """Per-sample loop implementation of every metric, for cross-checking."""
    w = 1.0 / propensity
    p, r, n, ps_num, ps_den, psn_num, psn_den = ([] for _ in range(7))
    for y, s in zip(y_true, scores):
        ranking = sorted(range(len(s)), key=lambda j: (-s[j], j))[:k]
        true = set(np.flatnonzero(y))
        disc = [1 / math.log2(i + 2) for i in range(k)]
        ideal = sum(disc[: min(k, len(true))])
        best = sorted((w[j] for j in true), reverse=True)[:k]
        p.append(sum(j in true for j in ranking) / k)
        r.append(sum(j in true for j in ranking) / len(true) if true else 0.0)
        dcg = sum(d for d, j in zip(disc, ranking) if j in true)
        n.append(dcg / ideal if true else 0.0)
        ps_num.append(sum(w[j] for j in ranking if j in true))
        ps_den.append(sum(best))
        if true:
            psn_num.append(
                sum(d * w[j] for d, j in zip(disc, ranking) if j in true) / ideal
            )
            psn_den.append(sum(d * b for d, b in zip(disc, best)) / ideal)
    return {
        precision_at_k: np.mean(p),
        recall_at_k: np.mean(r),
        ndcg_at_k: np.mean(n),
        psprecision_at_k: sum(ps_num) / sum(ps_den),
        psndcg_at_k: sum(psn_num) / sum(psn_den),
    }


@pytest.mark.parametrize("k", [1, 2, 5])
def test_against_naive_implementation(k):
    rng = np.random.RandomState(k)
    y_true = (rng.rand(60, 12) < 0.2).astype(int)
    scores = rng.randint(0, 5, size=(60, 12)).astype(float)  # with ties
    propensity = label_propensities(y_true)
    expected = _naive(y_true, scores, propensity, k)
    for metric, value in expected.items():
        args = (propensity,) if metric in (psprecision_at_k, psndcg_at_k) else ()
        assert metric(sp.csr_matrix(y_true), scores, *args, k=k) == pytest.approx(value)
