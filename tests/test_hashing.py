import io

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.base import clone

from sklearn_mach import CountMinLabelHasher, _hashing
from sklearn_mach._hashing import MAX_KEYS, draw_tables, hash_range, tabulation_hash

from .tracing import traced_peak


def random_labels(n_samples, n_classes, density, seed):
    rng = np.random.RandomState(seed)
    return sp.random(
        n_samples,
        n_classes,
        density=density,
        format="csr",
        random_state=rng,
        data_rvs=lambda n: rng.randint(1, 4, size=n).astype(float),
    )


def test_transform_sums_the_entries_of_each_bucket():
    Y = random_labels(20, 50, 0.1, 0).toarray()
    hasher = CountMinLabelHasher(n_buckets=7, n_repetitions=3, random_state=0).fit(Y)
    S = hasher.transform(Y)
    assert S.shape == (20, 21)
    for r in range(3):
        for b in range(7):
            in_bucket = hasher.buckets_[r] == b
            np.testing.assert_allclose(S[:, r * 7 + b], Y[:, in_bucket].sum(axis=1))


def test_transform_is_linear():
    Y1 = random_labels(30, 200, 0.05, 1)
    Y2 = random_labels(30, 200, 0.05, 2)
    hasher = CountMinLabelHasher(n_buckets=16, n_repetitions=4, random_state=0).fit(Y1)
    lhs = hasher.transform(2.0 * Y1 + 3.0 * Y2).toarray()
    rhs = 2.0 * hasher.transform(Y1).toarray() + 3.0 * hasher.transform(Y2).toarray()
    np.testing.assert_allclose(lhs, rhs)


@pytest.mark.parametrize("estimator", ["min", "mean"])
def test_count_min_guarantee_for_non_negative_input(estimator):
    Y = random_labels(50, 500, 0.02, 3).toarray()
    hasher = CountMinLabelHasher(
        n_buckets=64, n_repetitions=4, estimator=estimator, random_state=0
    ).fit(Y)
    estimate = hasher.inverse_transform(hasher.transform(Y))
    assert estimate.shape == Y.shape
    assert np.all(estimate >= Y - 1e-12)
    # Where a class shares none of its buckets with another class present
    # in the row, the estimate is exact.
    for i in range(Y.shape[0]):
        present = np.flatnonzero(Y[i])
        for k in present:
            alone = all(
                np.sum(hasher.buckets_[r, present] == hasher.buckets_[r, k]) == 1
                for r in range(4)
            )
            if alone:
                assert estimate[i, k] == pytest.approx(Y[i, k])
    # Count-min never exceeds the mean estimate.
    if estimator == "min":
        mean = hasher.set_params(estimator="mean").inverse_transform(
            hasher.transform(Y)
        )
        assert np.all(estimate <= mean + 1e-12)


def test_min_estimate_is_exact_without_collisions():
    # With B much larger than K, a random pair of classes rarely collides in
    # all repetitions, so nearly every estimate is exact.
    Y = random_labels(100, 50, 0.1, 4).toarray()
    hasher = CountMinLabelHasher(n_buckets=4096, n_repetitions=4, random_state=0).fit(Y)
    np.testing.assert_allclose(hasher.inverse_transform(hasher.transform(Y)), Y)


def test_bucket_load_is_close_to_uniform():
    n_classes, n_buckets = 100_000, 1000
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=5, random_state=0)
    hasher.fit(sp.csr_matrix((1, n_classes)))
    for r in range(5):
        counts = np.bincount(hasher.buckets_[r], minlength=n_buckets)
        _, p_value = stats.chisquare(counts)
        assert p_value > 1e-3, (r, p_value)


def test_repetitions_are_independent():
    # Pairs of classes colliding in repetition r should collide in
    # repetition s at the base rate 1/B, not more.
    n_classes, n_buckets = 20_000, 50
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=3, random_state=0)
    hasher.fit(sp.csr_matrix((1, n_classes)))
    b = hasher.buckets_
    for r, s in [(0, 1), (0, 2), (1, 2)]:
        # Joint distribution of (h_r(k), h_s(k)) is uniform on B x B.
        joint = np.bincount(
            b[r].astype(np.int64) * n_buckets + b[s], minlength=n_buckets**2
        )
        table = joint.reshape(n_buckets, n_buckets)
        _, p_value, _, _ = stats.chi2_contingency(table)
        assert p_value > 1e-3, (r, s, p_value)
    assert not np.array_equal(b[0], b[1])


