import io
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_mach.datasets import (
    dump_svmlight_multilabel,
    dump_xc_repository,
    load_svmlight_multilabel,
    load_xc_repository,
)

from .modules import DroppedStream

# Lines: labels and features, features only, labels only, neither (one blank).
XC_TEXT = "4 5 3\n0,2 1:0.5 4:-2\n 0:1e-3 3:7\n1\n \n"
X_EXPECTED = np.array(
    [[0, 0.5, 0, 0, -2], [1e-3, 0, 0, 7, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    dtype=np.float32,
)
Y_EXPECTED = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)


def _assert_same_csr(A, B):
    """Same shape, dtype, sparsity structure and values."""
    assert sp.issparse(A) and A.format == "csr" and A.has_canonical_format
    assert A.shape == B.shape and A.dtype == B.dtype
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data, B.data)


def _random_dataset(n_samples=60, n_features=40, n_labels=9, seed=0):
    """Random X, Y whose rows 0, 1 and 2 have, respectively, only the label 3,
    only the feature 5 (value 0.25), and neither labels nor features."""
    rng = np.random.RandomState(seed)
    X = sp.random(n_samples, n_features, density=0.1, format="lil", random_state=rng)
    Y = sp.random(n_samples, n_labels, density=0.2, format="lil", random_state=rng)
    X[:3], Y[:3] = 0, 0
    Y[0, 3], X[1, 5] = 1, 0.25
    X, Y = X.tocsr().astype(np.float32), Y.tocsr().astype(np.float32)
    # Values over many orders of magnitude, with both signs.
    X.data *= (rng.randn(X.nnz) * 10.0 ** rng.randint(-6, 6, X.nnz)).astype(np.float32)
    X.data[X.indptr[1]] = 0.25
    Y.data[:] = 1
    return X, Y


def test_load_hand_written_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text(XC_TEXT)
    X, Y = load_xc_repository(path)
    assert X.dtype == Y.dtype == np.float32
    np.testing.assert_array_equal(X.toarray(), X_EXPECTED)
    np.testing.assert_array_equal(Y.toarray(), Y_EXPECTED)
    assert isinstance(X, sp.csr_matrix) and isinstance(Y, sp.csr_matrix)
    # str paths, text and binary file objects give the same result.
    for source in (str(path), io.StringIO(XC_TEXT), io.BytesIO(XC_TEXT.encode())):
        X2, Y2 = load_xc_repository(source)
        _assert_same_csr(X2, X)
        _assert_same_csr(Y2, Y)