def test_collision_rate_is_universal():
    # 2-universality: two fixed keys collide with probability about 1/B over
    # the draw of the hash function.
    n_buckets = 10
    hasher = CountMinLabelHasher(
        n_buckets=n_buckets, n_repetitions=20_000, random_state=0
    )
    hasher.fit(sp.csr_matrix((1, 3)))
    rate = np.mean(hasher.buckets_[:, 1] == hasher.buckets_[:, 2])
    assert abs(rate - 1 / n_buckets) < 0.01


def test_random_state_determines_the_hash_functions():
    Y = sp.csr_matrix((1, 1000))
    a = CountMinLabelHasher(random_state=42).fit(Y)
    b = CountMinLabelHasher(random_state=42).fit(Y)
    c = CountMinLabelHasher(random_state=43).fit(Y)
    np.testing.assert_array_equal(a.hash_tables_, b.hash_tables_)
    np.testing.assert_array_equal(a.buckets_, b.buckets_)
    assert not np.array_equal(a.buckets_, c.buckets_)


def test_buckets_are_derived_from_the_hash_tables():
    hasher = CountMinLabelHasher(n_buckets=97, n_repetitions=3, random_state=0)
    hasher.fit(sp.csr_matrix((1, 70_000)))  # keys of three bytes
    tables = hasher.hash_tables_
    assert tables.shape == (3, 4, 256) and tables.dtype == np.uint32
    keys = np.arange(70_000)
    expected = np.empty((3, keys.size), dtype=np.int64)
    for r in range(3):  # the definition, one key at a time
        for i, k in enumerate(keys.tolist()):
            word = 0
            for byte in range(4):
                word ^= int(tables[r, byte, (k >> (8 * byte)) & 255])
            expected[r, i] = word % 97
    np.testing.assert_array_equal(hasher.buckets_, expected)
    np.testing.assert_array_equal(hasher.hash(keys), expected)
    np.testing.assert_array_equal(tabulation_hash(keys, tables, 97), expected)
    with pytest.raises(ValueError, match="Hash keys"):
        tabulation_hash([MAX_KEYS], tables, 97)


@pytest.mark.parametrize("n_buckets", [97, 2, 4096, 2**31 - 1, 2**31, 2**33 + 5])
@pytest.mark.parametrize("n_keys", [0, 1, 300, 65536, 65537, 200_000])
def test_hash_range_equals_hashing_the_keys(n_keys, n_buckets):
    tables = draw_tables(0, 3)
    got = hash_range(n_keys, tables, n_buckets)
    expected = tabulation_hash(np.arange(n_keys), tables, n_buckets)
    assert got.dtype == expected.dtype and got.shape == (3, n_keys)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "start, n_keys",
    [
        (1, 0),
        (5, 300),
        (65_535, 2),
        (65_536, 65_536),
        (70_000, 200_000),
        (2**32 - 3, 3),
    ],
)
def test_hash_range_from_a_start(start, n_keys):
    # the keys start .. start + n_keys - 1, as blocks of a long range are hashed
    tables = draw_tables(2, 2)
    for n_buckets in (4096, 1000, 2**33 + 5):
        got = hash_range(n_keys, tables, n_buckets, start=start)
        keys = np.arange(start, start + n_keys)
        np.testing.assert_array_equal(got, tabulation_hash(keys, tables, n_buckets))
    for start, n_keys in ((-1, 1), (2**32 - 3, 4)):
        with pytest.raises(ValueError, match="Hash keys"):
            hash_range(n_keys, tables, 8, start=start)


def test_hash_range_past_three_bytes():
    # keys of 2**24 and more use the fourth table
    tables = draw_tables(1, 1)
    n_keys = 2**24 + 70_000
    tail = np.arange(2**24 - 70_000, n_keys)
    for n_buckets in (4096, 1000):
        got = hash_range(n_keys, tables, n_buckets)[:, -len(tail) :]
        np.testing.assert_array_equal(got, tabulation_hash(tail, tables, n_buckets))
    with pytest.raises(ValueError, match="Hash keys"):
        hash_range(MAX_KEYS + 1, tables, 8)


def _expected_distinct(n_keys, n_buckets):
    return n_buckets * (1 - (1 - 1 / n_buckets) ** n_keys)


def _distinct_sd(n_keys, n_buckets):
    """Standard deviation of the buckets ``n_keys`` uniform draws use."""
    B, K = n_buckets, n_keys
    variance = (
        B * (B - 1) * (1 - 2 / B) ** K
        + B * (1 - 1 / B) ** K
        - B**2 * (1 - 1 / B) ** (2 * K)
    )
    return np.sqrt(max(variance, 0.0))


@pytest.mark.parametrize(
    "n_classes, n_buckets",
    [
        (10, 8),
        (159, 256),
        (1000, 256),
        (1000, 255),
        (1000, 1024),
        (1000, 1000),
        (20_000, 2048),
        (20_000, 2000),
    ],
)
def test_consecutive_class_ids_spread_like_random_buckets(n_classes, n_buckets):
    # Class ids are 0, 1, ..., K - 1: a hash with arithmetic structure (such
    # as ((a k + b) mod p) mod B with a power-of-two B) bunches them in some
    # repetitions.  Over many repetitions, the number of buckets used must
    # average what K uniform draws use.  Its spread and the largest load
    # must match uniform draws too, except, as documented, with a
    # power-of-two B beyond 256 classes (four keys pairing up byte by byte
    # have buckets that XOR to zero there).
    R = 200
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=R, random_state=0)
    hasher.fit(sp.csr_matrix((1, n_classes)))
    counts = [np.bincount(b, minlength=n_buckets) for b in hasher.buckets_]
    distinct = np.array([np.count_nonzero(c) for c in counts])
    sd = _distinct_sd(n_classes, n_buckets)
    expected = _expected_distinct(n_classes, n_buckets)
    assert abs(distinct.mean() - expected) <= 4 * sd / np.sqrt(R) + 0.05
    if n_classes <= 256 or n_buckets & (n_buckets - 1):
        if sd > 0.5:
            assert 0.75 < distinct.std() / sd < 1.33, (distinct.std(), sd)
        # the largest load, on average, as for uniform draws (a maximum of
        # maxima over repetitions would be too noisy a statistic)
        rng = np.random.RandomState(1)
        uniform = np.array(
            [
                np.bincount(
                    rng.randint(0, n_buckets, n_classes), minlength=n_buckets
                ).max()
                for _ in range(R)
            ]
        )
        largest = np.array([c.max() for c in counts])
        spread = np.sqrt((largest.var() + uniform.var()) / R)
        assert abs(largest.mean() - uniform.mean()) <= 4 * spread + 0.05


def test_power_of_two_buckets_keep_the_byte_rectangles():
    # The documented limit of simple tabulation: h(0) ^ h(1) ^ h(256) ^ h(257)
    # is zero, so with B = 2**b, h(0) = h(1) forces h(256) = h(257); another
    # B breaks the relation (a collision of 256, 257 at the base rate).
    keys = [0, 1, 256, 257]
    for n_buckets, rectangle in [(1024, True), (1000, False)]:
        hasher = CountMinLabelHasher(
            n_buckets=n_buckets, n_repetitions=20_000, random_state=0
        ).fit(sp.csr_matrix((1, 258)))
        b = hasher.buckets_[:, keys]
        first = b[:, 0] == b[:, 1]
        assert 5 <= first.sum() <= 60  # about R / B
        follows = (b[first, 2] == b[first, 3]).mean()
        assert follows == 1.0 if rectangle else follows < 0.5


def test_feature_hash_tables_from_a_seed():
    np.testing.assert_array_equal(draw_tables(3, 2), draw_tables(3, 2))
    assert not np.array_equal(draw_tables(3, 1), draw_tables(4, 1))


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_and_sparse_agree(container, dtype):
    Y = random_labels(40, 300, 0.03, 5).astype(dtype)
    hasher = CountMinLabelHasher(n_buckets=32, n_repetitions=3, random_state=0).fit(Y)
    S_sparse = hasher.transform(container(Y))
    S_dense = hasher.transform(Y.toarray())
    assert sp.issparse(S_sparse) and isinstance(S_sparse, container)
    assert S_sparse.dtype == dtype and S_dense.dtype == dtype
    np.testing.assert_allclose(S_sparse.toarray(), S_dense)
    back_sparse = hasher.inverse_transform(S_sparse)
    assert isinstance(back_sparse, container)
    np.testing.assert_allclose(back_sparse.toarray(), hasher.inverse_transform(S_dense))