def test_load_lenient_variants():
    # CRLF line ends, tabs, a featureless line without a leading blank,
    # repeated indices, trailing blank lines, wider matrices on request.
    text = "3 4 3\r\n2,0,2\t3:1 3:2\r\n1:5\r\n\r\n\r\n\r\n"
    X, Y = load_xc_repository(io.StringIO(text), n_features=6, n_labels=5)
    assert X.shape == (3, 6) and Y.shape == (3, 5)
    np.testing.assert_array_equal(
        X.toarray()[:, :4], [[0, 0, 0, 3], [0, 5, 0, 0], [0] * 4]
    )
    np.testing.assert_array_equal(Y.toarray()[:, :3], [[1, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert Y.data.tolist() == [1, 1]


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".txt.bz2"])
def test_xc_round_trip(tmp_path, suffix):
    X, Y = _random_dataset()
    path = tmp_path / f"data{suffix}"
    dump_xc_repository(X, Y, path)
    X2, Y2 = load_xc_repository(path)
    _assert_same_csr(X2, X)
    _assert_same_csr(Y2, Y)


def test_xc_round_trip_dense_and_file_objects():
    X, Y = _random_dataset(n_samples=20, seed=1)
    text, binary = io.StringIO(), io.BytesIO()
    dump_xc_repository(X.toarray(), Y.toarray(), text)
    dump_xc_repository(X, sp.csr_array(Y), binary)
    assert binary.getvalue().decode() == text.getvalue()
    lines = text.getvalue().split("\n")
    assert lines[0] == "20 40 9"
    assert lines[1] == "3"  # labels, no features
    assert lines[2] == " 5:0.25"  # features, no labels
    assert lines[3] == ""  # neither
    X2, Y2 = load_xc_repository(io.StringIO(text.getvalue()))
    _assert_same_csr(X2, X)
    _assert_same_csr(Y2, Y)


def test_dump_known_text():
    f = io.StringIO()
    dump_xc_repository(sp.csr_matrix(X_EXPECTED), Y_EXPECTED, f)
    assert f.getvalue() == "4 5 3\n0,2 1:0.5 4:-2.0\n 0:0.001 3:7.0\n1\n\n"


def test_featureless_samples_round_trip():
    # Several lines with labels and no features used to join into a blank
    # string, which numpy parses as [-1].
    X = sp.csr_matrix((3, 5), dtype=np.float32)
    Y = sp.csr_matrix(np.eye(3, dtype=np.float32))
    f = io.StringIO()
    dump_xc_repository(X, Y, f)
    assert f.getvalue() == "3 5 3\n0\n1\n2\n"
    X2, Y2 = load_xc_repository(io.StringIO(f.getvalue()))
    _assert_same_csr(X2, X)
    _assert_same_csr(Y2, Y)


def test_empty_dataset_round_trip():
    f = io.StringIO()
    dump_xc_repository(sp.csr_matrix((0, 3)), sp.csr_matrix((0, 2)), f)
    assert f.getvalue() == "0 3 2\n"
    X, Y = load_xc_repository(io.StringIO(f.getvalue()))
    assert X.shape == (0, 3) and Y.shape == (0, 2)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "header line is missing"),
        ("3 4\n", "Line 1: expected the header"),
        ("2 4 x\n1 0:1\n1 0:1\n", "Line 1: expected the header"),
        ("2 4 3\n1 0:1\n", "declares 2 samples but the file has 1"),
        ("1 4 3\n1 0:1\n2 1:1\n", "declares 1 samples but the file has 2"),
        ("2 4 3\n1 0:1\n1, 2 0:1\n", "Line 3 is malformed"),
        ("2 4 3\n1 0:1\n1 0:1:2 3\n", "Line 3 is malformed"),
        ("2 4 3\n1 0:abc\n1 0:1\n", "Line 2 is malformed"),
        ("2 4 3\n1 0:1\n1 -1:1\n", "Line 3 is malformed"),
        ("2 4 3\n1 0:1\n1 2\n", "Line 3 is malformed"),
        ("2 4 3\n1 0:1\n1 1:1 4:2\n", "Line 3: feature index 4 is out of range for 4"),
        ("2 4 3\n1 0:1\n0,3 1:1\n", "Line 3: label index 3 is out of range for 3"),
        # numpy saturates a label index beyond int64
        (
            "1 4 3\n99999999999999999999 0:1\n",
            "label index 9223372036854775807 or more",
        ),
        ("1 4 3\n1 0:1e39\n", "Line 2: feature value .*1e.39.* outside float32"),
        ("1 4 3\n1 0:-1e39\n", "Line 2: feature value .* outside float32"),
        # only ASCII digits: numpy parses no others
        ("1 4 3\n\u0661 0:1\n", "Line 2 is malformed"),
        ("1 4 3\n1 0:\u0661\n", "Line 2 is malformed"),
        ("1 4 \u00b2\n1 0:1\n", "Line 1: expected the header"),
        ("1 99999999999999999999 3\n1 0:1\n", "Line 1: a count .* exceeds"),
    ],
)
def test_load_malformed(text, match):
    with pytest.raises(ValueError, match=match):
        load_xc_repository(io.StringIO(text))


def test_load_and_dump_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="feature index 4 is out of range for 2"):
        load_xc_repository(io.StringIO(XC_TEXT), n_features=2)
    # the argument's fault, not the file's ("is not a valid ... file")
    path = tmp_path / "train.svm"
    path.write_bytes(b"1,2 1:1 5:2\n0 3:1\n")
    match = r"train.svm: feature index 5 \(counted from 0\) is out of range for n_f"
    with pytest.raises(ValueError, match=match):
        load_svmlight_multilabel(path, n_features=3)
    for zero_based, width in [(True, 6), (False, 5)]:
        X, _ = load_svmlight_multilabel(path, n_features=width, zero_based=zero_based)
        assert X.shape == (2, width)
        X, _ = load_svmlight_multilabel(path, n_features=9, zero_based=zero_based)
        assert X.shape == (2, 9) and X.nnz == 3
    # no feature at all: any width, 0 included (scikit-learn's is 1)
    for data in [b"1\n2\n", b""]:
        X, _ = load_svmlight_multilabel(io.BytesIO(data), n_features=0)
        assert X.shape == (data.count(b"\n"), 0)
    with pytest.raises(TypeError, match="n_labels must be an int"):
        load_xc_repository(io.StringIO(XC_TEXT), n_labels=2.5)
    with pytest.raises(TypeError, match="path must be a str"):
        load_xc_repository(42)
    with pytest.raises(ValueError, match="not plain ASCII"):
        load_xc_repository(io.BytesIO(b"1 1 1\n\xff\n"))
    with pytest.raises(ValueError, match="0s and 1s"):
        dump_xc_repository(X_EXPECTED, 2 * Y_EXPECTED, tmp_path / "x.txt")
    with pytest.raises(ValueError, match="X has 4 samples but Y has 3"):
        dump_xc_repository(X_EXPECTED, Y_EXPECTED[:3], tmp_path / "x.txt")
    with pytest.raises(ValueError, match="infinity|NaN"):
        dump_xc_repository(np.full((4, 2), np.nan), Y_EXPECTED, tmp_path / "x.txt")
    # a file its loader would refuse is not written
    with pytest.raises(ValueError, match="1e.300, outside float32's range"):
        dump_xc_repository(np.full((4, 2), 1e300), Y_EXPECTED, tmp_path / "y.txt")
    assert not (tmp_path / "y.txt").exists()