def test_sparse_input_is_not_densified():
    # 10^6 classes x 10^4 rows would be 80 GB dense; the sketch stays sparse.
    n_samples, n_classes = 10_000, 1_000_000
    rng = np.random.RandomState(0)
    rows = np.repeat(np.arange(n_samples), 3)
    cols = rng.randint(n_classes, size=rows.size)
    Y = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_samples, n_classes))
    hasher = CountMinLabelHasher(n_buckets=512, n_repetitions=4, random_state=0).fit(Y)
    S = hasher.transform(Y)
    assert sp.issparse(S) and S.nnz <= 4 * Y.nnz
    np.testing.assert_allclose(np.asarray(S.sum(axis=1)).ravel(), 4 * 3)


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_sparse_transform_is_built_from_the_entries(container, monkeypatch):
    # scipy's X @ sketch_matrix() built K * R entries per call whatever X
    # held (2.5 GB for one row of 3 labels at K = 10**7, R = 8; a multilabel
    # fit at R = 16 ran out of memory on 300 rows) and allocated per output
    # column (1.5 GiB for one row at R * B = 2**27, 24 GiB at B = 2**31 - 1).
    # Built from the entries: the same sums as the product, at any K and B.
    Y = random_labels(40, 300, 0.03, 5).multiply(np.arange(1, 301))
    Y = sp.csr_matrix(Y, dtype=np.float32)
    Y.data[0] = 0  # a stored zero: no stored zero in the sketch, as the product
    hasher = CountMinLabelHasher(n_buckets=32, n_repetitions=3, random_state=0).fit(Y)
    product = Y.toarray() @ hasher.sketch_matrix().toarray()
    monkeypatch.setattr(CountMinLabelHasher, "sketch_matrix", None)
    S = hasher.transform(container(Y))
    assert isinstance(S, container)
    assert S.has_canonical_format and S.dtype == np.float32 and np.all(S.data != 0)
    np.testing.assert_allclose(S.toarray(), product, rtol=1e-6)
    monkeypatch.undo()
    wide = CountMinLabelHasher(n_buckets=2**31 - 1, n_repetitions=2, random_state=0)
    S = wide.fit(Y).transform(Y[:2])
    assert S.shape == (2, 2 * (2**31 - 1)) and S.nnz == 2 * Y[:2].count_nonzero()
    assert S.indices.dtype == np.int64  # column 2**31 and above
    K = 10**6
    Y = sp.csr_matrix(([1.0, 1.0, 2.0], ([0, 0, 1], [5, K - 1, 5])), shape=(2, K))
    hasher = CountMinLabelHasher(n_buckets=64, n_repetitions=4, random_state=0)
    hasher.fit(Y)
    expected = np.zeros((2, 4 * 64))
    for r in range(4):
        for row, label, value in ((0, 5, 1), (0, K - 1, 1), (1, 5, 2)):
            expected[row, r * 64 + hasher.buckets_[r, label]] += value
    monkeypatch.setattr(CountMinLabelHasher, "sketch_matrix", None)
    np.testing.assert_array_equal(hasher.transform(Y).toarray(), expected)


def test_sparse_transform_of_many_labels_per_class_is_the_product(monkeypatch):
    # 4 non-zeros per class or more: the sketch matrix (K * R entries) is
    # smaller than the labels' R entries each (9 times the product's memory
    # for 500 labels a row at B = 64)
    rng = np.random.RandomState(0)
    Y = sp.random(40, 100, density=0.5, format="csr", random_state=rng)
    hasher = CountMinLabelHasher(n_buckets=16, n_repetitions=3, random_state=0).fit(Y)
    expected = Y.toarray() @ hasher.sketch_matrix().toarray()
    built, original = [], CountMinLabelHasher.sketch_matrix
    monkeypatch.setattr(
        CountMinLabelHasher,
        "sketch_matrix",
        lambda self: built.append(1) or original(self),
    )
    S = hasher.transform(Y)
    assert built == [1] and S.has_canonical_format
    np.testing.assert_allclose(S.toarray(), expected, rtol=1e-12)
    few = sp.csr_matrix(Y[:, :1])  # 4 * 100 classes > 20 non-zeros
    hasher.transform(sp.hstack([few, sp.csr_matrix((40, 99))]).tocsr())
    assert built == [1]
    # rows of B / 4 labels: the product (labels share buckets); fewer: the
    # entries (5 labels a row at B = 2048 took 315 MiB as the product, 250
    # as entries, at K = 10**6)
    for labels, path in ((4, [1]), (3, [])):  # B = 16
        rows = np.repeat(np.arange(40), labels)
        columns = (rows + np.tile(np.arange(labels), 40)) % 20
        Y = sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(40, 20))
        assert Y.nnz == 40 * labels >= 4 * 20
        hasher.fit(Y)
        built.clear()
        S = hasher.transform(Y)
        assert built == path, labels
        np.testing.assert_array_equal(
            S.toarray(), Y.toarray() @ original(hasher).toarray()
        )


@pytest.mark.parametrize("n_buckets", [13, 70_000])  # 16-bit and wider bucket ids
def test_bucket_members_partition_the_classes(n_buckets):
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=2, random_state=0)
    hasher.fit(sp.csr_matrix((1, 200)))
    for r in range(2):
        indptr, members = hasher.bucket_members(r)
        assert indptr.shape == (n_buckets + 1,) and sorted(members) == list(range(200))
        for b in np.unique(hasher.buckets_[r]):
            in_bucket = members[indptr[b] : indptr[b + 1]]
            assert np.all(hasher.buckets_[r, in_bucket] == b)
            assert np.all(np.diff(in_bucket) > 0)  # ascending within a bucket