@pytest.mark.parametrize("zero_based", [True, False])
def test_svmlight_round_trip(tmp_path, zero_based):
    X, Y = _random_dataset(seed=2)
    keep = np.flatnonzero((X.getnnz(axis=1) > 0) | (Y.getnnz(axis=1) > 0))
    X, Y = X[keep], Y[keep]
    path = tmp_path / "data.svm"
    dump_svmlight_multilabel(X, Y, path, zero_based=zero_based)
    lines = pathlib.Path(path).read_text().split("\n")
    assert lines[0].strip() == "3"
    assert lines[1].strip() == ("5:0.25" if zero_based else "6:0.25")
    X2, Y2 = load_svmlight_multilabel(
        str(path), n_features=X.shape[1], n_labels=Y.shape[1], zero_based=zero_based
    )
    _assert_same_csr(X2, X)
    _assert_same_csr(Y2, Y)
    assert X2.dtype == Y2.dtype == np.float32


def test_svmlight_known_file_and_inferred_shapes():
    f = io.BytesIO(b"0,2 1:0.5\n 3:1\n1 \n")
    X, Y = load_svmlight_multilabel(f)
    np.testing.assert_array_equal(X.toarray(), [[0, 0.5, 0, 0], [0, 0, 0, 1], [0] * 4])
    np.testing.assert_array_equal(Y.toarray(), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="Sample 0: label 1.5 is not"):
        load_svmlight_multilabel(io.BytesIO(b"1.5 1:1\n"))
    with pytest.raises(ValueError, match="Sample 1: label index 2 is out of range"):
        load_svmlight_multilabel(io.BytesIO(b"1 1:1\n2 1:1\n"), n_labels=2)


@pytest.mark.parametrize(
    "line, error, match",
    [
        # labels were cast to int64 unchecked: a negative column index
        (b"0,99999999999999999999 1:1", ValueError, "label 1e.20 is not a non-neg"),
        (b"0,inf 1:1", ValueError, "Sample 0: label inf is not a non-negative"),
        (b"9007199254740993 1:1", ValueError, "is not a non-negative integer label"),
        # values were read as float32: past its range, or not finite, loaded
        (b"0 1:1e39", ValueError, "Sample 0: feature value inf is not finite in f"),
        (b"0 1:1e400", ValueError, "Sample 0: feature value inf is not finite"),
        (b"0 1:1\n0 1:nan", ValueError, "Sample 1: feature value nan is not finite"),
        # the parser's own errors, named
        (b"hello world", ValueError, "not a valid multilabel svmlight file: could"),
        (b"0 1000000000000:1", ValueError, "not a valid multilabel svmlight file"),
    ],
)
def test_svmlight_malformed(line, error, match):
    with pytest.raises(error, match=match):
        load_svmlight_multilabel(io.BytesIO(line + b"\n"))


def test_svmlight_text_file_and_path_in_messages(tmp_path):
    with pytest.raises(TypeError, match="reads bytes; open the file in binary"):
        load_svmlight_multilabel(io.StringIO("0 1:1\n"))
    path = tmp_path / "bad.svm"
    path.write_bytes(b"hello\n")
    with pytest.raises(ValueError, match="bad.svm is not a valid multilabel svmlight"):
        load_svmlight_multilabel(path)
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match="bad.svm is not a valid multilabel"):
            load_svmlight_multilabel(f)
    # argument errors name this function, and come before the file's
    match = "The 'zero_based' parameter of load_svmlight_multilabel must be"
    for zero_based in ("yes", 2):
        with pytest.raises(ValueError, match=match):
            load_svmlight_multilabel(path, zero_based=zero_based)
    with pytest.raises(TypeError, match="n_labels must be an int"):
        load_svmlight_multilabel(path, n_labels=2.5)
    # and a file load_svmlight_multilabel would refuse is not written
    with pytest.raises(ValueError, match="which load_svmlight_multilabel refuses"):
        dump_svmlight_multilabel(np.full((1, 1), 1e39), np.ones((1, 1)), path)