def test_sketch_matrix_is_the_transform():
    Y = random_labels(10, 60, 0.1, 6)
    hasher = CountMinLabelHasher(n_buckets=8, n_repetitions=3, random_state=0).fit(Y)
    M = hasher.sketch_matrix()
    assert M.shape == (60, 24) and M.nnz == 60 * 3
    np.testing.assert_allclose((Y @ M).toarray(), hasher.transform(Y).toarray())


@pytest.mark.parametrize(
    "changed", [{"n_buckets": 100_000}, {"n_buckets": 3}, {"n_repetitions": 2}]
)
def test_fitted_sketch_ignores_later_set_params(changed):
    # Transforms use what fit drew, as scikit-learn's do.  They used to mix
    # the new n_buckets into fitted column offsets: a CSR matrix with
    # out-of-range indices (a segmentation fault in scipy's matmul), or a
    # silently wrong sketch.
    Y = random_labels(12, 40, 0.2, 7)
    hasher = CountMinLabelHasher(n_buckets=8, n_repetitions=3, random_state=0).fit(Y)
    before = (
        hasher.transform(Y).toarray(),
        hasher.inverse_transform(hasher.transform(Y)).toarray(),
        hasher.sketch_matrix().toarray(),
        hasher.hash(np.arange(40)),
        hasher.bucket_members(2),
    )
    hasher.set_params(**changed)
    M = hasher.sketch_matrix()
    M.check_format(full_check=True)
    after = (
        hasher.transform(Y).toarray(),
        hasher.inverse_transform(hasher.transform(Y)).toarray(),
        M.toarray(),
        hasher.hash(np.arange(40)),
        hasher.bucket_members(2),
    )
    for a, b in zip(before, after):
        if isinstance(a, tuple):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_array_equal(a, b)
    assert hasher.get_feature_names_out().shape == (24,)


def test_invalid_input():
    hasher = CountMinLabelHasher(n_buckets=4, n_repetitions=2)
    with pytest.raises(ValueError, match="Negative values"):
        hasher.fit(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="n_buckets"):
        CountMinLabelHasher(n_buckets=1).fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="n_repetitions"):
        CountMinLabelHasher(n_repetitions=0).fit(np.ones((2, 3)))
    hasher.fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="3 features"):
        hasher.transform(np.ones((2, 4)))
    with pytest.raises(ValueError, match="n_repetitions \\* n_buckets = 8"):
        hasher.inverse_transform(np.ones((2, 5)))


def test_a_failed_fit_changes_nothing():
    # validate_data set n_features_in_ (and feature_names_in_) before the
    # non-negativity check: a failed refit left a 10-class hasher with a
    # 6-class sketch (transform failed inside scipy), and a fresh hasher
    # looked fitted to check_is_fitted
    pd = pytest.importorskip("pandas")
    fresh = CountMinLabelHasher(n_buckets=4, n_repetitions=2)
    with pytest.raises(ValueError, match="Negative values"):
        fresh.fit(-np.ones((3, 10)))
    assert fresh.__dict__ == CountMinLabelHasher(n_buckets=4, n_repetitions=2).__dict__
    Y = random_labels(12, 6, 0.3, 0)
    hasher = CountMinLabelHasher(n_buckets=4, n_repetitions=2, random_state=0).fit(Y)
    before = dict(hasher.__dict__)
    bad = pd.DataFrame(-np.ones((3, 10)), columns=[f"c{i}" for i in range(10)])
    for X in (-np.ones((3, 10)), bad):
        with pytest.raises(ValueError, match="Negative values"):
            hasher.fit(X)
        assert hasher.__dict__.keys() == before.keys()
        assert all(hasher.__dict__[k] is v for k, v in before.items())
    estimate = hasher.inverse_transform(hasher.transform(Y))
    assert (estimate.toarray() >= Y.toarray()).all()  # the 6-class sketch still


def test_estimator_changed_after_fit_is_checked():
    # inverse_transform summed the repetitions for any value but "min" and
    # "mean" set after fit
    Y = random_labels(12, 6, 0.3, 0)
    hasher = CountMinLabelHasher(n_buckets=4, n_repetitions=2, random_state=0).fit(Y)
    S = hasher.transform(Y)
    for value in ("max", None):
        hasher.set_params(estimator=value)
        with pytest.raises(ValueError, match="'estimator' parameter"):
            hasher.inverse_transform(S)
    hasher.set_params(estimator="mean")
    S = np.asarray(S.todense()) if sp.issparse(S) else S
    b = hasher.buckets_
    np.testing.assert_allclose(
        hasher.inverse_transform(S), (S[:, b[0]] + S[:, 4 + b[1]]) / 2
    )