@pytest.mark.parametrize("dump", [dump_xc_repository, dump_svmlight_multilabel])
def test_dumped_labels_are_0s_and_1s_before_float32(dump):
    # cast to float32 first, 0.99999999 was written as a label and 1e-50
    # dropped, where 0.5 was refused
    # sparse ints: duplicates summed in float64, not wrapped (256 uint8 ones)
    wrapped = sp.coo_matrix((np.ones(256, np.uint8), ([0] * 256, [0] * 256)), (1, 1))
    with pytest.raises(ValueError, match="label-indicator matrix of 0s and 1s"):
        dump(np.array([[1.0]]), wrapped, io.BytesIO())
    for values in ([2**53 + 1, -(2**53) + 1], [2**53 + 1, -(2**53)]):  # 2, 1
        huge = sp.coo_matrix((np.array(values), ([0, 0], [0, 0])), (1, 1))
        with pytest.raises(ValueError, match="label-indicator matrix of 0s and 1s"):
            dump(np.array([[1.0]]), huge, io.BytesIO())
    # bool duplicates are an OR, as scipy and check_array read them
    ored = sp.coo_matrix((np.ones(2, bool), ([0, 0], [1, 1])), (1, 2))
    text, expected = io.BytesIO(), io.BytesIO()
    dump(np.array([[1.0]]), ored, text)
    dump(np.array([[1.0]]), np.array([[0, 1]]), expected)
    assert text.getvalue() == expected.getvalue()
    for Y in (
        np.array([[2, 0]], dtype=np.int8),
        np.array([[1, 0]], dtype=np.float16) + np.float16(2**-10),
        [[0.99999999, 0.0]],
        [[1e-50, 1.0]],
        [[1.0, 1e-46]],
        [[0.5, 1.0]],
        [["0.99999999", "0"]],
    ):
        with pytest.raises(ValueError, match="label-indicator matrix of 0s and 1s"):
            dump(np.array([[1.0]]), np.array(Y), io.BytesIO())
    with pytest.raises(ValueError, match="could not convert string to float"):
        dump(np.array([[1.0]]), np.array([["a", "1"]]), io.BytesIO())
    for Y in (
        np.array([[True, False]]),
        np.array([[1, 0]], dtype=np.int64),
        sp.csr_matrix([[1.0, 0.0]]),
        np.array([[1, 0]], dtype=object),
        # as before the check: float16, and numeric strings
        np.array([[1, 0]], dtype=np.float16),
        np.array([[1, 0]], dtype=np.uint8),
        np.array([["1", "0"]]),
        [["1", "0"]],
        [[True, "0"]],
    ):
        text, expected = io.BytesIO(), io.BytesIO()
        dump(np.array([[1.0]]), Y, text)
        dump(np.array([[1.0]]), np.array([[1.0, 0.0]]), expected)
        assert text.getvalue() == expected.getvalue()


@pytest.mark.parametrize("dump", [dump_xc_repository, dump_svmlight_multilabel])
def test_dumped_labels_of_categorical_columns(dump):
    # object columns of strings beside numbers: scipy's "does not support
    # dtype object" once Y was checked in its own dtype
    pd = pytest.importorskip("pandas")
    X = np.array([[1.0], [2.0]])
    Y = pd.DataFrame({"a": pd.Categorical(["1", "0"]), "b": [1, 1]})
    text, expected = io.BytesIO(), io.BytesIO()
    dump(X, Y, text)
    dump(X, np.array([[1, 1], [0, 1]]), expected)
    assert text.getvalue() == expected.getvalue()
    with pytest.raises(ValueError, match="0s and 1s"):
        dump(X, Y.assign(a=pd.Categorical(["0.5", "0"])), io.BytesIO())


def test_svmlight_dumps_no_samples_or_no_features(tmp_path):
    match = "The 'zero_based' parameter of dump_svmlight_multilabel must be"
    for n_samples in (1, 0):  # checked whatever the data
        with pytest.raises(ValueError, match=match):
            dump_svmlight_multilabel(
                np.zeros((n_samples, 2)), np.zeros((n_samples, 2)), io.BytesIO(), "yes"
            )
    # scikit-learn's dump_svmlight_file refuses both shapes
    for n_samples, n_features in [(0, 3), (2, 0), (0, 0)]:
        buffer = io.BytesIO()
        Y = np.eye(2)[:n_samples]
        dump_svmlight_multilabel(np.zeros((n_samples, n_features)), Y, buffer)
        buffer.seek(0)
        X, Y_back = load_svmlight_multilabel(buffer, n_features=n_features, n_labels=2)
        assert X.shape == (n_samples, n_features) and X.nnz == 0
        np.testing.assert_array_equal(Y_back.toarray(), Y)
    # no label columns: it failed inside scikit-learn ("0 feature(s)"), after
    # emptying the file at the path
    path = tmp_path / "train.svm"
    path.write_bytes(b"0 0:1\n")
    X = np.eye(2)
    dump_svmlight_multilabel(X, np.zeros((2, 0)), path)
    X_back, Y_back = load_svmlight_multilabel(path, n_labels=0)
    np.testing.assert_array_equal(X_back.toarray(), X)
    assert Y_back.shape == (2, 0)
    # a text-mode file object: io's "string argument expected, got 'bytes'"
    with pytest.raises(TypeError, match="writes bytes; open the file in binary"):
        dump_svmlight_multilabel(X, np.eye(2), io.StringIO())
    # check_array's bare "Input contains NaN." named neither X nor Y
    for dump in (dump_svmlight_multilabel, dump_xc_repository):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            dump(np.array([[np.nan]]), np.ones((1, 1)), io.BytesIO())


def test_svmlight_warns_about_blank_samples():
    X, Y = _random_dataset(n_samples=10, seed=3)
    f = io.BytesIO()
    with pytest.warns(UserWarning, match="1 samples .first: 2. have neither"):
        dump_svmlight_multilabel(X, Y, f)
    f.seek(0)
    X2, Y2 = load_svmlight_multilabel(f, n_features=X.shape[1], n_labels=Y.shape[1])
    assert X2.shape[0] == 9  # the blank sample is lost, as documented


def test_make_extreme_classification_multiclass():
    from sklearn_mach.datasets import make_extreme_classification

    X, y = make_extreme_classification(
        n_samples=20_000, n_classes=1000, n_features=5000, random_state=0
    )
    assert X.shape == (20_000, 5000) and sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert y.shape == (20_000,) and y.min() >= 0 and y.max() < 1000
    # Power law: class 0 is far more frequent than class 500.
    counts = np.bincount(y, minlength=1000)
    assert counts[0] > 20 * max(1, counts[500])
    # Every sample holds 4 informative + 4 noise feature draws.
    np.testing.assert_allclose(np.asarray(X.sum(axis=1)).ravel(), 8)
    # Deterministic under random_state.
    X2, y2 = make_extreme_classification(
        n_samples=20_000, n_classes=1000, n_features=5000, random_state=0
    )
    np.testing.assert_array_equal(y, y2)
    assert (X != X2).nnz == 0


def test_make_extreme_classification_is_learnable():
    from sklearn.linear_model import LogisticRegression

    from sklearn_mach.datasets import make_extreme_classification

    X, y = make_extreme_classification(
        n_samples=3000, n_classes=20, n_features=500, power=0.5, random_state=0
    )
    clf = LogisticRegression(max_iter=300).fit(X[:2000], y[:2000])
    assert clf.score(X[2000:], y[2000:]) > 0.8


def test_make_extreme_classification_multilabel():
    from sklearn_mach.datasets import make_extreme_classification

    X, Y = make_extreme_classification(
        n_samples=500,
        n_classes=50,
        n_features=300,
        n_labels=3,
        multilabel=True,
        random_state=0,
    )
    assert Y.shape == (500, 50)
    np.testing.assert_array_equal(np.diff(Y.indptr), 3)  # 3 distinct labels each
    np.testing.assert_allclose(np.asarray(X.sum(axis=1)).ravel(), 3 * 4 + 4)


@pytest.mark.parametrize(
    "n_classes, n_labels, power",
    [(100, 20, 2.0), (10, 10, 1.0), (5, 3, 2000.0), (50, 10, 20.0)],  # steep
)
def test_make_extreme_classification_multilabel_rows_are_distinct(
    n_classes, n_labels, power
):
    # Frequent classes used to leave repeats after the redraw rounds, summed
    # into counts above 1 and rows with fewer labels.
    from sklearn_mach.datasets import make_extreme_classification

    X, Y = make_extreme_classification(
        n_samples=300,
        n_classes=n_classes,
        n_features=200,
        n_labels=n_labels,
        multilabel=True,
        power=power,
        random_state=0,
    )
    np.testing.assert_array_equal(np.diff(Y.indptr), n_labels)
    np.testing.assert_array_equal(Y.data, 1)
    if power >= 20:  # the rarest class has ~(K / 10) ** -20 the chance of the 10th
        assert Y[:, -1].nnz == 0
    if power > 100:  # no mass left in float64: the most probable classes
        np.testing.assert_array_equal(
            Y.indices.reshape(-1, n_labels), [[0, 1, 2]] * 300
        )


def test_make_extreme_classification_draws_without_replacement():
    # Two labels of 4 classes: the set {a, b} has probability
    # p_a p_b / (1 - p_a) + p_b p_a / (1 - p_b) under sampling without
    # replacement from the power law p_k ~ 1 / (k + 1).
    from itertools import combinations

    from sklearn_mach.datasets import make_extreme_classification

    n = 40_000
    _, Y = make_extreme_classification(
        n_samples=n,
        n_classes=4,
        n_features=50,
        n_labels=2,
        multilabel=True,
        random_state=0,
    )
    p = 1 / np.arange(1, 5)
    p /= p.sum()
    pairs = np.sort(Y.indices.reshape(n, 2), axis=1)
    for a, b in combinations(range(4), 2):
        expected = p[a] * p[b] * (1 / (1 - p[a]) + 1 / (1 - p[b]))
        observed = np.mean((pairs[:, 0] == a) & (pairs[:, 1] == b))
        # 5 standard errors of a proportion from n samples
        assert abs(observed - expected) < 5 * np.sqrt(expected * (1 - expected) / n)


def test_make_extreme_classification_takes_true_as_one():
    # True passes the Integral checks, as in scikit-learn, and failed in numpy
    from sklearn_mach.datasets import make_extreme_classification

    X, y = make_extreme_classification(
        n_samples=True, n_classes=3, n_features=20, random_state=0
    )
    assert X.shape == (1, 20) and y.shape == (1,)