def test_a_boolean_n_repetitions_counts_as_one():
    # True passes Interval(Integral), as in scikit-learn, which counts it as 1
    hasher = CountMinLabelHasher(n_repetitions=True, n_buckets=4, random_state=0)
    assert hasher.fit(np.ones((2, 5))).hash_tables_.shape == (1, 4, 256)
    assert hasher.transform(np.ones((2, 5))).shape == (2, 4)


@pytest.mark.parametrize(
    "n_classes, n_buckets, R, n, density, budget",
    [
        (50, 4096, 4, 3000, 0.3, 20e6),
        (6, 2**24, 4, 3, 0.3, 1e6),
        (6, 2**31 - 1, 1, 3, 0.3, 1e6),
        (100_000, 32, 4, 4000, None, 120e6),
    ],
)
def test_sparse_inverse_transform_reads_the_stored_entries_only(
    n_classes, n_buckets, R, n, density, budget
):
    # inverse_transform densified blocks of rows of the sketch (width R * B)
    # and of the estimate (width K): at least one row of R * B values, 512
    # MiB at R * B = 2**26 for a 3-row answer (16 GiB at B = 2**31 - 1);
    # 20,000 rows of K = 18,069 classes (B = 2048, R = 8) took 19 s.  Its
    # first replacement expanded every row at once: 717 MiB for 4,000 rows
    # of one label among 100,000 classes in 32 buckets
    if density is None:  # one label a row (sp.random would permute n * K cells)
        labels = np.random.RandomState(0).randint(n_classes, size=n)
        Y = sp.csr_matrix((np.ones(n), labels, np.arange(n + 1)), shape=(n, n_classes))
    else:
        Y = random_labels(n, n_classes, density, 0)
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=R, random_state=0)
    S = hasher.fit_transform(Y)
    estimate, peak = traced_peak(lambda: hasher.inverse_transform(S))
    assert peak < budget, peak
    if n_buckets > 2**20:  # no collision among 6 classes: exact
        np.testing.assert_array_equal(estimate.toarray(), Y.toarray())
    else:
        np.testing.assert_array_equal(
            estimate[:50].toarray(), hasher.inverse_transform(S[:50].toarray())
        )


@pytest.mark.parametrize("estimator", ["min", "mean"])
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("budget", [5, None])
def test_sparse_inverse_transform_of_any_sketch_equals_the_dense_one(
    monkeypatch, estimator, R, dtype, budget
):
    # any sketch, not only transform's: negative values, explicit zeros,
    # duplicate entries (summed), empty rows, every sparse container; rows
    # in blocks (a budget of 5 class values: one row a block, or more);
    # the caller's sketch unchanged

    if budget is not None:
        monkeypatch.setattr(_hashing, "_EXPANDED_ENTRIES", budget)
    rng = np.random.RandomState(R)
    hasher = CountMinLabelHasher(
        n_buckets=16, n_repetitions=R, estimator=estimator, random_state=0
    ).fit(np.ones((1, 40)))
    cells = rng.choice(30 * 16 * R, size=200, replace=False)
    rows, cols = np.divmod(cells[cells // (16 * R) != 7], 16 * R)  # row 7 empty
    values = rng.randn(rows.size).astype(dtype)
    values[:20] = 0
    S = sp.coo_matrix((values, (rows, cols)), shape=(30, 16 * R))
    expected = hasher.inverse_transform(S.toarray())
    # each value as two halves: summed back exactly
    halves = sp.coo_matrix(
        (np.tile(values / 2, 2), (np.tile(rows, 2), np.tile(cols, 2))), shape=S.shape
    )
    # and a CSR matrix holding the duplicates as they are (not canonical):
    # canonicalizing it in place would change the caller's arrays
    order = np.argsort(halves.row, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(halves.row, minlength=30))])
    raw = sp.csr_matrix((halves.data[order], halves.col[order], indptr), shape=S.shape)
    assert not raw.has_canonical_format
    kept = (raw.data.copy(), raw.indices.copy(), raw.indptr.copy())
    sketches = [c(s) for s in (S, halves) for c in (sp.coo_matrix, sp.csr_matrix)]
    sketches += [sp.csc_matrix(halves), sp.csr_array(halves), raw, sp.csr_array(raw)]
    for sketch in sketches:
        estimate = hasher.inverse_transform(sketch)
        assert type(estimate) is (
            sp.csr_array if isinstance(sketch, sp.sparray) else sp.csr_matrix
        )
        assert estimate.dtype == dtype and estimate.has_canonical_format
        assert np.all(estimate.data != 0)
        np.testing.assert_array_equal(estimate.toarray(), expected)
    for before, after in zip(kept, (raw.data, raw.indices, raw.indptr)):
        np.testing.assert_array_equal(before, after)  # the caller's sketch