def test_make_extreme_classification_sizes_within_int64():
    # numpy's "high is out of bounds for int64" before
    from sklearn_mach.datasets import make_extreme_classification

    with pytest.raises(ValueError, match="The 'n_features' parameter"):
        make_extreme_classification(5, 3, 2**64)
    X, _ = make_extreme_classification(5, 3, 2**63 - 1, random_state=0)
    assert X.shape == (5, 2**63 - 1)


def test_make_extreme_classification_power_beyond_float64():
    # an int power of 2**1100 passed the check, then Python's OverflowError
    from sklearn_mach.datasets import make_extreme_classification

    steep = make_extreme_classification(20, 10, 5, power=2**1100, random_state=0)
    as_inf = make_extreme_classification(20, 10, 5, power=1e300, random_state=0)
    np.testing.assert_array_equal(steep[1], as_inf[1])
    assert (steep[1] == 0).all()  # class 0 alone


def test_make_extreme_classification_more_labels_than_classes():
    from sklearn_mach.datasets import make_extreme_classification

    with pytest.raises(ValueError, match="n_labels=5 .* n_classes=3"):
        make_extreme_classification(
            n_samples=10, n_classes=3, n_features=20, n_labels=5, multilabel=True
        )
    # ignored without multilabel, as documented
    _, y = make_extreme_classification(
        n_samples=10, n_classes=3, n_features=20, n_labels=5, random_state=0
    )
    assert y.shape == (10,)


def test_get_data_home_precedence(tmp_path, monkeypatch):
    from sklearn_mach.datasets import get_data_home

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKLEARN_MACH_DATA", raising=False)
    # Default: ~/sklearn_mach_data, created.
    home = get_data_home()
    assert home == tmp_path / "home" / "sklearn_mach_data"
    assert isinstance(home, pathlib.Path) and home.is_dir()
    # An empty variable counts as unset.
    monkeypatch.setenv("SKLEARN_MACH_DATA", "")
    assert get_data_home() == home
    # The environment variable, created with its parents.
    monkeypatch.setenv("SKLEARN_MACH_DATA", str(tmp_path / "env" / "data"))
    assert get_data_home() == tmp_path / "env" / "data"
    assert (tmp_path / "env" / "data").is_dir()
    # The argument wins over both, as a str or a path, with ~ expanded.
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home(str(tmp_path / "arg2")) == tmp_path / "arg2"
    assert get_data_home("~/xc") == tmp_path / "home" / "xc"
    assert (tmp_path / "home" / "xc").is_dir()
    # an unknown ~user is left as it is (pathlib raised RuntimeError)
    monkeypatch.chdir(tmp_path)
    unknown = "~no_such_user_of_sklearn_mach/data"
    assert get_data_home(unknown) == pathlib.Path(unknown)
    assert (tmp_path / unknown).is_dir()


def test_get_data_home_keeps_existing_files(tmp_path):
    from sklearn_mach.datasets import get_data_home

    (tmp_path / "bibtex").mkdir()
    (tmp_path / "bibtex" / "X_train.npz").write_bytes(b"x")
    assert get_data_home(tmp_path) == tmp_path
    assert (tmp_path / "bibtex" / "X_train.npz").read_bytes() == b"x"


def test_get_data_home_validates_its_argument():
    from sklearn_mach.datasets import get_data_home

    with pytest.raises(ValueError, match="data_home"):
        get_data_home(42)


def test_dump_xc_repository_to_text_file_wrappers(tmp_path):
    # temporary-file and codecs wrappers are text files without being
    # io.TextIOBase: they were sent bytes
    import codecs
    import tempfile

    X, Y = np.array([[0, 0.5]]), np.array([[1]])
    with tempfile.NamedTemporaryFile("w+", dir=tmp_path) as f:
        dump_xc_repository(X, Y, f)
        f.seek(0)
        assert f.read() == "1 2 1\n0 1:0.5\n"
    with tempfile.SpooledTemporaryFile(mode="w+") as f:
        dump_xc_repository(X, Y, f)
        f.seek(0)
        assert f.read() == "1 2 1\n0 1:0.5\n"
    raw = io.BytesIO()
    dump_xc_repository(X, Y, codecs.getwriter("ascii")(raw))
    assert raw.getvalue() == b"1 2 1\n0 1:0.5\n"
    with codecs.open(tmp_path / "train.txt", "w", "utf-8") as f:  # mode "wb"
        dump_xc_repository(X, Y, f)
    assert (tmp_path / "train.txt").read_bytes() == b"1 2 1\n0 1:0.5\n"

    # anything else is sent bytes, as before: an empty str written to probe
    # it broke duck-typed binary sinks
    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, data):
            self.parts.append(data)
            return len(data)

    sink = Sink()
    dump_xc_repository(X, Y, sink)
    assert sink.parts == [b"1 2 1\n", b"0 1:0.5\n"]
    with tempfile.NamedTemporaryFile(dir=tmp_path) as f:  # "w+b"
        dump_xc_repository(X, Y, f)
        f.seek(0)
        assert f.read() == b"1 2 1\n0 1:0.5\n"


def test_xc_repeated_features_sum_before_the_float32_check():
    # each value was checked, then the float32 sum overflowed to inf
    with pytest.raises(ValueError, match="Line 2: feature value 6e[+]38 is outside"):
        load_xc_repository(io.StringIO("1 1 1\n0 0:3e38 0:3e38\n"))
    X, _ = load_xc_repository(io.StringIO("1 1 1\n0 0:3e38 0:-3e38 0:1\n"))
    assert X.data.tolist() == [1.0]
    # the file's inf is named, not the nan of its sum
    with pytest.raises(ValueError, match="Line 3: feature value inf is not finite"):
        load_xc_repository(io.StringIO("2 1 1\n0 0:1\n0 0:1e400 0:-1e400\n"))


def test_xc_feature_indices_past_2_53_are_exact():
    # indices were parsed as float64: 2**53 + 1 landed in column 2**53
    X, _ = load_xc_repository(
        io.StringIO("1 9007199254740995 1\n0 9007199254740993:1\n")
    )
    assert X.indices.tolist() == [9007199254740993]
    for text, index in [
        ("1 9007199254740993 1\n0 9007199254740993:1\n", 9007199254740993),
        ("1 9223372036854775807 1\n0 9223372036854775807:1\n", 2**63 - 1),
        ("1 5 1\n0 1:1 99999999999999999999999:1\n", 99999999999999999999999),
    ]:
        with pytest.raises(ValueError, match=f"Line 2: feature index {index} is out"):
            load_xc_repository(io.StringIO(text))
    X, _ = load_xc_repository(io.StringIO("1 9223372036854775807 1\n0 2:1\n"))
    assert X.indices.tolist() == [2]


def test_counts_past_int64_are_refused():
    text = "1 2 2\n0 0:1\n"
    for call in [
        lambda: load_xc_repository(io.StringIO(text), n_labels=2**64),
        lambda: load_xc_repository(io.StringIO(text), n_features=2**64),
        lambda: load_svmlight_multilabel(io.BytesIO(b"0 0:1\n"), n_labels=2**64),
        lambda: load_svmlight_multilabel(io.BytesIO(b"0 0:1\n"), n_features=2**64),
    ]:
        with pytest.raises(ValueError, match="must be at most 2[*][*]63 - 1"):
            call()


def test_svmlight_writes_float64_values_as_scikit_learn_does():
    # "%.16g" of the float64 value (16 digits, as scikit-learn); read as
    # float32 it can round to the float32 next to X.astype(float32)'s
    # (documented); float32 X round-trips exactly
    x = 3.5313209562839912e19
    for X, expected in [
        (sp.csr_matrix([[x]]), np.nextafter(np.float32(x), np.float32(0))),
        (sp.csr_matrix([[x]], dtype=np.float32), np.float32(x)),
    ]:
        buffer = io.BytesIO()
        dump_svmlight_multilabel(X, sp.csr_matrix([[1.0]]), buffer)
        buffer.seek(0)
        assert load_svmlight_multilabel(buffer)[0].data[0] == expected
    buffer = io.BytesIO()
    dump_svmlight_multilabel(
        sp.csr_matrix([[0.1, 1e-50]]), sp.csr_matrix([[1.0]]), buffer
    )
    assert buffer.getvalue() == b"0 0:0.1 1:1e-50\n"


def test_damaged_compressed_files_are_value_errors(tmp_path):
    import gzip

    for text, load in [
        (b"1 2 2\n0 0:1\n", load_xc_repository),
        (b"0 0:1\n1 1:2\n", load_svmlight_multilabel),
    ]:
        (tmp_path / "cut.gz").write_bytes(gzip.compress(text)[:-6])  # its trailer
        (tmp_path / "plain.gz").write_bytes(text)
        for name in ("cut.gz", "plain.gz"):
            with pytest.raises(ValueError, match=f"{name}: damaged or truncated data"):
                load(tmp_path / name)
        (tmp_path / "good.gz").write_bytes(gzip.compress(text))
        assert load(tmp_path / "good.gz")[0].shape == (
            1 + (load is load_svmlight_multilabel),
            2,
        )
    with pytest.raises(FileNotFoundError):  # I/O errors pass as they are
        load_xc_repository(tmp_path / "missing.gz")
    # gzip streams however wrapped, and zip members, too
    svm = b"0 0:1 1:2\n1 1:2\n" * 2000
    for stream in (
        io.BufferedReader(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(svm)[:-6]))),
        _damaged_zip_member(svm),
    ):
        with pytest.raises(ValueError, match="damaged or truncated data"):
            load_svmlight_multilabel(stream)
    # gzip file objects too, named once ("The file": a GzipFile over a
    # BytesIO has the name "")
    for text, load in [
        (b"1 2 2\n0 0:1\n", load_xc_repository),
        (b"0 0:1\n1 1:2\n", load_svmlight_multilabel),
    ]:
        f = gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(text)[:-6]))
        with pytest.raises(ValueError) as error:
            load(f)
        assert str(error.value).startswith("The file: damaged or truncated data (")