def test_hash_and_bucket_members_check_their_arguments():
    hasher = CountMinLabelHasher(n_buckets=8, n_repetitions=2, random_state=0)
    hasher.fit(np.ones((1, 5)))
    np.testing.assert_array_equal(hasher.hash([1, 4]), hasher.buckets_[:, [1, 4]])
    assert hasher.hash(np.array([], dtype=int)).shape == (2, 0)
    ints = np.array([1, 4], dtype=object)  # Python ints, as before
    np.testing.assert_array_equal(hasher.hash(ints), hasher.buckets_[:, [1, 4]])
    with pytest.raises(TypeError, match="integer class indices"):
        hasher.hash([1.9])  # not silently class 1
    with pytest.raises(TypeError, match="integer class indices"):
        hasher.hash(["1"])
    with pytest.raises(ValueError, match=r"\[0, n_features_in_=5\)"):
        hasher.hash([99])
    with pytest.raises(ValueError, match="1-D"):
        hasher.hash(3)
    with pytest.raises(TypeError, match="Hash keys must be integers"):
        tabulation_hash([0.5], hasher.hash_tables_, 8)
    with pytest.raises(ValueError, match="Hash keys"):
        tabulation_hash([2**64], hasher.hash_tables_, 8)  # not an OverflowError
    for repetition in (-1, 2, 1.0, True):  # -1 must not mean the last one
        with pytest.raises(
            ValueError, match=r"repetition must be an integer in \[0, 2\)"
        ):
            hasher.bucket_members(repetition)
    # buckets of 2**31 or more would be unreachable or int64
    with pytest.raises(ValueError, match="n_buckets"):
        CountMinLabelHasher(n_buckets=2**31).fit(np.ones((1, 3)))


def test_dense_transform_is_c_contiguous():
    Y = np.asfortranarray(random_labels(6, 30, 0.2, 1).toarray())
    S = CountMinLabelHasher(n_buckets=8, n_repetitions=3, random_state=0).fit_transform(
        Y
    )
    assert S.flags.c_contiguous


def test_classifier_hasher_is_reproducible_from_its_documented_seed():
    from sklearn.utils import check_random_state

    from sklearn_mach import MACHClassifier

    X = np.random.RandomState(0).rand(60, 5)
    y = np.arange(60) % 7
    clf = MACHClassifier(
        n_buckets=4, n_repetitions=3, max_epochs=1, random_state=11
    ).fit(X, y)
    seed = clf.label_hasher_.random_state
    assert seed == check_random_state(11).randint(2**31 - 1)
    hasher = CountMinLabelHasher(4, 3, random_state=seed).fit(np.zeros((1, 7)))
    np.testing.assert_array_equal(hasher.buckets_, clf.label_hasher_.buckets_)
    # and so does a saved and loaded model's
    file = io.BytesIO()
    clf.save(file)
    loaded = MACHClassifier.load(io.BytesIO(file.getvalue())).label_hasher_
    assert loaded.random_state == seed
    hasher = clone(loaded).fit(np.zeros((1, 7)))
    np.testing.assert_array_equal(hasher.buckets_, clf.label_hasher_.buckets_)


@pytest.mark.parametrize(
    "n_buckets", [np.uint8(200), np.int16(20000), np.int32(2**29), np.int64(5)]
)
def test_numpy_integer_n_buckets_do_not_wrap(n_buckets):
    # NumPy 2 keeps R * n_buckets in n_buckets' own type, which wrapped
    Y = sp.eye(3, format="csr")
    hasher = CountMinLabelHasher(n_buckets, 8, random_state=0).fit(Y)
    assert hasher.transform(Y).shape == (3, 8 * int(n_buckets))
    assert hasher.buckets_.max() < n_buckets


@pytest.mark.parametrize("n_buckets", [4096, 10**6, 2**21])  # B < K, = K, > K
def test_sparse_inverse_transform_of_a_few_entries_is_not_sized_by_k(n_buckets):
    # every call gathered each repetition's buckets in bucket order, R
    # arrays of K values, and searched them: a one-row sketch took 0.2 s at
    # K = 2 * 10**6 and R = 16, longer than the K-wide dense answer
    import tracemalloc

    K = 10**6
    hasher = CountMinLabelHasher(n_buckets=n_buckets, n_repetitions=4, random_state=0)
    hasher.fit(sp.csr_matrix((1, K)))
    S = hasher.transform(sp.csr_matrix(([1.0, 1.0], [3, 7], [0, 2]), shape=(1, K)))
    tracemalloc.start()
    try:
        first = hasher.inverse_transform(S)  # sorts the classes by bucket, once
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        again = hasher.inverse_transform(S)
        peak = tracemalloc.get_traced_memory()[1] - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # the cache: int32 classes and int32 offsets (or sorted buckets where
    # B > K), 8 bytes a class and repetition (int64 offsets made it 12)
    assert kept < 8.5 * K * 4, kept
    assert peak < K, peak  # less than a byte a class
    assert (again != first).nnz == 0
    np.testing.assert_array_equal(
        again.toarray(), hasher.inverse_transform(S.toarray())
    )
    assert {3, 7} <= set(again.indices)


def test_dense_transform_costs_what_the_labels_hold():
    # dense labels were sketched as a product with the sketch matrix, built
    # at every call: 264 MB for one row of K = 10**6 classes at R = 8
    K = 10**6
    Y = np.zeros((1, K), dtype=np.float32)
    Y[0, [5, 77, 123456]] = 1
    hasher = CountMinLabelHasher(n_buckets=4096, n_repetitions=8, random_state=0)
    hasher.fit(sp.csr_matrix(Y))
    S, peak = traced_peak(lambda: hasher.transform(Y))
    assert peak < K, peak  # less than a byte a class
    assert isinstance(S, np.ndarray) and S.dtype == np.float32
    np.testing.assert_array_equal(S, hasher.transform(sp.csr_matrix(Y)).toarray())
    assert S.sum() == 3 * 8


def test_dense_labels_sharing_buckets_take_the_dense_product():
    # many labels a row: the product with the sketch matrix, on the dense
    # labels as they are; made CSR first it was 4 to 11 times slower and
    # took 7 times the labels' memory (1.3 times now)
    hasher = CountMinLabelHasher(n_buckets=64, n_repetitions=8, random_state=0)
    Y = np.ones((1000, 2000), dtype=np.float32)
    hasher.fit(Y[:1])
    S, peak = traced_peak(lambda: hasher.transform(Y))
    assert peak < 2 * Y.nbytes, peak / Y.nbytes
    np.testing.assert_array_equal(S, Y @ hasher.sketch_matrix().toarray())


def test_sparse_inverse_transform_cache_goes_with_the_fit():
    # the classes sorted by bucket, cached for sparse sketches, kept an
    # earlier fit's tables alive after a refit (R * K values, twice)
    import gc
    import weakref

    hasher = CountMinLabelHasher(n_buckets=16, n_repetitions=2, random_state=0)
    hasher.fit(np.ones((1, 1000)))
    S = sp.csr_matrix(np.arange(32.0)[None, :])
    first = hasher.inverse_transform(S)
    old = weakref.ref(hasher.buckets_)
    hasher.set_params(random_state=1).fit(np.ones((1, 1000)))
    gc.collect()
    assert old() is None
    second = hasher.inverse_transform(S)
    np.testing.assert_array_equal(
        second.toarray(), hasher.inverse_transform(S.toarray())
    )
    assert not np.array_equal(first.toarray(), second.toarray())


def test_pandas_sparse_boolean_frames_are_counted():
    # check_array keeps a sparse-bool DataFrame's bool dtype: the sketch's
    # sums came out as booleans (2 labels in a bucket read True)
    pd = pytest.importorskip("pandas")
    Y = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 0, 1, 1, 1]])
    frame = pd.DataFrame(Y.astype(bool)).astype(pd.SparseDtype(bool, False))
    hasher = CountMinLabelHasher(n_buckets=2, n_repetitions=2, random_state=0).fit(Y)
    sketch = hasher.transform(frame)
    assert sketch.dtype == np.float64
    np.testing.assert_array_equal(sketch.toarray(), hasher.transform(Y))
    assert sketch.max() > 1
    sketch_frame = pd.DataFrame(hasher.transform(Y) > 0).astype(
        pd.SparseDtype(bool, False)
    )
    estimate = hasher.inverse_transform(sketch_frame)
    assert estimate.dtype == np.float64
    np.testing.assert_array_equal(
        estimate.toarray(), hasher.inverse_transform(hasher.transform(Y) > 0)
    )