def _damaged_zip_member(data):
    """A zip member whose compressed bytes are damaged."""
    import zipfile

    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.txt", data)
    damaged = bytearray(raw.getvalue())
    damaged[damaged.find(b"train.txt") + len(b"train.txt")] |= 0b110  # reserved
    return zipfile.ZipFile(io.BytesIO(bytes(damaged))).open("train.txt")


def test_stream_errors_of_the_callers_own_pass_as_they_are():
    # an EOFError from a plain stream (a dropped connection) is not damaged
    # compressed data
    for load, text in [
        (load_xc_repository, b"100 2 2\n" + b"0 0:1 1:2\n" * 100),
        (load_svmlight_multilabel, b"0 0:1 1:2\n1 1:2\n" * 50),
    ]:
        with pytest.raises(EOFError, match="connection closed by peer"):
            load(io.BufferedReader(DroppedStream(text[:8])))
    # tarfile's stream mode turns a cut gzip into ReadError
    import tarfile

    svm = b"0 0:1 1:2\n1 1:2\n" * 20000
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.svm")
        info.size = len(svm)
        archive.addfile(info, io.BytesIO(svm))
    cut = raw.getvalue()[: len(raw.getvalue()) // 2]
    stream = tarfile.open(fileobj=io.BytesIO(cut), mode="r|gz")
    with pytest.raises(ValueError, match="damaged or truncated data"):
        load_svmlight_multilabel(stream.extractfile(stream.next()))


def test_io_errors_of_plain_streams_pass_as_they_are():
    # a socket's timeout is an OSError without an errno: it was called
    # "damaged compressed data"
    import socket

    for load, text in [
        (load_xc_repository, b"1 2 2\n"),
        (load_svmlight_multilabel, b"0 0:1\n"),
    ]:
        a, b = socket.socketpair()
        with a, b:
            b.sendall(text)
            a.settimeout(0.05)
            with a.makefile("rb") as f, pytest.raises(TimeoutError):
                load(f)


class _RecordingReader(io.BytesIO):
    """A binary file object that records the sizes it is asked to read."""

    def __init__(self, data):
        super().__init__(data)
        self.sizes = []

    def read(self, size=-1):
        self.sizes.append(size)
        return super().read(size)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_xc_reads_in_pieces_with_the_same_result(monkeypatch, chunk):
    # the whole file was read as one string and split into Python lines:
    # 10 times a short-lined file's size in memory
    from sklearn_mach.datasets import _loaders

    X, Y = _random_dataset(n_samples=30, seed=2)
    text = io.StringIO()
    dump_xc_repository(X, Y, text)
    text = text.getvalue() + "\n \n"  # trailing blank lines
    monkeypatch.setattr(_loaders, "_READ_CHUNK", chunk, raising=False)
    for source in (
        _RecordingReader(text.encode()),
        _RecordingReader(text.replace("\n", "\r\n").encode()),
        io.StringIO(text),
    ):
        X2, Y2 = load_xc_repository(source)
        _assert_same_csr(X2, X)
        _assert_same_csr(Y2, Y)
        if isinstance(source, _RecordingReader):
            assert set(source.sizes) == {chunk}
    # messages count lines and bytes over the whole file
    lines = text.split("\n")
    for number, damaged, match in [
        (20, "1 0:x", "Line 20 is malformed"),
        (25, "0 39:1 40:1", "Line 25: feature index 40 is out of range"),
        (31, "9", "Line 31: label index 9 is out of range"),
    ]:
        source = "\n".join(lines[: number - 1] + [damaged] + lines[number:])
        with pytest.raises(ValueError, match=match):
            load_xc_repository(io.StringIO(source))
    offset = len("\n".join(lines[:20])) + 2
    binary = text[:offset].encode() + b"\xff" + text[offset + 1 :].encode()
    with pytest.raises(ValueError, match=f"ASCII text [(]byte {offset}[)]"):
        load_xc_repository(io.BytesIO(binary))
    for source, match in [
        ("\n".join(lines[:20]), "declares 30 samples but the file has 19"),
        (text + "0 1:1\n", "declares 30 samples but the file has 33"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_xc_repository(io.StringIO(source))


def test_xc_numbers_numpy_stops_at_are_refused(monkeypatch):
    # numpy before 2.4 stops at what it cannot parse, with a
    # DeprecationWarning (made an error in a warnings.catch_warnings block,
    # which swaps the process's filters): its short result is refused
    shipped = np.fromstring

    def stops_early(text, dtype, sep):
        return shipped(text, dtype=dtype, sep=sep)[:-1]

    monkeypatch.setattr(np, "fromstring", stops_early)
    for text, match in [
        ("1 3 3\n0,1 2:1\n", "could not be parsed: 1 of 2 read"),
        ("1 3 3\n 0:1 2:1\n", "could not be parsed: 3 of 4 read"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_xc_repository(io.StringIO(text))
