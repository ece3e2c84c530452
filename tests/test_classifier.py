import collections
import copy
import functools
import io
import math
import os
import pickle
import re
import threading
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

import sklearn_mach._classifier
import sklearn_mach._decoding
from sklearn_mach import MACHClassifier, MACHNetwork, _network, _training
from sklearn_mach._utils import forget_cached

from .modules import (
    DenseOnlyNetwork,
    LinearNetwork,
    NegatedNetwork,
    NoMetaFactory,
    NoMetaNetwork,
    RecordingNetwork,
    WideNoMetaFactory,
    WorkerRecordingNetwork,
)
from .tracing import traced_peak

FAST = dict(n_buckets=8, n_repetitions=3, hidden_layer_sizes=(32,), max_epochs=15)


@pytest.fixture(scope="module")
def multiclass():
    X, y = make_classification(
        n_samples=400,
        n_features=20,
        n_informative=10,
        n_classes=6,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=0,
    )
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(
        n_samples=300, n_features=20, n_classes=12, n_labels=2, random_state=0
    )
    return X.astype(np.float32), Y


def test_score_is_the_accuracy_of_predict(multiclass, multilabel):
    # multilabel: subset accuracy (every label of a sample right)
    for X, y in [multiclass, multilabel]:
        clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
        weights = np.arange(len(X)) % 3
        for w in [None, weights]:
            assert clf.score(X, y, sample_weight=w) == accuracy_score(
                y, clf.predict(X), sample_weight=w
            )


def test_multiclass_fit_predict(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (400, 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    assert clf.decision_function(X).shape == (400, 6)
    assert len(clf.networks_) == 3 and len(clf.histories_) == 3
    assert clf.label_hasher_.buckets_.shape == (3, 6)


def test_string_labels(multiclass):
    X, y = multiclass
    names = np.array(["apple", "banana", "cherry", "date", "elder", "fig"])[y]
    clf = MACHClassifier(random_state=0, **FAST).fit(X, names)
    assert set(clf.classes_) == set(names)
    assert clf.predict(X).dtype == names.dtype
    assert clf.score(X, names) > 0.9


@pytest.mark.parametrize("sparse", [False, True])
def test_float64_of_either_byte_order_trains_float64_networks(sparse):
    # check_array kept native float64 but took big-endian float64 to the
    # first listed dtype, float32: byte order changed the precision.
    X, y = make_classification(n_samples=120, n_features=12, random_state=0)
    X[X < 0] = 0
    big = X.astype(">f8")
    if sparse:
        X, big = sp.csr_matrix(X), sp.csr_matrix(X)
        big.data = big.data.astype(">f8")  # scipy refuses to build one
    params = dict(n_buckets=4, n_repetitions=2, hidden_layer_sizes=(8,), max_epochs=2)
    native = MACHClassifier(**params, random_state=0).fit(X, y)
    swapped = MACHClassifier(**params, random_state=0).fit(big, y)
    for net in swapped.networks_:
        assert all(p.dtype == torch.float64 for p in net.parameters())
    np.testing.assert_array_equal(native.predict_proba(X), swapped.predict_proba(big))


def test_float64_data_frames_train_float64_networks():
    # pandas' nullable Float64 columns are float64 data, as for
    # MLPClassifier; check_array alone took them to float32
    pd = pytest.importorskip("pandas")
    X, y = make_classification(n_samples=120, n_features=12, random_state=0)
    params = dict(n_buckets=4, n_repetitions=2, hidden_layer_sizes=(8,), max_epochs=2)
    native = MACHClassifier(**params, random_state=0).fit(X, y)
    for columns, dtype in [
        ("Float64", torch.float64),
        ("float64", torch.float64),
        ({0: "float32", 1: "Float64"}, torch.float64),  # numpy's result type
        (pd.SparseDtype("float64", 0.0), torch.float64),
        ("Float32", torch.float32),
        ("Int64", torch.float32),
    ]:
        values = X.round() if columns == "Int64" else X
        frame = pd.DataFrame(values).astype(columns)
        clf = MACHClassifier(**params, random_state=0).fit(frame, y)
        assert {p.dtype for p in clf.networks_[0].parameters()} == {dtype}
        if columns in ("Float64", "float64"):  # the same numbers, dense
            np.testing.assert_array_equal(
                native.predict_proba(X), clf.predict_proba(frame)
            )


def test_lists_train_as_their_arrays():
    # a list of floats trained float32 (check_array's first dtype), and one
    # finite value beyond float32's range was refused as "infinity"
    X, y = make_classification(n_samples=120, n_features=12, random_state=0)
    X[0, 0] = 1e39
    params = dict(n_buckets=4, n_repetitions=2, hidden_layer_sizes=(8,), max_epochs=2)
    native = MACHClassifier(**params, random_state=0).fit(X, y)
    for rows, dtype in [
        (X.tolist(), torch.float64),
        (tuple(map(tuple, X)), torch.float64),
        (torch.from_numpy(X), torch.float64),
        (np.sign(X).astype(int).tolist(), torch.float32),
    ]:
        clf = MACHClassifier(**params, random_state=0).fit(rows, y)
        assert {p.dtype for p in clf.networks_[0].parameters()} == {dtype}
        if dtype == torch.float64:
            np.testing.assert_array_equal(
                native.predict_proba(X), clf.predict_proba(rows)
            )


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_fit_under_the_callers_inference_mode(multiclass, n_jobs):
    # torch.inference_mode() around fit raised torch's "element 0 of tensors
    # does not require grad" (or "Inference tensors cannot be saved for
    # backward" with threads); torch.no_grad() already worked.
    X, y = multiclass
    params = dict(FAST, n_jobs=n_jobs, random_state=0)
    reference = MACHClassifier(**params).fit(X, y).predict_proba(X)
    for mode in (torch.inference_mode, torch.no_grad):
        with mode():
            clf = MACHClassifier(**params).fit(X, y)
            np.testing.assert_array_equal(clf.predict_proba(X), reference)
            clf.partial_fit(X, y)  # continues with gradients too
        assert clf.n_iter_ == 1 and clf.score(X, y) > 0.5


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
def test_aggregations(multiclass, aggregation):
    X, y = multiclass
    clf = MACHClassifier(aggregation=aggregation, random_state=0, **FAST).fit(X, y)
    scores = clf.decision_function(X)
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(scores.argmax(axis=1), proba.argmax(axis=1))
    assert clf.score(X, y) > 0.9


def test_aggregation_formulas(multiclass):
    X, y = multiclass
    clf = MACHClassifier(aggregation="mean", random_state=0, **FAST).fit(X, y)
    mean = clf.decision_function(X[:5])
    # Recompute mean_r P_r(h_r(k)) by hand from the networks.
    with torch.no_grad():
        by_hand = np.mean(
            [
                torch.softmax(net(torch.from_numpy(X[:5])), dim=1).numpy()[
                    :, clf.label_hasher_.buckets_[r]
                ]
                for r, net in enumerate(clf.networks_)
            ],
            axis=0,
        )
    np.testing.assert_allclose(mean, by_hand, rtol=1e-5)
    B = clf.n_buckets
    unbiased = clf.set_params(aggregation="unbiased").decision_function(X[:5])
    np.testing.assert_allclose(
        unbiased, B / (B - 1) * (mean - 1 / B), rtol=1e-5, atol=1e-7
    )
    logit_sum = clf.set_params(aggregation="logit_sum").decision_function(X[:5])
    with torch.no_grad():
        by_hand = sum(
            torch.log_softmax(net(torch.from_numpy(X[:5])), dim=1).numpy()[
                :, clf.label_hasher_.buckets_[r]
            ]
            for r, net in enumerate(clf.networks_)
        )
    np.testing.assert_allclose(logit_sum, by_hand, rtol=1e-5, atol=1e-5)


def test_predict_top_k_matches_decision_function(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    labels, scores = clf.predict_top_k(X[:50], k=3)
    full = clf.decision_function(X[:50])
    expected = np.argsort(-full, axis=1, kind="stable")[:, :3]
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], clf.predict(X[:50]))
    with pytest.raises(ValueError, match="The .k. parameter"):
        clf.predict_top_k(X, k=0)


@pytest.mark.parametrize("sparse_y", [False, True])
def test_multilabel(multilabel, sparse_y):
    X, Y = multilabel
    Y_fit = sp.csr_matrix(Y) if sparse_y else Y
    clf = MACHClassifier(random_state=0, **dict(FAST, n_buckets=16)).fit(X, Y_fit)
    np.testing.assert_array_equal(clf.classes_, np.arange(12))
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 12) and proba.min() >= 0 and proba.max() <= 1
    pred = clf.predict(X)
    assert sp.issparse(pred) == sparse_y
    pred = pred.toarray() if sparse_y else pred
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    # Better than predicting every label absent.
    assert (pred == Y).mean() > (Y == 0).mean() + 0.02


def test_sparse_bool_data_frames():
    # check_array keeps pandas' sparse bool columns bool, whatever dtype it
    # is asked for: fit failed with a KeyError, predict inside torch
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    dense = rng.rand(60, 3) > 0.5
    X = pd.DataFrame(dense).astype(pd.SparseDtype(bool, False))
    y = np.arange(60) % 3
    params = dict(n_buckets=4, n_repetitions=2, max_epochs=2, random_state=0)
    clf = MACHClassifier(**params).fit(X, y)
    expected = MACHClassifier(**params).fit(sp.csr_matrix(dense, dtype=np.float32), y)
    np.testing.assert_array_equal(clf.predict_proba(X), expected.predict_proba(dense))
    clf.partial_fit(X, y)
    wide = MACHClassifier(**params).fit(dense.astype(np.float64), y)
    wide.partial_fit(X, y)  # cast to the model's float64
    assert wide.predict_proba(X).shape == (60, 3)


def test_global_pandas_output_leaves_training_alone(multilabel):
    # transform_output sets what transformers return to the caller, not
    # what the estimator's own hasher gives it
    pd = pytest.importorskip("pandas")
    X, Y = multilabel
    params = dict(FAST, max_epochs=2, random_state=0)
    expected = MACHClassifier(**params).fit(X, Y).partial_fit(X, Y)
    with sklearn.config_context(transform_output="pandas"):
        clf = MACHClassifier(**params).fit(X, Y).partial_fit(X, Y)
        np.testing.assert_array_equal(clf.predict_proba(X), expected.predict_proba(X))
        assert isinstance(clf.label_hasher_.transform(Y), pd.DataFrame)
    # nor its own set_output
    clf.label_hasher_.set_output(transform="pandas")
    clf.partial_fit(X, Y)
    np.testing.assert_array_equal(
        clf.predict_proba(X), expected.partial_fit(X, Y).predict_proba(X)
    )


def test_sparse_input_reaches_the_network_as_csr(multiclass):
    X, y = multiclass
    X_sparse = sp.csr_array(X)
    clf = MACHClassifier(module=RecordingNetwork, random_state=0, **FAST)
    RecordingNetwork.layouts.clear()
    clf.fit(X_sparse, y)
    assert set(RecordingNetwork.layouts) == {torch.sparse_csr}
    dense = MACHClassifier(random_state=0, **FAST).fit(X, y)
    sparse = MACHClassifier(random_state=0, **FAST).fit(X_sparse, y)
    np.testing.assert_allclose(
        dense.predict_proba(X), sparse.predict_proba(X_sparse), atol=1e-5
    )


def test_custom_module_gets_dense_batches(multiclass):
    X, y = multiclass
    DenseOnlyNetwork.batch_rows.clear()
    clf = MACHClassifier(module=DenseOnlyNetwork, batch_size=64, random_state=0, **FAST)
    clf.fit(sp.csr_matrix(X), y)
    assert max(DenseOnlyNetwork.batch_rows) <= 64  # densified per batch only
    assert clf.score(sp.csr_matrix(X), y) > 0.5


@pytest.mark.parametrize(
    "backend,n_jobs", [("threading", 2), ("loky", 2), ("sequential", 1)]
)
def test_same_model_whatever_the_backend(multiclass, backend, n_jobs):
    import joblib

    X, y = multiclass
    reference = MACHClassifier(random_state=7, **FAST).fit(X, y).predict_proba(X)
    with joblib.parallel_config(backend=backend):
        clf = MACHClassifier(n_jobs=n_jobs, random_state=7, **FAST).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference, rtol=1e-5, atol=1e-7)


def test_n_jobs_trains_in_threads_by_default(multiclass):
    # Without a joblib context, repetitions train in threads of this process
    # (a process backend would record nothing here: its workers' copies of
    # the class attribute stay in the workers).
    X, y = multiclass
    WorkerRecordingNetwork.workers.clear()
    threads = torch.get_num_threads()
    MACHClassifier(module=WorkerRecordingNetwork, n_jobs=2, random_state=0, **FAST).fit(
        X, y
    )
    workers = WorkerRecordingNetwork.workers
    assert {pid for pid, _ in workers} == {os.getpid()}
    assert threading.get_ident() not in {thread for _, thread in workers}
    assert torch.get_num_threads() == threads


def test_predictions_from_threads_leave_the_warning_filters_as_they_were():
    # every fit and prediction silenced warnings (torch's "sparse CSR is in
    # beta", scikit-learn's "more classes than half the samples") with
    # warnings.catch_warnings, which swaps the process's filters: calls
    # from several threads left filters behind
    from concurrent.futures import ThreadPoolExecutor

    X = sp.random(200, 300, density=0.05, format="csr", random_state=0)
    y = np.arange(200) % 150  # more classes than half the samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and neither warns
        clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
        clf.predict_proba(X)
    before = list(warnings.filters)
    calls = [clf.predict, clf.predict_proba, clf.decision_function]
    calls.append(functools.partial(clf.predict_top_k, k=3))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: calls[i % 4](X), range(80)))
    assert warnings.filters == before


def test_no_sparse_csr_warning_under_torch_warn_always():
    # torch.set_warn_always(True) makes torch warn at every CSR tensor,
    # not once: the library's batches gave 8 warnings in a small fit
    X = sp.random(60, 40, density=0.2, format="csr", random_state=0)
    shipped = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            clf = MACHClassifier(random_state=0, **FAST).fit(X, np.arange(60) % 40)
            clf.predict_proba(X)
    finally:
        torch.set_warn_always(shipped)


def test_no_sparse_invariants_warning_at_a_devices_first_csr_tensor(monkeypatch):
    # torch 2.11 and 2.12 warn, once a process, at the first sparse tensor
    # that "sparse invariant checks are implicitly disabled", although the
    # library passes check_invariants=False (pytorch issue 178274): seen at
    # a fit on CUDA.  Here torch is made to warn so at the first CSR tensor
    # of a process that has built none yet.
    built = torch.sparse_csr_tensor

    def warns_once(*args, **kwargs):
        if not warned:
            warned.append(1)
            warnings.warn(
                "Sparse invariant checks are implicitly disabled. Memory errors "
                "(e.g. SEGFAULT) will occur ...",
                UserWarning,
                stacklevel=2,
            )
        return built(*args, **kwargs)

    warned = []
    monkeypatch.setattr(torch, "sparse_csr_tensor", warns_once)
    monkeypatch.setattr(_network, "_CSR_DEVICES", set())
    X = sp.random(60, 40, density=0.2, format="csr", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = MACHClassifier(random_state=0, **FAST).fit(X, np.arange(60) % 40)
        clf.predict_proba(X)
    assert warned  # torch warned, and the library silenced it


def test_random_state_changes_the_model(multiclass):
    X, y = multiclass
    a = MACHClassifier(random_state=0, **FAST).fit(X, y).predict_proba(X)
    b = MACHClassifier(random_state=1, **FAST).fit(X, y).predict_proba(X)
    assert not np.allclose(a, b)


def test_pipeline_with_text():
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa"]
    rng = np.random.RandomState(0)
    y = rng.randint(len(words), size=300)
    docs = [f"{words[t]} {words[t]} {rng.choice(words)} filler text" for t in y]
    pipe = make_pipeline(TfidfVectorizer(), MACHClassifier(random_state=0, **FAST))
    pipe.fit(docs, y)
    assert pipe.score(docs, y) > 0.9


def test_grid_search(multiclass):
    X, y = multiclass
    grid = GridSearchCV(
        MACHClassifier(random_state=0, **FAST),
        {"n_buckets": [4, 8], "n_repetitions": [1, 2]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert set(grid.cv_results_["param_n_buckets"]) == {4, 8}
    assert grid.best_estimator_.score(X, y) > 0.8


def test_joblib_round_trip(multiclass, tmp_path):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    joblib.dump(clf, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(multiclass):
    X, y = multiclass
    with pytest.raises(ValueError, match="not available"):
        MACHClassifier(device="cuda", **FAST).fit(X, y)
    # A model whose device is CUDA (as after fitting on a GPU) still predicts
    # on a CPU-only machine.
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    expected = clf.predict(X)
    clf.set_params(device="cuda")
    with pytest.warns(UserWarning, match="using the CPU"):
        np.testing.assert_array_equal(clf.predict(X), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_predict_on_cpu(multiclass, tmp_path):
    X, y = multiclass
    clf = MACHClassifier(device="cuda", random_state=0, **FAST).fit(X, y)
    on_gpu = clf.predict_proba(X)
    assert all(
        p.device.type == "cpu" for net in clf.networks_ for p in net.parameters()
    )
    joblib.dump(clf, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib").set_params(device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(X), on_gpu, rtol=1e-4, atol=1e-6)


_BAD_INPUT_IDS = [
    "nan",
    "inf",
    "one-class",
    "strings",
    "no-samples",
    "n_buckets=1",
    "n_repetitions=0",
    "bad-device",
    "bad-aggregation",
    "continuous-y",
]


def _bad_inputs(X, y):
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    X_inf = X.copy()
    X_inf[1, 1] = np.inf
    return [
        ("NaN", dict(), X_nan, y),
        ("infinity", dict(), X_inf, y),
        ("at least 2 classes", dict(), X, np.zeros(len(y))),
        ("could not convert", dict(), np.array([["a", "b"]] * len(y)), y),
        ("0 sample", dict(), X[:0], y[:0]),
        ("n_buckets", dict(n_buckets=1), X, y),
        ("n_repetitions", dict(n_repetitions=0), X, y),
        ("device='tpu-42' is not a torch device", dict(device="tpu-42"), X, y),
        ("aggregation", dict(aggregation="median"), X, y),
        ("Unknown label type", dict(), X, np.linspace(0, 1, len(y))),
    ]


@pytest.mark.parametrize("case", range(10), ids=lambda i: _BAD_INPUT_IDS[i])
def test_bad_input_leaves_the_estimator_unfitted(multiclass, case):
    X, y = multiclass
    match, params, X_bad, y_bad = _bad_inputs(X, y)[case]
    clf = MACHClassifier(**dict(FAST, **params))
    with pytest.raises(ValueError, match=match):
        clf.fit(X_bad, y_bad)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    assert not hasattr(clf, "n_features_in_")


def test_non_finite_training_is_an_error(multiclass):
    # finite input near float32's largest value overflows in training: an
    # error, as MLPClassifier's, instead of a NaN model that predicts
    X, y = multiclass
    huge = X.copy()
    huge[0] = 3e38
    clf = MACHClassifier(random_state=0, **dict(FAST, max_epochs=2))
    with pytest.raises(ValueError, match="non-finite weights"):
        clf.fit(huge, y)
    assert not hasattr(clf, "networks_")
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    with pytest.raises(ValueError, match="non-finite weights"):
        clf.partial_fit(huge, y)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    # finite weights whose products with the data overflow: the fit
    # passed, and every prediction was NaN
    X64 = np.random.RandomState(0).standard_normal((20, 3)) * 1e200
    clf = MACHClassifier(
        n_buckets=4, hidden_layer_sizes=(), max_epochs=1, optimizer="sgd"
    )
    with pytest.raises(ValueError, match="non-finite outputs .* float64 arithmetic"):
        clf.fit(X64, np.arange(20) % 3)
    assert not hasattr(clf, "networks_")


def test_failed_refit_keeps_the_previous_model(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(np.ones((10, 3)), np.zeros(10))
    # classes, not the data, at fault: it said "the data contain only one class"
    with pytest.raises(ValueError, match="at least 2 classes, but classes holds one"):
        MACHClassifier(**FAST).partial_fit(X, np.zeros(len(y)), classes=[0])
    assert clf.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_parameters_changed_after_fit(multilabel, tmp_path):
    # set_params after fit changes the next fit, not the fitted model: its
    # predictions stay, and save and partial_fit, which need the fitted
    # networks' parameters, say which changed instead of writing a file
    # load refuses or failing deep inside
    X, Y = multilabel
    clf = MACHClassifier(random_state=0, **FAST).fit(X, Y)
    proba = clf.predict_proba(X)
    for change, name in [
        (dict(n_repetitions=2), "n_repetitions=2 (fitted: 3)"),
        (dict(n_buckets=16), "n_buckets=16 (fitted: 8)"),
        (dict(hidden_layer_sizes=(16,)), "hidden_layer_sizes=(16,)"),
        # a module the meta device cannot build (Linear takes no
        # n_features): saved, then refused by load
        (dict(module=torch.nn.Linear), "module=<class 'torch.nn.modules.linear"),
    ]:
        clf.set_params(**change)
        np.testing.assert_array_equal(clf.predict_proba(X), proba)
        for call in (
            lambda: clf.save(tmp_path / "model.skmach"),
            lambda: clf.partial_fit(X[:10], Y[:10]),
        ):
            with pytest.raises(ValueError, match=re.escape(name)):
                call()
        clf.set_params(module=None, **FAST)
    clf.set_params(lr=-1.0)
    with pytest.raises(ValueError, match="lr"):
        clf.save(tmp_path / "model.skmach")
    assert not (tmp_path / "model.skmach").exists()
    clf.set_params(lr="auto", max_epochs=2)
    with pytest.raises(ValueError, match=re.escape("max_epochs=2 (fitted: 15)")):
        clf.save(tmp_path / "model.skmach")
    clf.set_params(max_epochs=15).save(tmp_path / "model.skmach")
    np.testing.assert_array_equal(
        MACHClassifier.load(tmp_path / "model.skmach").predict_proba(X), proba
    )


def _refused(clf, X, y, path, match):
    """partial_fit and save both refuse ``clf`` (a ``match`` message), and
    save writes nothing."""
    for call in (lambda: clf.partial_fit(X, y), lambda: clf.save(path)):
        with pytest.raises(ValueError, match=re.escape(match)):
            call()
    assert not path.exists()


def test_modules_the_meta_device_cannot_build(multiclass, tmp_path):
    # save and partial_fit compare the module's class where they cannot
    # compare its layers; a factory class builds another class, as fit did
    X, y = multiclass
    for module in (NoMetaNetwork, NoMetaFactory):
        clf = MACHClassifier(module=module, **FAST).fit(X, y)
        clf.partial_fit(X, y).save(tmp_path / "model.skmach")
        loaded = MACHClassifier.load(tmp_path / "model.skmach", trusted=[module])
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    # without layers to compare, any other module than fit's is a change
    for other in (WideNoMetaFactory, NoMetaNetwork, torch.nn.Linear):
        clf.set_params(module=other)
        _refused(clf, X, y, tmp_path / "other.skmach", f"module={other!r}")
    clf.set_params(module=NoMetaFactory).partial_fit(X, y)
    # pickled before fit recorded its module: the networks' class is compared
    old = MACHClassifier(module=NoMetaNetwork, **FAST).fit(X, y)
    del old._fitted_module
    old.set_params(module=torch.nn.Linear)
    with pytest.raises(ValueError, match="module=<class 'torch.nn.modules.linear"):
        old.partial_fit(X, y)
    old.set_params(module=NoMetaNetwork).partial_fit(X, y)


def test_another_module_with_the_same_layers(multiclass, tmp_path):
    # layers of the same shapes do not make the same model: save would
    # write the new module's name over the old one's weights
    X, y = multiclass
    clf = MACHClassifier(module=LinearNetwork, **FAST).fit(X, y)
    proba = clf.predict_proba(X)
    clf.set_params(module=NegatedNetwork)
    _refused(clf, X, y, tmp_path / "model.skmach", f"module={NegatedNetwork!r}")
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    clf.set_params(module=LinearNetwork).partial_fit(X, y)
    # MACHNetwork as a module is built as custom modules are (no feature
    # hashing, its own default layers): not module=None, either way
    X_wide = sp.random(60, 3000, density=0.01, format="csr", random_state=0)
    params = dict(FAST, max_epochs=1, n_hashed_features=512)
    for fitted, other in [(MACHNetwork, None), (None, MACHNetwork)]:
        clf = MACHClassifier(module=fitted, **params).fit(X_wide, y[:60])
        clf.set_params(module=other)
        _refused(clf, X_wide, y[:60], tmp_path / "m.skmach", f"(fitted: {fitted!r})")
    # an equal functools.partial is the same module (partials compare by
    # identity)
    clf = MACHClassifier(module=functools.partial(NegatedNetwork), **FAST).fit(X, y)
    clf.set_params(module=functools.partial(NegatedNetwork)).partial_fit(X, y)
    clf.set_params(module=functools.partial(LinearNetwork))
    with pytest.raises(ValueError, match="module=functools.partial"):
        clf.partial_fit(X, y)
    # arguments compare by value: arrays (and NaN) included
    for scale in [
        np.ones(3),
        np.array([np.nan]),
        float("nan"),
        np.float32("nan"),
        torch.zeros(2),
        torch.tensor([1.0, float("nan")], dtype=torch.bfloat16),
        torch.eye(2).to_sparse(),
        collections.OrderedDict(a=1, b=2),
        {"w": [np.ones(2), (float("nan"),)]},
        2.0,
    ]:
        clf = MACHClassifier(
            module=functools.partial(LinearNetwork, scale=scale), **FAST
        )
        clf.fit(X, y)
        clf.set_params(module=functools.partial(LinearNetwork, scale=copy.copy(scale)))
        clf.partial_fit(X, y)
    # what cannot be compared is another module: no torch error either
    others = [np.ones(4), np.ones(3, dtype=int), 3.0, None, [2.0], torch.ones(1)]
    others += [torch.ones(1, dtype=torch.bfloat16), torch.eye(1).to_sparse()]
    for other in others:
        clf.set_params(module=functools.partial(LinearNetwork, scale=other))
        with pytest.raises(ValueError, match="module=functools.partial"):
            clf.partial_fit(X, y)

    # as ==: a dict equals an OrderedDict of the same items, two
    # OrderedDicts compare their order; a huge sparse tensor is not densified
    def sparse():
        return torch.sparse_coo_tensor(
            [[0], [0]], [1.0], (10**6, 10**6), check_invariants=True
        )

    def csr():
        crow = torch.tensor([0] + [1] * 10**6)
        return torch.sparse_csr_tensor(
            crow, [0], [1.0], (10**6, 10**6), check_invariants=True
        )

    def coo(indices, values):
        return torch.sparse_coo_tensor(indices, values, (2, 2), check_invariants=True)

    explicit_zero = coo([[0, 1], [0, 1]], [1.0, 0.0])
    for fitted, other in [
        ({"a": 1}, collections.OrderedDict(a=1)),
        (sparse(), sparse()),
        (csr(), csr()),
        (explicit_zero, coo([[0], [0]], [1.0])),
        (coo([[0], [0]], [float("nan")]), coo([[0], [0]], [float("nan")])),
        (coo([[0], [0]], [True]), coo([[0], [0]], [True])),
        (coo([[0], [0]], torch.ones(1, dtype=torch.float16)),) * 2,
    ]:
        clf = MACHClassifier(
            module=functools.partial(LinearNetwork, scale=fitted), **FAST
        )
        clf.fit(X, y).set_params(module=functools.partial(LinearNetwork, scale=other))
        clf.partial_fit(X, y)
    ordered = collections.OrderedDict(a=1, b=2)
    clf = MACHClassifier(module=functools.partial(LinearNetwork, scale=ordered), **FAST)
    clf.fit(X, y).set_params(
        module=functools.partial(LinearNetwork, scale=collections.OrderedDict(b=2, a=1))
    )
    with pytest.raises(ValueError, match="module=functools.partial"):
        clf.partial_fit(X, y)


def test_hidden_layer_sizes_checked_with_a_custom_module(multiclass, tmp_path):
    # unused by a custom module, but validated on every path: a file load
    # would refuse is not written
    X, y = multiclass
    clf = MACHClassifier(module=LinearNetwork, **FAST)
    clf.partial_fit(X, y, classes=np.unique(y))
    for sizes in [(-5,), ("a",)]:
        clf.set_params(hidden_layer_sizes=sizes)
        _refused(
            clf, X, y, tmp_path / "m.skmach", "hidden_layer_sizes must be positive"
        )


class BrokenInit(torch.nn.Module):
    def __init__(self, n_features, n_outputs):
        raise TypeError("a bug of its own")


class Typo(torch.nn.Module):
    def __init__(self, in_features, n_outputs):
        super().__init__()


def _calls_with_a_typo(n_features, n_outputs):
    return Typo(n_features=n_features, n_outputs=n_outputs)


class Forwarding(torch.nn.Module):  # binds anything, takes nothing
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)


def _with_width(init):  # a decorator supplying an argument, as config tools do
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        return init(self, *args, **{"width": 8, **kwargs})

    return wrapper


class DecoratedInit(torch.nn.Module):
    # its signature (through __wrapped__) asks for width; the call does not
    @_with_width
    def __init__(self, n_features, n_outputs, width):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, n_outputs),
        )

    def forward(self, X):
        return self.net(X)


def test_optimizer_and_module_of_the_wrong_kind(multiclass):
    X, y = multiclass
    for params, match in [
        (dict(optimizer=torch.nn.Linear), "subclass of torch.optim.Optimizer"),
        (dict(optimizer=int), "subclass of torch.optim.Optimizer"),
        (dict(module=lambda n_features, n_outputs: 5), "must build a torch.nn.Module"),
        # skorch takes instances; one instance cannot be R networks
        (dict(module=torch.nn.Linear(20, 8)), "got a Linear instance"),
        (dict(module=torch.optim.Adam), "is an optimizer class"),
        # torch's or Python's own TypeError, naming no parameter
        (dict(module=torch.nn.Linear), r"module must be .* called as module\("),
        (dict(module=int), r"module must be .* called as module\("),
        # a module taking the call raises its own TypeError, unwrapped
        (dict(module=BrokenInit), "^a bug of its own$"),
        (dict(module=Forwarding), r"module must be .* called as module\("),
        # takes the call; a bug in its body names n_features: its own error
        (dict(module=_calls_with_a_typo), "^Typo.__init__.. got an unexpected"),
    ]:
        clf = MACHClassifier(**dict(FAST, **params))
        with pytest.raises(TypeError, match=match):
            clf.fit(X, y)
        assert not hasattr(clf, "networks_")
    # a signature saying less than the call takes: the call decides
    assert MACHClassifier(**dict(FAST, module=DecoratedInit)).fit(X, y).score(X, y) > 0
    # no parameter to train: torch's "optimizer got an empty parameter list",
    # or, all frozen, "element 0 of tensors does not require grad"
    frozen = torch.nn.Linear(20, 8).requires_grad_(False)
    for module in [
        lambda n_features, n_outputs: torch.nn.Identity(),
        lambda **_: frozen,
    ]:
        clf = MACHClassifier(**dict(FAST, module=module))
        with pytest.raises(ValueError, match="network with trainable parameters"):
            clf.fit(X, y)
        assert not hasattr(clf, "networks_")
    # torch's RuntimeError "SparseAdam does not support dense gradients"
    clf = MACHClassifier(**dict(FAST, optimizer=torch.optim.SparseAdam))
    with pytest.raises(ValueError, match="SparseAdam updates sparse gradients only"):
        clf.fit(X, y)
    assert not hasattr(clf, "networks_")
    clf = MACHClassifier(
        **dict(FAST, optimizer=torch.optim.SparseAdam, module=MACHNetwork)
    )
    with pytest.raises(ValueError, match="SparseAdam updates sparse gradients only"):
        clf.fit(X, y)  # the default network, named
    # but a custom module whose gradients are all sparse trains with it
    clf.set_params(module=_SparseBag, random_state=0).fit(np.abs(X), y)
    assert all(type(net) is _SparseBag for net in clf.networks_)
    assert np.isin(clf.predict(np.abs(X)), clf.classes_).all()


class _SparseBag(torch.nn.Module):
    """A linear model read through ``embedding_bag(sparse=True)``."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(n_features, n_outputs, mode="sum", sparse=True)

    def forward(self, X):
        rows = torch.arange(X.shape[1], device=X.device).expand(X.shape[0], -1)
        return self.bag(rows, per_sample_weights=X)


class _MaskedBucket(torch.nn.Linear):
    """A linear layer whose bucket 0 scores -inf in eval mode (masked out)."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)

    def forward(self, X):
        out = super().forward(X)
        if self.training:
            return out
        return out.index_fill(1, torch.tensor([0], device=out.device), -math.inf)


def test_a_module_may_mask_buckets_with_minus_infinity(multiclass):
    # fit's check of the networks' outputs took -inf for an overflow
    X, y = multiclass
    clf = MACHClassifier(**dict(FAST, module=_MaskedBucket)).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)


class _Sliced(torch.nn.Module):
    """A linear layer whose output is cut to ``cut`` (an index or a slice)."""

    def __init__(self, n_features, n_outputs, width, cut):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, width)
        self.cut = cut

    def forward(self, X):
        return self.linear(X)[self.cut]


class _TwoHeads(torch.nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.linear(X), None


def test_custom_module_that_returns_no_tensor(multiclass):
    # an AttributeError ('tuple' object has no attribute 'dim') before
    X, y = multiclass
    clf = MACHClassifier(**dict(FAST, module=_TwoHeads))
    with pytest.raises(TypeError, match="output is a tuple; expected one tensor"):
        clf.fit(X, y)
    assert not hasattr(clf, "networks_")


@pytest.mark.parametrize(
    "width, cut, shape",
    [
        (9, slice(None), r"\(16, 9\)"),  # one score too many: trained silently
        (7, slice(None), r"\(16, 7\)"),  # one too few: torch's IndexError
        (8, (slice(None), 0), r"\(16,\)"),  # 1-D
        (8, slice(1, None), r"\(15, 8\)"),  # a row short
        # another axis in front: trained, predicting garbage of 1 row (or
        # a torch error); or torch's reshape error
        (8, (None,), r"\(1, 16, 8\)"),
        (8, (torch.arange(16).expand(2, 16),), r"\(2, 16, 8\)"),
    ],
)
def test_custom_module_of_the_wrong_output_shape(
    multiclass, multilabel, width, cut, shape
):
    for X, y in [multiclass, multilabel]:

        def module(n_features, n_outputs):
            return _Sliced(n_features, n_outputs, width, cut)

        clf = MACHClassifier(**dict(FAST, batch_size=16, module=module))
        with pytest.raises(
            ValueError, match=f"network's output has shape {shape}; expected .16, 8."
        ):
            clf.fit(X, y)
        assert not hasattr(clf, "networks_")


class _EvalOutput(torch.nn.Module):
    """Scores of the right shape in training, of another kind in eval mode."""

    def __init__(self, n_features, n_outputs, kind):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_outputs + 3)
        self.n_outputs, self.kind = n_outputs, kind

    def forward(self, X):
        out = self.linear(X)
        if self.training or self.kind == "right":
            return out[:, : self.n_outputs]
        n = self.n_outputs
        return {
            "wide": lambda: out,
            "narrow": lambda: out[:, : n - 1],
            "front": lambda: out[None, :, :n],
            "1-D": lambda: out[:, 0],
            "tuple": lambda: (out[:, :n],),
            "bool": lambda: out[:, :n] > 0,
            "bfloat16": lambda: out[:, :n].bfloat16(),
            "meta": lambda: torch.empty(X.shape[0], n, device="meta"),
            "nested": lambda: torch.nested.nested_tensor(
                list(out[:, :n]), layout=torch.jagged
            ),
            "sparse": lambda: out[:, :n].to_sparse_csr(),
        }[self.kind]()


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize(
    "kind",
    [
        "wide",
        "narrow",
        "front",
        "1-D",
        "tuple",
        "bool",
        "bfloat16",
        "meta",
        "nested",
        "sparse",
    ],
)
def test_custom_module_of_another_output_in_eval_mode(
    multiclass, multilabel, kind, early_stopping
):
    # training saw the right shape; predict_proba was then a softmax over 3
    # more columns, or predict failed with torch's index error (and fit
    # did, validating for early stopping), or an IndexError, a TypeError;
    # bool scores fitted, then multilabel predictions were made of them
    if kind == "tuple":
        error, message = TypeError, "output in eval mode is a tuple; expected one"
    elif kind in ("nested", "sparse"):
        what = "nested" if kind == "nested" else "sparse_csr"
        error, message = TypeError, f"eval mode is a {what} tensor; expected one dense"
    elif kind in ("bool", "bfloat16"):
        error, message = TypeError, f"output in eval mode has dtype torch.{kind};"
    elif kind == "meta":
        error, message = ValueError, "output in eval mode is on meta; expected"
    else:
        error, message = ValueError, r"output in eval mode has shape \(.*\); expected"

    def module(n_features, n_outputs):
        return _EvalOutput(n_features, n_outputs, kind)

    for X, y in [multiclass, multilabel]:
        clf = MACHClassifier(**dict(FAST, module=module, early_stopping=early_stopping))
        with pytest.raises(error, match=message):
            clf.fit(X, y)
        assert not hasattr(clf, "networks_")


class _TrainOutput(torch.nn.Linear):
    """Scores of another dtype or device in training, right in eval mode."""

    def __init__(self, n_features, n_outputs, kind):
        super().__init__(n_features, n_outputs)
        self.kind = kind

    def forward(self, X):
        out = super().forward(X)
        if not self.training:
            return out
        return {
            "long": lambda: out.long(),
            "bool": lambda: out > 0,
            "complex": lambda: out.to(torch.complex64),
            "meta": lambda: torch.empty(out.shape, device="meta"),
            "bfloat16": lambda: out.bfloat16(),
            "float8": lambda: out.to(torch.float8_e4m3fn),
            "nested": lambda: torch.nested.nested_tensor(
                list(out), layout=torch.jagged
            ),
            "sparse": lambda: out.to_sparse(),
        }[self.kind]()


@pytest.mark.parametrize(
    "kind",
    ["long", "bool", "complex", "meta", "bfloat16", "float8", "nested", "sparse"],
)
def test_custom_module_of_another_dtype_or_device_in_training(multiclass, kind):
    # torch's errors ("result type Float can't be cast", bool subtraction,
    # "not on the expected device"); bfloat16 logits train
    X, y = multiclass

    def module(n_features, n_outputs):
        return _TrainOutput(n_features, n_outputs, kind)

    clf = MACHClassifier(**dict(FAST, module=module, random_state=0))
    if kind == "bfloat16":  # 0.96, as float32 logits
        assert clf.fit(X, y).score(X, y) > 0.9
        return
    error, message = {
        "meta": (ValueError, "output is on meta; expected it on its input's device"),
        "nested": (TypeError, "output is a nested tensor; expected one dense"),
        "sparse": (TypeError, "output is a sparse_coo tensor; expected one dense"),
    }.get(kind, (TypeError, "output has dtype torch.*; expected bucket scores of"))
    with pytest.raises(error, match=message):
        clf.fit(X, y)
    assert not hasattr(clf, "networks_")


def _skip_where_predictions_run_copies():
    # these tests change a fitted network's attributes, which an
    # accelerator's copies (SKLEARN_MACH_TEST_GROUPED=1: copies on the CPU)
    # made at the first prediction do not see; they fit on the CPU
    # (device="cpu"), which has none on a GPU machine too
    if "cpu" not in MACHClassifier._SHARED_DEVICES:
        pytest.skip("predictions run copies of the networks")


class _RefitOnce(torch.nn.Linear):
    """A linear module that runs ``refit()`` on its first eval-mode call."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)
        self.refit = None

    def forward(self, X):
        if not self.training and self.refit is not None:
            refit, self.refit = self.refit, None
            with torch.enable_grad():
                refit()
        return super().forward(X)


def test_a_prediction_over_a_refit_with_another_n_buckets(multiclass):
    # a prediction of several chunks of rows, during which a refit with
    # another n_buckets ended (another thread's), checked the old networks'
    # outputs against the new B
    _skip_where_predictions_run_copies()
    X, y = multiclass
    X, y = np.repeat(X, 2, axis=0), np.repeat(y, 2)
    clf = MACHClassifier(
        **dict(FAST, module=_RefitOnce, random_state=0, device="cpu")
    ).fit(X, y)
    expected = clf.predict_proba(X)
    clf.networks_[0].refit = lambda: clf.set_params(n_buckets=16).fit(X, y)
    with sklearn.config_context(working_memory=1e-4):  # one batch a chunk
        got = clf.predict_proba(X)
    assert clf.n_buckets_ == 16
    np.testing.assert_array_equal(got, expected)


def test_predict_checks_the_output_of_custom_modules(multiclass):
    _skip_where_predictions_run_copies()
    X, y = multiclass

    def module(n_features, n_outputs):
        return _EvalOutput(n_features, n_outputs, "right")

    clf = MACHClassifier(**dict(FAST, module=module, device="cpu")).fit(X, y)
    expected = clf.predict(X)
    for net in clf.networks_:
        net.kind = "narrow"
    with pytest.raises(ValueError, match="output in eval mode has shape"):
        clf.predict(X)
    for net in clf.networks_:
        net.kind = "right"
    np.testing.assert_array_equal(clf.predict(X), expected)


@pytest.mark.parametrize("scale", [1e-50, 1e40])
def test_sample_weight_scale_does_not_matter(multiclass, scale):
    # A batch's loss is its weighted mean: weights far outside float32's
    # range train the same model as unit weights
    X, y = multiclass
    weights = np.random.RandomState(0).randint(1, 4, size=len(y)).astype(float)
    params = dict(FAST, max_epochs=3, random_state=0)
    base = MACHClassifier(**params).fit(X, y, sample_weight=weights)
    scaled = MACHClassifier(**params).fit(X, y, sample_weight=weights * scale)
    np.testing.assert_allclose(
        scaled.predict_proba(X), base.predict_proba(X), rtol=1e-4, atol=1e-6
    )
    # weights that round to 0 in float32 next to others: no NaN
    tiny = weights.copy()
    tiny[:200] = 1e-50
    clf = MACHClassifier(**dict(params, batch_size=1, max_epochs=1))
    assert np.isfinite(clf.fit(X, y, sample_weight=tiny).predict_proba(X)).all()


def test_numpy_integer_widths_train_the_same_model(multiclass):
    # NumPy 2 keeps sum(hidden_layer_sizes) in the widths' own type: a
    # uint8 width raised OverflowError when fit sized its groups
    X, y = multiclass
    params = dict(FAST, n_buckets=256, max_epochs=1, random_state=0)
    plain = MACHClassifier(**dict(params, hidden_layer_sizes=(64,))).fit(X, y)
    numpy = MACHClassifier(**dict(params, hidden_layer_sizes=(np.uint8(64),)))
    numpy.fit(X, y)
    np.testing.assert_array_equal(numpy.predict_proba(X), plain.predict_proba(X))
    top = numpy.predict_top_k(X, 3, n_candidate_buckets=np.uint8(200))
    np.testing.assert_array_equal(top[0], plain.predict_top_k(X, 3, 200)[0])


def test_samples_of_weight_zero_do_not_count_for_auto_values():
    # They are left out "as if absent", but batch_size="auto" and lr="auto"
    # counted them: 200,000 rows, half of weight 0, took the large-data
    # values (batch 1024, lr 3e-3) and another model than the 100,000 rows.
    rng = np.random.RandomState(0)
    X = rng.rand(200_000, 2).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    weights = np.ones(len(y))
    weights[::2] = 0
    params = dict(n_buckets=2, n_repetitions=1, hidden_layer_sizes=(), max_epochs=1)
    weighted = MACHClassifier(**params, random_state=0).fit(X, y, weights)
    kept = MACHClassifier(**params, random_state=0).fit(X[1::2], y[1::2])
    assert (weighted.batch_size_, weighted.lr_) == (kept.batch_size_, kept.lr_)
    for a, b in zip(weighted.networks_[0].parameters(), kept.networks_[0].parameters()):
        assert torch.equal(a, b)


def test_auto_lr_follows_the_batches_trained(multiclass):
    # a batch_size past the data trains one batch of all rows, as
    # batch_size=n_samples does, but lr="auto" took 3e-3 from the 1000
    X, y = multiclass[0][:200], multiclass[1][:200]
    params = dict(FAST, max_epochs=2, random_state=0)
    whole = MACHClassifier(batch_size=len(y), **params).fit(X, y)
    past = MACHClassifier(batch_size=1000, **params).fit(X, y)
    assert past.batch_size_ == 1000 and past.lr_ == whole.lr_ == 1e-2
    np.testing.assert_array_equal(past.predict_proba(X), whole.predict_proba(X))
    # the rows early stopping holds out are not trained on: 280 rows less 28
    X, y = multiclass[0][:280], multiclass[1][:280]
    params = dict(params, early_stopping=True, validation_fraction=0.1)
    whole = MACHClassifier(batch_size=252, **params).fit(X, y)
    past = MACHClassifier(batch_size=1000, **params).fit(X, y)
    assert past.lr_ == whole.lr_ == 1e-2
    np.testing.assert_array_equal(past.predict_proba(X), whole.predict_proba(X))


def test_verbose_table_numbers_epochs_as_the_histories(multiclass, capsys):
    # under early stopping (one run per epoch) and over partial_fit calls
    # every printed epoch was "1"
    X, y = multiclass
    params = dict(FAST, n_repetitions=1, max_epochs=4, verbose=2, random_state=0)

    def printed_epochs():
        lines = capsys.readouterr().out.splitlines()
        return [int(line.split()[0]) for line in lines if line.strip()[:1].isdigit()]

    clf = MACHClassifier(early_stopping=True, n_iter_no_change=10, **params)
    clf.fit(X, y)
    assert printed_epochs() == list(clf.histories_[0][:, "epoch"]) == [1, 2, 3, 4]
    stream = MACHClassifier(**params)
    for _ in range(3):
        stream.partial_fit(X, y, classes=np.arange(6))
    assert printed_epochs() == list(stream.histories_[0][:, "epoch"]) == [1, 2, 3]
    stream.histories_ = [History(h[-1:]) for h in stream.histories_]  # shortened
    stream.partial_fit(X, y)
    assert printed_epochs() == [4] and stream.histories_[0][-1]["epoch"] == 4


def test_scalar_sample_weight_is_one_weight_per_sample(multiclass):
    # as scikit-learn's estimators take it
    X, y = multiclass
    params = dict(FAST, max_epochs=2, random_state=0)
    base = MACHClassifier(**params).fit(X, y)
    for weight in (2.0, 3, np.float32(0.5), True):
        clf = MACHClassifier(**params).fit(X, y, sample_weight=weight)
        np.testing.assert_allclose(
            clf.predict_proba(X), base.predict_proba(X), rtol=1e-5
        )
    for weight, match in ((-1.0, "non-negative"), (0.0, "at least one non-zero")):
        with pytest.raises(ValueError, match=match):
            MACHClassifier(**params).fit(X, y, sample_weight=weight)


def test_unbiased_scores_at_or_below_zero(multiclass):
    # An untrained model's unbiased estimates are all near or below 0:
    # predict is argmax(predict_proba) (classes_[0] where proba is uniform),
    # predict_top_k and decision_function keep the estimates' order.
    # device="cpu": which rows have no evidence depends on the initial draws,
    # which CUDA's generator makes differently.
    X, y = multiclass
    clf = MACHClassifier(
        **dict(FAST, n_buckets=256, max_epochs=1, lr=1e-6, random_state=0),
        device="cpu",
        aggregation="unbiased",
    ).fit(X, y)
    scores = clf.decision_function(X)
    no_evidence = scores.max(axis=1) <= 0
    assert no_evidence.any() and not no_evidence.all()
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert (clf.predict(X)[no_evidence] == clf.classes_[0]).all()
    top, top_scores = clf.predict_top_k(X, k=1)
    np.testing.assert_array_equal(top[:, 0], clf.classes_[scores.argmax(axis=1)])
    np.testing.assert_allclose(top_scores[:, 0], scores.max(axis=1), rtol=1e-5)


def test_binary_mean_log_odds_of_small_scores():
    # Two bucket probabilities under 1e-12 (most mass on an empty bucket)
    # were floored to 1e-12 each: log-odds 0, a tie, where class 1 is e**2
    # times likelier and predict_top_k ranks it first.
    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 5).astype(np.float32), rng.randint(0, 2, 200)
    clf = MACHClassifier(
        n_buckets=4,
        n_repetitions=1,
        hidden_layer_sizes=(),
        max_epochs=1,
        aggregation="mean",
        random_state=0,
    ).fit(X, y)
    buckets = clf.label_hasher_.buckets_[0]
    empty = next(b for b in range(4) if b not in buckets)
    bias = torch.zeros(4)
    bias[buckets[1]], bias[empty] = 2.0, 30.0
    with torch.no_grad():
        net = clf.networks_[0]
        net.input_weight.zero_()
        net.input_bias.copy_(bias)
    np.testing.assert_allclose(clf.decision_function(X[:3]), 2.0, rtol=1e-5)
    np.testing.assert_allclose(
        clf.predict_proba(X[:3])[:, 1], 1 / (1 + np.exp(-2.0)), rtol=1e-5
    )
    assert (clf.predict(X[:3]) == 1).all()
    assert (clf.predict_top_k(X[:3], 1)[0][:, 0] == 1).all()


@pytest.mark.parametrize(
    "aggregation, a, b, other, log_odds",
    [
        # 'b' ahead by about 1 ulp: expit gave 0.5 / 0.5, and predict 'a'
        ("logit_sum", 0.0, 1.2e-16, -50.0, 1.2e-16),
        # 'b' e**10 times likelier, both scores subnormal: floored to
        # finfo.tiny, log-odds 0, and predict 'a'
        ("mean", -10.0, 0.0, 730.0, 10.0),
    ],
)
def test_binary_float64_predict_follows_the_log_odds(
    aggregation, a, b, other, log_odds
):
    rng = np.random.RandomState(0)
    X = rng.randn(100, 2)  # float64: float64 networks
    y = np.array(["a", "b"])[rng.randint(0, 2, 100)]
    clf = MACHClassifier(
        n_buckets=4,
        n_repetitions=1,
        hidden_layer_sizes=(),
        max_epochs=1,
        aggregation=aggregation,
        random_state=0,
    ).fit(X, y)
    bucket_a, bucket_b = clf.label_hasher_.buckets_[0]
    bias = torch.full((4,), other, dtype=torch.float64)
    bias[bucket_a], bias[bucket_b] = a, b
    with torch.no_grad():
        clf.networks_[0].input_weight.zero_()
        clf.networks_[0].input_bias.copy_(bias)
    assert clf.predict_top_k(X[:3], k=1)[0][:, 0].tolist() == ["b"] * 3
    np.testing.assert_allclose(clf.decision_function(X[:3]), log_odds, rtol=0.1)
    assert clf.predict(X[:3]).tolist() == ["b"] * 3


def test_aggregation_set_after_fit_is_validated(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    clf.set_params(aggregation="max")  # a KeyError deep in decoding, before
    for method in ("predict", "predict_proba", "decision_function", "predict_top_k"):
        # predict named predict_top_k, whose validate_params renamed the error
        where = "MACHClassifier.predict_top_k" if method == "predict_top_k" else ""
        with pytest.raises(
            ValueError, match=f"'aggregation' parameter of {where or 'MACHClassifier'} "
        ):
            getattr(clf, method)(X[:5])


def test_wrong_number_of_features_at_predict(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    for method in ("predict", "predict_proba", "decision_function", "predict_top_k"):
        with pytest.raises(
            ValueError, match="X has 5 features, but MACHClassifier is expecting 20"
        ):
            getattr(clf, method)(X[:, :5])


def test_clone_keeps_parameters_verbatim():
    clf = MACHClassifier(hidden_layer_sizes=[64, 32], optimizer=torch.optim.SGD)
    params = clone(clf).get_params()
    assert params["hidden_layer_sizes"] == [64, 32]
    assert params["optimizer"] is torch.optim.SGD


def test_optimizer_class_and_sgd(multiclass):
    X, y = multiclass
    for optimizer in ("sgd", torch.optim.Adam):
        clf = MACHClassifier(
            optimizer=optimizer,
            lr=0.05 if optimizer == "sgd" else 1e-2,
            random_state=0,
            **FAST,
        ).fit(X, y)
        assert clf.score(X, y) > 0.7


def test_verbose_zero_is_silent(multiclass, capfd):
    X, y = multiclass
    MACHClassifier(random_state=0, **FAST).fit(X, y).predict(X)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_verbose_shows_progress(multiclass, capfd):
    X, y = multiclass
    MACHClassifier(verbose=1, random_state=0, **FAST).fit(X, y)
    out, err = capfd.readouterr()
    # one bar per repetition, or per group of them on a GPU
    assert (
        re.search(r"repetitions? (\d+-)?3/3", err) and "loss=" in err and "15/15" in err
    )
    assert "train_loss" not in out  # skorch's epoch table only at verbose >= 2
    MACHClassifier(verbose=2, random_state=0, **dict(FAST, n_repetitions=1)).fit(X, y)
    out, err = capfd.readouterr()
    assert "train_loss" in out


def test_verbose_early_stopping_in_worker_processes(multiclass, capfd):
    # a trainer came back from a loky worker for more epochs holding its
    # closed tqdm bar, whose unpickling recursed: BrokenProcessPool
    import joblib

    X, y = multiclass
    params = dict(FAST, n_repetitions=2, max_epochs=2, early_stopping=True)
    reference = MACHClassifier(random_state=0, **params).fit(X, y)
    with joblib.parallel_config(backend="loky"):
        clf = MACHClassifier(verbose=1, n_jobs=2, random_state=0, **params).fit(X, y)
    capfd.readouterr()
    np.testing.assert_allclose(
        clf.predict_proba(X), reference.predict_proba(X), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
def test_candidate_top_k_with_all_buckets_is_exact(multiclass, aggregation):
    X, y = multiclass
    clf = MACHClassifier(aggregation=aggregation, random_state=0, **FAST).fit(X, y)
    exact_labels, exact_scores = clf.predict_top_k(X, k=4)
    labels, scores = clf.predict_top_k(X, k=4, n_candidate_buckets=clf.n_buckets)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], exact_labels[:, 0])


def test_candidate_top_k_scores_candidates_exactly(multilabel):
    X, Y = multilabel
    # 12 labels in 4 buckets: the top bucket of each repetition holds about
    # 3 labels, enough candidates for k=2 without the exact fallback.
    clf = MACHClassifier(random_state=0, **dict(FAST, n_buckets=4)).fit(X, Y)
    full = clf.decision_function(X)
    labels, scores = clf.predict_top_k(X, k=2, n_candidate_buckets=1)
    # Every returned score is the class's exact score, in decreasing order.
    np.testing.assert_allclose(scores, np.take_along_axis(full, labels, 1), rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)
    # A class is returned only if one of its buckets is the top bucket of
    # some repetition.
    with torch.no_grad():
        top_buckets = [
            torch.topk(
                torch.sigmoid(net(torch.from_numpy(X))), 1, dim=1
            ).indices.numpy()
            for net in clf.networks_
        ]
    for i in range(0, len(X), 37):
        for label in labels[i]:
            assert any(
                clf.label_hasher_.buckets_[r, label] in top_buckets[r][i]
                for r in range(clf.n_repetitions)
            )
    with pytest.raises(ValueError, match="n_candidate_buckets"):
        clf.predict_top_k(X, k=2, n_candidate_buckets=0)


def test_dense_outputs_refuse_beyond_the_memory_limit(multiclass, monkeypatch):
    import sklearn_mach._classifier as classifier_module

    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    monkeypatch.setattr(classifier_module, "MAX_DENSE_OUTPUT_BYTES", 100 * 6 * 8)
    clf.predict_proba(X[:100])
    for method in (clf.predict_proba, clf.decision_function):
        with pytest.raises(ValueError, match="predict_top_k"):
            method(X[:101])
    assert clf.predict(X).shape == (400,)  # block by block: no limit
    assert clf.predict_top_k(X, k=2)[0].shape == (400, 2)


def test_partial_fit_streams_chunks(multiclass):
    X, y = multiclass
    names = np.array(["a", "b", "c", "d", "e", "f"])[y]
    clf = MACHClassifier(random_state=0, **FAST)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:100], names[:100])
    scores = []
    for _ in range(6):
        for start in range(0, 400, 100):
            # The first chunk lacks some classes: `classes` declares them all
            # (a set of labels: order and repeats do not matter).
            clf.partial_fit(
                X[start : start + 100],
                names[start : start + 100],
                classes=["f", "a", "b", "b", "c", "d", "e"],
            )
        scores.append(clf.score(X, names))
    np.testing.assert_array_equal(clf.classes_, np.unique(names))
    assert scores[-1] > 0.9 and scores[-1] >= scores[0]
    assert all(state is not None for state in clf._optimizer_states)
    with pytest.raises(ValueError, match="not the same as the model.s classes_"):
        clf.partial_fit(X[:10], names[:10], classes=["a", "b"])
    with pytest.raises(ValueError, match="not among the classes the model"):
        clf.partial_fit(X[:2], np.array(["a", "zebra"]))
    with pytest.raises(ValueError, match="expecting 20 features"):
        clf.partial_fit(X[:10, :5], names[:10])
    assert clf.score(X, names) == scores[-1]  # failed calls changed nothing


def test_partial_fit_is_reproducible_and_continues_fit(multiclass):
    X, y = multiclass
    a = MACHClassifier(random_state=3, **FAST)
    b = MACHClassifier(random_state=3, **FAST)
    for clf in (a, b):
        clf.partial_fit(X[:200], y[:200], classes=np.arange(6))
        clf.partial_fit(X[200:], y[200:])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-6)
    fitted = MACHClassifier(random_state=0, **FAST).fit(X, y)
    before = [p.clone() for p in fitted.networks_[0].parameters()]
    last_loss = fitted.histories_[0][-1, "train_loss"]
    fitted.partial_fit(X, y)
    # one more epoch from the fitted weights, not a restart: its loss is
    # about the last one (a fresh network starts near log(B) = 2.1)
    assert len(fitted.histories_[0]) == FAST["max_epochs"] + 1
    assert fitted.histories_[0][-1, "train_loss"] < 2 * last_loss + 0.05
    assert any(
        not torch.equal(p, q) for p, q in zip(before, fitted.networks_[0].parameters())
    )
    assert fitted.score(X, y) > 0.9


def _failing_loss(monkeypatch, exception, at_call):
    """Make the training loss raise ``exception`` on call ``at_call``
    (both training paths compute it), as an interrupt or an out-of-memory
    error would part way through an epoch."""
    calls = [0]
    forward = _network.BucketLoss.forward

    def failing(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at_call:
            raise exception("part way through training")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(_network.BucketLoss, "forward", failing)


@pytest.mark.parametrize("exception", [KeyboardInterrupt, RuntimeError])
def test_interrupted_fit_and_partial_fit_change_nothing(
    multiclass, monkeypatch, exception
):
    # skorch's partial_fit swallows KeyboardInterrupt: fit went on with the
    # next repetition and returned a half-trained model (or failed with a
    # KeyError).  A failed partial_fit also left the optimizer moments
    # updated in place, so a retry did not continue as if it had not run.
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST)
    with monkeypatch.context() as patch:
        _failing_loss(patch, exception, at_call=3)
        with pytest.raises(exception, match="part way"):
            clf.fit(X, y)
    assert not hasattr(clf, "networks_")

    a = MACHClassifier(random_state=0, **FAST)
    b = MACHClassifier(random_state=0, **FAST)
    for clf in (a, b):
        clf.partial_fit(X, y, classes=np.arange(6))
    with monkeypatch.context() as patch:
        _failing_loss(patch, exception, at_call=2)  # the second step
        with pytest.raises(exception, match="part way"):
            b.partial_fit(X, y)
    assert [len(h) for h in b.histories_] == [1] * b.n_repetitions
    for clf in (a, b):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert [h[:, "epoch"] for h in b.histories_] == [[1, 2]] * b.n_repetitions


def test_partial_fit_appends_to_the_histories(multiclass):
    # Each call copied every epoch of histories_: after 4,000 calls at
    # R = 8 a call took 120 ms, most of it copying (benchmarks/bench_stream.py).
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).partial_fit(X, y, classes=range(6))
    histories, first = clf.histories_, [h[0] for h in clf.histories_]
    clf.partial_fit(X[:50], y[:50])
    assert all(a is b for a, b in zip(clf.histories_, histories))
    assert all(h[0] is epoch for h, epoch in zip(clf.histories_, first))
    assert [h[:, "epoch"] for h in clf.histories_] == [[1, 2]] * clf.n_repetitions
    # a shortened plain list is taken as it is
    clf.histories_ = [h[-1:] for h in clf.histories_]
    clf.partial_fit(X[:50], y[:50])
    assert all(isinstance(h, History) for h in clf.histories_)
    assert [h[:, "epoch"] for h in clf.histories_] == [[2, 3]] * clf.n_repetitions
    # one History for every network: each gets its own epochs
    shared = History()
    clf.histories_ = [shared] * clf.n_repetitions
    clf.partial_fit(X[:50], y[:50])
    assert clf.histories_[0] is shared and len(shared) == 1
    assert len({id(h) for h in clf.histories_}) == clf.n_repetitions
    assert [h[:, "epoch"] for h in clf.histories_] == [[1]] * clf.n_repetitions


def test_partial_fit_refuses_histories_it_cannot_extend(multiclass):
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).partial_fit(X, y, classes=range(6))
    kept = clf.histories_[0]
    for histories in (None, 0, [], [kept], [kept, kept, [["not a record"]]]):
        clf.histories_ = histories
        with pytest.raises(ValueError, match="partial_fit needs histories_ to hold"):
            clf.partial_fit(X[:50], y[:50])
        assert clf.histories_ is histories and len(kept) == 1
    clf.histories_ = None  # fit starts new ones
    assert [len(h) for h in clf.fit(X, y).histories_] == [FAST["max_epochs"]] * 3


def test_partial_fit_interrupted_while_appending(multiclass, monkeypatch):
    # the histories are extended in place, last: an interrupt between two
    # networks must not leave an epoch the weights did not train
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).partial_fit(X, y, classes=range(6))
    histories = list(clf.histories_)
    calls = [0]
    extend = History.extend

    def interrupted(self, epochs):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return extend(self, epochs)

    monkeypatch.setattr(History, "extend", interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X[:50], y[:50])
    assert calls[0] == 2
    assert all(a is b for a, b in zip(clf.histories_, histories, strict=True))
    assert [len(h) for h in clf.histories_] == [1] * clf.n_repetitions


def test_partial_fit_takes_the_current_lr_batch_size_and_optimizer(multiclass):
    # lr and batch_size changed between calls used to be ignored (the first
    # call's values and the stored optimizer's lr), and another optimizer
    # failed with a KeyError on the stored moments
    X, y = multiclass
    clf = MACHClassifier(random_state=0, module=DenseOnlyNetwork, **FAST)
    clf.partial_fit(X, y, classes=np.arange(6))
    before = [p.clone() for net in clf.networks_ for p in net.parameters()]
    DenseOnlyNetwork.batch_rows.clear()
    clf.set_params(lr=1e-12, batch_size=7).partial_fit(X, y)
    assert (clf.lr_, clf.batch_size_) == (1e-12, 7)
    assert max(DenseOnlyNetwork.batch_rows) == 7
    after = [p for net in clf.networks_ for p in net.parameters()]
    # steps of at most lr (Adam): the weights all but stay
    assert max((p - q).abs().max().item() for p, q in zip(before, after)) < 1e-9
    clf.set_params(lr="auto", batch_size="auto").partial_fit(X, y)
    assert clf.batch_size_ == 7 and clf.lr_ == 1e-12  # "auto": no new resolution
    before = [p.clone() for net in clf.networks_ for p in net.parameters()]
    clf.set_params(lr=0.1, optimizer="sgd").partial_fit(X, y)
    assert clf._optimizer_states["optimizer"] == "sgd"
    after = [p for net in clf.networks_ for p in net.parameters()]
    assert max((p - q).abs().max().item() for p, q in zip(before, after)) > 1e-3


@pytest.mark.parametrize("first", ["fit", "partial_fit"])
def test_partial_fit_with_a_changed_max_epochs_saves(multiclass, first):
    # max_epochs does not apply to partial_fit, which took the change; save
    # then refused the model: "max_epochs=3 (fitted: 2) changed since"
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **dict(FAST, max_epochs=2))
    if first == "fit":
        clf.fit(X, y)
    else:
        clf.partial_fit(X, y, classes=np.arange(6))
    clf.set_params(max_epochs=3).partial_fit(X, y)
    assert clf.max_epochs_ == 3
    buffer = io.BytesIO()
    clf.save(buffer)
    buffer.seek(0)
    loaded = MACHClassifier.load(buffer)
    assert loaded.max_epochs_ == 3
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_partial_fit_keeps_its_groups(multiclass, monkeypatch):
    # On CUDA the groups follow the free memory, which changes between calls;
    # the stored moments are stacked by group, and were dropped whenever the
    # grouping changed.  Changing n_jobs regroups on the CPU too.
    monkeypatch.setattr(_training, "_GROUPED_DEVICES", {"cpu", "cuda"})
    X, y = multiclass
    a = MACHClassifier(random_state=0, **dict(FAST, n_repetitions=4))
    b = clone(a)
    for clf in (a, b):
        clf.partial_fit(X, y, classes=np.arange(6))
    b.set_params(n_jobs=2)
    for clf in (a, b):
        clf.partial_fit(X, y)
        clf.partial_fit(X, y)
    assert (
        b._optimizer_states["groups"] == a._optimizer_states["groups"] == [[0, 1, 2, 3]]
    )
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_partial_fit_across_training_paths(multiclass, monkeypatch):
    # A device change between calls moves between the one-network and the
    # grouped paths, whose optimizer states do not fit each other: the
    # moments start afresh instead of failing to load (a shape error).
    # (device="cpu": on a CUDA machine "auto" would pick the grouped path)
    X, y = multiclass
    clf = MACHClassifier(random_state=0, device="cpu", **dict(FAST, n_repetitions=2))
    for devices, n_jobs in [
        ({"cuda"}, None),
        ({"cpu", "cuda"}, 2),  # groups of one: a GroupedMACHNetwork each
        ({"cuda"}, None),
        ({"cpu", "cuda"}, None),
    ]:
        monkeypatch.setattr(_training, "_GROUPED_DEVICES", devices)
        clf.set_params(n_jobs=n_jobs).partial_fit(X, y, classes=np.arange(6))
        assert clf._optimizer_states["grouped"] == ("cpu" in devices)
    # a state without the keys (pickled by an earlier version) is reused
    states = clf._optimizer_states
    del states["grouped"], states["optimizer"]
    a, b = copy.deepcopy(clf), clf
    a._optimizer_states = dict(states, grouped=True, optimizer="adam")
    for model in (a, b):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_partial_fit_multilabel(multilabel):
    X, Y = multilabel
    clf = MACHClassifier(random_state=0, **dict(FAST, n_buckets=16))
    for _ in range(20):  # chunks of one batch: 40 steps, as a 20-epoch fit
        clf.partial_fit(X[:150], Y[:150], classes=np.arange(12))
        clf.partial_fit(X[150:], Y[150:])
    pred = clf.predict(X)
    assert (pred == Y).mean() > (Y == 0).mean() + 0.02
    with pytest.raises(ValueError, match="label columns"):
        clf.partial_fit(X, Y[:, :5])


def test_multilabel_target_with_negative_values(multilabel):
    # the error named an internal object: "Negative values in data passed
    # to CountMinLabelHasher (label vectors)".  (Sparse, such a target is
    # "multiclass-multioutput" to type_of_target, refused as that.)
    X, Y = multilabel
    Y = np.where(Y > 0, 1, -1)  # dense {-1, 1}: still "multilabel-indicator"
    clf = MACHClassifier(**FAST)
    with pytest.raises(ValueError, match="multilabel y has negative values"):
        clf.fit(X, Y)
    with pytest.raises(ValueError, match="multilabel y has negative values"):
        clf.partial_fit(X, Y, classes=np.arange(12))
    assert not hasattr(clf, "classes_")


def test_partial_fit_multilabel_predictions_keep_the_first_call_s_form(multilabel):
    # the last chunk's form decided: a sparse int stream answered in bool
    # arrays after one dense bool chunk (MLPClassifier keeps the first's)
    X, Y = multilabel
    clf = MACHClassifier(random_state=0, **dict(FAST, max_epochs=1))
    clf.partial_fit(X, sp.csr_matrix(Y), classes=np.arange(Y.shape[1]))
    first = clf.predict(X[:5])
    clf.partial_fit(X, Y.astype(bool))
    later = clf.predict(X[:5])
    assert sp.issparse(first) and sp.issparse(later)
    assert later.dtype == first.dtype == Y.dtype


def test_partial_fit_rejects_labels_outside_the_classes(multiclass):
    # LabelEncoder casts y to the classes' dtype: strings "0".."5" trained
    # as the integer classes 0..5 (and integers as the strings), silently
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST)
    letters = np.array(list("abcdef"))
    for classes, labels in [
        (np.arange(6), y.astype(str)),
        (np.arange(6).astype(str), y),
        (np.arange(6), letters[y]),
        (np.arange(5), y),
    ]:
        with pytest.raises(ValueError, match="y has labels not among classes"):
            clf.partial_fit(X, labels, classes=classes)
        assert not hasattr(clf, "classes_")
    clf.partial_fit(X, y, classes=np.arange(6))
    before = clf.predict_proba(X)
    for labels in [y.astype(str), letters[y], y + 1, y.astype(object).astype(str)]:
        with pytest.raises(ValueError, match="not among the classes the model"):
            clf.partial_fit(X, labels)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    clf.partial_fit(X, y.astype(np.float64))  # the same numbers: as scikit-learn
    np.testing.assert_array_equal(clf.classes_, np.arange(6))
    # days against picosecond classes: numpy finds no common unit (its
    # OverflowError), whatever the values (the same instants here)
    days = y.astype("datetime64[D]")
    picoseconds = (y * 86400 * 10**12).astype("datetime64[ps]")  # numpy cannot cast
    dates = MACHClassifier(random_state=0, **FAST).fit(X, picoseconds)
    match = r"y's labels \(datetime64\[D\]\) cannot be compared with the classes"
    with pytest.raises(ValueError, match=match + " the model was first fitted"):
        dates.partial_fit(X, days)
    with pytest.raises(ValueError, match=r"compared with classes \(datetime64\[ps"):
        MACHClassifier(**FAST).partial_fit(X, days, classes=np.unique(picoseconds))
    match = r"classes \(datetime64\[D\]\) cannot be compared with the model's"
    with pytest.raises(ValueError, match=match):
        dates.partial_fit(X, picoseconds, classes=np.unique(days))
    dates.partial_fit(X, picoseconds, classes=np.unique(picoseconds))
    strings = MACHClassifier(random_state=0, **FAST)
    strings.partial_fit(X, letters[y], classes=letters)
    strings.partial_fit(X, letters[y].astype(object))  # str objects: the same labels
    assert set(strings.predict(X)) <= set(letters)


@pytest.mark.parametrize(
    "classes, message",
    [
        ([0, 1, 2, 3, 4, 5, np.nan], "classes contains NaN, NaT, None or infinity"),
        # NaT was a class: predict_top_k answered it
        (np.array(["2020-01-01", "NaT"], dtype="datetime64[D]"), "contains NaN, NaT"),
        (np.array([1, "NaT"], dtype="timedelta64[s]"), "contains NaN, NaT"),
        ([0.0, 1.0, 2.0, 3.0, 4.0, np.inf], "classes contains NaN, NaT, None"),
        # as objects: fitted, and then load refused the saved file
        (np.array([0, 1, 2, 3, 4, 5, np.nan], dtype=object), "contains NaN, NaT, None"),
        (np.array([0, 1, 2, 3, 4, 5, None], dtype=object), "contains NaN, NaT, None"),
        # every label of y is among them: "y has labels not among classes"
        (np.array([0, 1, 2, 3, 4, 5, "a"], dtype=object), "mixes strings and numbers"),
        # numpy made them strings: "y has labels not among classes: [0, ...]"
        ([0, 1, 2, 3, 4, 5, "a"], "mixes strings and numbers"),
        (("a", 0, 1, 2, 3, 4, 5), "mixes strings and numbers"),
        ([np.True_, "a"], "mixes strings and numbers"),
        ([1j, "a"], "mixes strings and numbers"),
        ([], "classes must be a non-empty 1-D array-like"),
        ({0, 1, 2, 3, 4, 5}, "classes must be a non-empty 1-D array-like"),
        (6, "classes must be a non-empty 1-D array-like"),
        ([[0, 1, 2], [3, 4, 5]], "classes must be a non-empty 1-D array-like"),
    ],
)
def test_partial_fit_checks_classes(multiclass, multilabel, classes, message):
    # NaN in classes was fitted, saved, and then refused by load; the
    # others failed with an IndexError or a TypeError from inside the fit
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST)
    with pytest.raises(ValueError, match=message):
        clf.partial_fit(X, y, classes=classes)
    assert not hasattr(clf, "classes_")
    if "1-D" in message:  # multilabel: only the number of classes counts
        X, Y = multilabel
        with pytest.raises(ValueError, match=message):
            clf.partial_fit(X, Y, classes=classes)


def test_partial_fit_refuses_pandas_missing_values_in_classes(multiclass):
    # "y has labels not among classes: [0, 1, ...]", which they were
    pd = pytest.importorskip("pandas")
    X, y = multiclass
    for classes in (
        [0, 1, 2, 3, 4, 5, pd.NA],
        [0, 1, 2, 3, 4, 5, pd.NaT],
        pd.Series([0, 1, 2, 3, 4, 5, None], dtype="Int64"),
        pd.array(["0", "1", None], dtype="string"),
    ):
        clf = MACHClassifier(random_state=0, **FAST)
        with pytest.raises(ValueError, match="classes contains NaN, NaT, None"):
            clf.partial_fit(X, y, classes=classes)
        assert not hasattr(clf, "classes_")


def test_partial_fit_refuses_a_list_of_strings_and_numbers(multiclass):
    # numpy turns the list into strings: string labels were fitted with
    # classes_ ['0', ..., '5', 'a'] from classes=[0, ..., 5, "a"]
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST)
    with pytest.raises(ValueError, match="classes mixes strings and numbers"):
        clf.partial_fit(X, y.astype(str), classes=[0, 1, 2, 3, 4, 5, "a"])
    assert not hasattr(clf, "classes_")
    clf.partial_fit(X, y.astype(str), classes=["0", "1", "2", "3", "4", "5", "a"])
    assert clf.classes_.tolist() == ["0", "1", "2", "3", "4", "5", "a"]


@pytest.mark.parametrize(
    "classes",
    [[b"0", b"1"], np.array([b"0", b"1"]), [b"0", "1"], np.array([b"0", 1], object)],
)
def test_partial_fit_refuses_classes_of_bytes(multiclass, classes):
    # as fit refuses a y of bytes (scikit-learn's type_of_target); a list
    # mixing bytes and strings was fitted as strings, an array of bytes
    # refused as "y has labels not among classes: ['0', '1']"
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST)
    with pytest.raises(TypeError, match="classes holds bytes"):
        clf.partial_fit(X[:2], np.array(["0", "1"]), classes=classes)
    assert not hasattr(clf, "classes_")


def test_later_partial_fit_calls_refuse_classes_of_mixed_kinds(multiclass):
    # numpy's "'<' not supported between instances of 'str' and 'int'"
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).partial_fit(X, y, classes=range(6))
    with pytest.raises(ValueError, match="classes mixes strings and numbers"):
        clf.partial_fit(X, y, classes=np.array([0, 1, 2, 3, 4, 5, "a"], object))


@pytest.mark.parametrize("name", ["batch_size", "max_epochs"])
def test_sizes_a_model_file_cannot_hold_are_refused_by_fit(multiclass, name):
    # batch_size=2**63 fitted, and then save refused the model
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = multiclass
    clf = MACHClassifier(random_state=0, **dict(FAST, **{name: 2**63}))
    with pytest.raises(InvalidParameterError, match=name):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_")


def _labels_with_a_missing_one(kind, y):
    pd = pytest.importorskip("pandas")
    words = np.array(["ant", "bee", "cat", "dog", "eel", "fox"], dtype=object)[y]
    if kind in ("list of None", "list of NA"):
        return [None if kind == "list of None" else pd.NA] + words[1:].tolist()
    if kind == "Int64 NA":
        labels = pd.Series(y, dtype="Int64")
    elif kind == "string NA":
        labels = pd.Series(words, dtype="string")
    else:
        labels = words.copy()
    labels[0] = {"objects with None": None}.get(kind, pd.NA)
    return labels


@pytest.mark.parametrize(
    "kind",
    [
        "string NA",
        "Int64 NA",
        "objects with None",
        "objects with NA",
        "list of None",
        "list of NA",
    ],
)
def test_missing_labels_are_named(multiclass, kind):
    # pandas' NA raised "boolean value of NA is ambiguous" (in scikit-learn's
    # check, as for MLPClassifier); None among strings "'<' not supported"
    X, y = multiclass
    labels = _labels_with_a_missing_one(kind, y)
    match = "Input y contains NaN, NaT, None or pandas' NA"
    classes = np.unique(np.asarray(_labels_with_a_missing_one(kind, y)[1:]))
    for fit in (
        lambda clf: clf.fit(X, labels),
        lambda clf: clf.partial_fit(X, labels, classes=classes),
    ):
        clf = MACHClassifier(**FAST)
        with pytest.raises(ValueError, match=match):
            fit(clf)
        assert not hasattr(clf, "classes_")
    clf = MACHClassifier(**FAST).partial_fit(X[1:], labels[1:], classes=classes)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(X, labels)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_missing_labels_in_a_multilabel_frame_are_named(multilabel):
    pd = pytest.importorskip("pandas")
    X, Y = multilabel
    frame = pd.DataFrame(Y, dtype="Int64")
    frame.iloc[0, 0] = pd.NA
    rows = Y.tolist()
    rows[0][0] = None
    for labels in (frame, rows):
        with pytest.raises(ValueError, match="Input y contains NaN, NaT, None"):
            MACHClassifier(**FAST).fit(X, labels)


def test_a_sparse_frame_of_labels_is_not_made_dense():
    # the check for missing labels read isna() of a sparse frame: a byte a
    # cell (200 MB here), where scikit-learn reads the frame as a sparse
    # matrix
    pd = pytest.importorskip("pandas")
    n, L = 20_000, 10_000
    rng = np.random.RandomState(0)
    Y = sp.csr_matrix(
        (np.ones(n, np.int8), (np.arange(n), rng.randint(0, L, n))), shape=(n, L)
    )
    frame = pd.DataFrame.sparse.from_spmatrix(Y)
    X = rng.rand(n, 5).astype(np.float32)
    clf = MACHClassifier(
        n_buckets=16, n_repetitions=1, hidden_layer_sizes=(), max_epochs=1
    )
    _, peak = traced_peak(lambda: clf.fit(X, frame))
    assert peak < 50 * 2**20, peak


@pytest.mark.parametrize("dtype", ["datetime64[D]", "timedelta64[s]"])
def test_nat_labels_are_refused(multiclass, dtype):
    # fit said "y contains previously unseen labels: NaT", partial_fit
    # printed NaT as None; NaN gets "Input y contains NaN"
    X, y = multiclass
    labels = np.arange(6).astype(dtype)[y]
    labels[0] = np.array("NaT", dtype=dtype)
    for fit in (
        lambda clf: clf.fit(X, labels),
        lambda clf: clf.partial_fit(X, labels, classes=np.arange(6).astype(dtype)),
    ):
        with pytest.raises(ValueError, match="Input y contains NaT"):
            fit(MACHClassifier(**FAST))
    clf = MACHClassifier(**FAST).partial_fit(
        X[1:], labels[1:], classes=np.unique(labels[1:])
    )
    with pytest.raises(ValueError, match="Input y contains NaT"):
        clf.partial_fit(X, labels)


@pytest.mark.parametrize(
    "params",
    [
        dict(batch_size=0),
        dict(batch_size=2.5),
        dict(optimizer="bogus"),
        dict(lr="fast"),
        dict(n_jobs="x"),
    ],
)
def test_partial_fit_checks_parameters_changed_after_the_first_call(multiclass, params):
    # scikit-learn's _fit_context skips parameter validation in partial_fit
    # once fitted: batch_size=0 gave a ZeroDivisionError, "bogus" a KeyError
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).partial_fit(X, y, classes=np.arange(6))
    before = clf.predict_proba(X)
    (name,) = params
    with pytest.raises(ValueError, match=f"'{name}' parameter of MACHClassifier"):
        clf.set_params(**params).partial_fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_a_batch_larger_than_the_data_is_all_of_it(multiclass):
    # batch_size=2**62 (valid, or read from a model file) failed in numpy's
    # reshape: "array is too big"
    X, y = multiclass
    params = dict(FAST, max_epochs=2, random_state=0)
    whole = MACHClassifier(**dict(params, batch_size=len(X))).fit(X, y)
    for batch_size in (len(X) + 1, 2**62):
        clf = MACHClassifier(**dict(params, batch_size=batch_size)).fit(X, y)
        # equal up to rounding: a GPU adds a batch's gradients in any order
        np.testing.assert_allclose(
            clf.predict_proba(X), whole.predict_proba(X), rtol=1e-5, atol=1e-7
        )
        clf.partial_fit(X, y)
        assert clf.batch_size_ == batch_size


def test_a_boolean_n_repetitions_counts_as_one(multiclass):
    # True passes Interval(Integral) as in scikit-learn, which then counts it
    # as 1 (RandomForestClassifier(n_estimators=True)); the hash-table draw
    # failed with "an integer is required"
    X, y = multiclass
    clf = MACHClassifier(random_state=0, **dict(FAST, n_repetitions=True)).fit(X, y)
    assert len(clf.networks_) == 1 and clf.label_hasher_.hash_tables_.shape[0] == 1


def test_feature_hashing_shrinks_the_input_tables(multiclass):
    X, y = multiclass
    X_wide = sp.hstack([sp.csr_matrix(X), sp.csr_matrix((len(X), 5000))]).tocsr()
    plain = MACHClassifier(random_state=0, **FAST).fit(X_wide, y)
    hashed = MACHClassifier(n_hashed_features=64, random_state=0, **FAST).fit(X_wide, y)
    for net in hashed.networks_:
        assert net.input_weight.shape == (64, 32)
    assert plain.networks_[0].input_weight.shape == (5020, 32)
    # A different feature hash in every repetition.
    rows = [net.feature_rows.numpy() for net in hashed.networks_]
    assert not np.array_equal(rows[0], rows[1])
    assert hashed.score(X_wide, y) > 0.85
    # Dense input takes the same hashed weights.
    np.testing.assert_allclose(
        hashed.predict_proba(X_wide.toarray()), hashed.predict_proba(X_wide), atol=1e-5
    )


@pytest.mark.parametrize("n_hashed_features", [20, 64, np.int64(10**6)])
def test_hashing_that_cannot_shrink_keeps_a_row_per_feature(
    multiclass, n_hashed_features
):
    # 20 features hashed into 20 or more rows: the table would only grow,
    # and collide features that a row each keeps apart
    X, y = multiclass
    params = dict(FAST, n_repetitions=2, random_state=0)
    plain = MACHClassifier(n_hashed_features=None, **params).fit(X, y)
    clf = MACHClassifier(n_hashed_features=n_hashed_features, **params).fit(X, y)
    assert clf.n_hashed_features == n_hashed_features  # stored verbatim
    assert clf.n_hashed_features_ is None
    for net, same in zip(clf.networks_, plain.networks_):
        assert net.input_weight.shape == (20, 32)
        assert net.feature_rows is None
        for a, b in zip(net.parameters(), same.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the parameter still matches the model: partial_fit continues
    clf.partial_fit(X[:50], y[:50])
    clf.set_params(n_hashed_features=19)
    with pytest.raises(ValueError, match=r"n_hashed_features=19 \(fitted: None\)"):
        clf.partial_fit(X[:50], y[:50])


def test_models_hashing_into_more_rows_than_features_still_continue(
    multiclass, monkeypatch, tmp_path
):
    # fitted before n_hashed_features_ resolved to None there: 64 hashed rows
    # for 20 features, which the same parameter must still continue and save
    from sklearn_mach import _classifier

    X, y = multiclass
    monkeypatch.setattr(_classifier, "_input_rows", lambda h, n: h and int(h))
    old = MACHClassifier(n_hashed_features=64, random_state=0, **FAST).fit(X, y)
    monkeypatch.undo()
    assert old.n_hashed_features_ == 64
    old.partial_fit(X[:50], y[:50])
    old.save(tmp_path / "old.skmach")
    loaded = MACHClassifier.load(tmp_path / "old.skmach")
    loaded.partial_fit(X[:50], y[:50])
    assert loaded.networks_[0].input_weight.shape == (64, 32)
    loaded.set_params(n_hashed_features=None)
    with pytest.raises(ValueError, match=r"n_hashed_features=None \(fitted: 64\)"):
        loaded.partial_fit(X[:50], y[:50])
    # the message names the value set, not the one it resolves to
    hashed = MACHClassifier(n_hashed_features=10, random_state=0, **FAST).fit(X, y)
    hashed.set_params(n_hashed_features=64)
    with pytest.raises(ValueError, match=r"n_hashed_features=64 \(fitted: 10\)"):
        hashed.partial_fit(X[:50], y[:50])


def test_candidate_top_k_falls_back_when_too_few_candidates(multilabel):
    X, Y = multilabel
    # 12 labels in 64 buckets: one bucket per repetition holds < 5 labels.
    clf = MACHClassifier(random_state=0, **dict(FAST, n_buckets=64)).fit(X, Y)
    labels, scores = clf.predict_top_k(X, k=5, n_candidate_buckets=1)
    exact_labels, exact_scores = clf.predict_top_k(X, k=5)
    assert labels.min() >= 0
    assert all(len(set(row)) == 5 for row in labels)  # distinct classes
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_exact_top_k_prunes_many_classes(aggregation, task):
    # K = 600 classes in B = 32 buckets, R = 2: exact top-k goes through the
    # threshold algorithm and must still equal the dense top-k.
    rng = np.random.RandomState(0)
    n_classes, n_samples = 600, 1300
    X = rng.rand(n_samples, 10).astype(np.float32)
    if task == "multiclass":
        y = np.arange(n_samples) % n_classes  # every class seen
    else:
        y = np.zeros((n_samples, n_classes), dtype=int)
        y[np.arange(n_samples), np.arange(n_samples) % n_classes] = 1
        y[np.arange(n_samples), rng.randint(0, n_classes, n_samples)] = 1
    params = dict(n_buckets=32, n_repetitions=2, hidden_layer_sizes=(16,), max_epochs=3)
    clf = MACHClassifier(aggregation=aggregation, random_state=0, **params).fit(X, y)
    assert sklearn_mach._decoding.pruning_pays(n_classes, 32, 2)
    full = clf.decision_function(X[:200])
    labels, scores = clf.predict_top_k(X[:200], k=5)
    index = np.searchsorted(clf.classes_, labels)
    kth = np.sort(full, axis=1)[:, -5]
    np.testing.assert_allclose(
        scores, np.take_along_axis(full, index, 1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(scores[:, -1], kth, rtol=1e-5, atol=1e-6)
    assert all(len(set(row)) == 5 for row in labels)


def test_predict_with_many_classes_is_the_argmax():
    rng = np.random.RandomState(0)
    X = rng.rand(1300, 10).astype(np.float32)
    y = np.array([f"class-{i % 600}" for i in range(1300)])  # any label type
    clf = MACHClassifier(
        n_buckets=32,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        max_epochs=3,
        random_state=0,
    ).fit(X, y)
    assert sklearn_mach._decoding.pruning_pays(600, 32, 2)
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(
        clf.predict(X), clf.classes_[np.argmax(proba, axis=1)]
    )


@pytest.mark.usefixtures("cpu_decoding")
def test_exact_top_k_is_the_same_in_small_chunks(monkeypatch):
    # Memory bounds: outputs, candidate rounds and the dense fallback split
    # their rows by scikit-learn's working_memory; the answer must not
    # depend on it.  device="cpu": the pruned (certified) path runs on the
    # CPU only, a GPU decodes densely.
    rng = np.random.RandomState(0)
    X = rng.rand(1300, 10).astype(np.float32)
    y = np.arange(1300) % 600
    clf = MACHClassifier(
        n_buckets=32,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        max_epochs=3,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    expected = clf.predict_top_k(X, k=5)
    # k = 60 is more than the classes of one bucket per repetition (about
    # 2 * 600 / 32): those rows are scored over all classes.
    expected_short = clf.predict_top_k(X, k=60, n_candidate_buckets=1)
    rows_per_round = []
    certify = sklearn_mach._decoding._certify_round
    monkeypatch.setattr(
        sklearn_mach._decoding,
        "_certify_round",
        lambda *a: rows_per_round.append(len(a[0][0])) or certify(*a),
    )
    with sklearn.config_context(working_memory=0.002):  # about 2 kB: many chunks
        for got, want in [
            (clf.predict_top_k(X, k=5), expected),
            (clf.predict_top_k(X, k=60, n_candidate_buckets=1), expected_short),
        ]:
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
            np.testing.assert_array_equal(got[0], want[0])
    # the caller's working_memory reaches the decoding threads
    assert rows_per_round and max(rows_per_round) <= 2


def test_early_stopping_keeps_the_best_epoch(multiclass):
    X, y = multiclass
    params = dict(FAST, max_epochs=30, early_stopping=True, random_state=0)
    clf = MACHClassifier(**params).fit(X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ <= 30 and len(clf.histories_[0]) == clf.n_iter_
    assert clf.best_validation_score_ == max(scores) and 0 <= min(scores) <= 1
    # no gain can reach tol=1: stop after n_iter_no_change stale epochs
    strict = MACHClassifier(**dict(params, tol=1.0, n_iter_no_change=2)).fit(X, y)
    assert strict.n_iter_ == 3
    # the networks of the best epoch are kept, not the last ones
    best = int(np.argmax(strict.validation_scores_))
    assert strict.score(X, y) == pytest.approx(
        MACHClassifier(**dict(params, tol=1.0, n_iter_no_change=2, max_epochs=best + 1))
        .fit(X, y)
        .score(X, y)
    )
    with pytest.raises(ValueError, match="validation_fraction.* out of 20 samples"):
        MACHClassifier(**dict(params, validation_fraction=0.999)).fit(X[:20], y[:20])
    # the samples of weight 0 are left out first: the message counted the rest
    # as all the samples ("out of 1 samples" for 40)
    weights = np.zeros(40)
    weights[0] = 1
    with pytest.raises(ValueError, match="out of the 1 samples of non-zero weight"):
        MACHClassifier(**params).fit(X[:40], y[:40], sample_weight=weights)
    streamed = MACHClassifier(**params).partial_fit(X, y, classes=np.unique(y))
    assert streamed.n_iter_ == 1 and streamed.validation_scores_ is None
    assert MACHClassifier(**FAST).fit(X, y).best_validation_score_ is None


def test_validation_scores_weigh_the_held_out_samples(multiclass):
    # as MLPClassifier's: the sample weights of the held-out rows weigh
    # their hits (the scores counted hits unweighted)
    X, y = multiclass
    weights = np.where(np.arange(len(y)) % 3 == 0, 10.0, 0.1)
    params = dict(FAST, max_epochs=1, early_stopping=True, random_state=0)
    clf = MACHClassifier(**params).fit(X, y, sample_weight=weights)
    # fit's draws from random_state: the hasher's seed, the networks' seeds,
    # then the split's
    rng = np.random.RandomState(0)
    rng.randint(np.iinfo(np.int32).max)
    rng.randint(np.iinfo(np.int32).max, size=FAST["n_repetitions"])
    order = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
    valid = np.sort(order.permutation(len(y))[: round(0.1 * len(y))])
    hit = clf.predict(X[valid]) == y[valid]
    assert 0 < hit.mean() < 1
    expected = (weights[valid] * hit).sum() / weights[valid].sum()
    assert clf.validation_scores_ == [pytest.approx(expected, rel=1e-12)]
    assert expected != pytest.approx(hit.mean())
    # equal weights of any size: the unweighted score, bit for bit (0.1
    # summed to 0.5666666666666665 for 0.5666666666666667; 1e308 to nan)
    unweighted = MACHClassifier(**params).fit(X, y).validation_scores_
    for weight in (0.1, 1e308):
        equal = np.full(len(y), weight)
        assert (
            MACHClassifier(**params).fit(X, y, sample_weight=equal).validation_scores_
            == unweighted
        )


def test_multilabel_validation_scores_count_hits(multilabel):
    # P@1 summed the targets' float32 values: 0.10000000149011612 for 3 hits
    # in 30, and 3 a hit for a target of {0, 3}, which trains as {0, 1}
    X, Y = multilabel
    params = dict(FAST, max_epochs=4, early_stopping=True, random_state=0)
    clf = MACHClassifier(**params).fit(X, Y)
    n_validation = 30  # validation_fraction=0.1 of 300
    hits = np.asarray(clf.validation_scores_) * n_validation
    np.testing.assert_array_equal(hits, np.round(hits))
    assert clf.validation_scores_ == [h / n_validation for h in np.round(hits)]
    assert MACHClassifier(**params).fit(X, 3 * Y).validation_scores_ == (
        clf.validation_scores_
    )


def test_partial_fit_does_not_sort_sorted_classes_again(sorted_sizes):
    # At K = 3e6 each later partial_fit call spent 2.6 s (5.4 s with
    # `classes` passed again) sorting the classes to check y's labels,
    # against 0.05 s of training on 256 rows; a sorted `classes` on the
    # first call was sorted twice.  Sorted classes need a binary search.
    K = 50_000
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4).astype(np.float32), rng.randint(0, K, 60)
    clf = MACHClassifier(**dict(FAST, n_buckets=64, n_repetitions=2), random_state=0)
    for classes in (np.arange(K), None, np.arange(K)):
        sorted_sizes.clear()
        clf.partial_fit(X, y, classes=classes)
        assert max(sorted_sizes, default=0) < K
    for label in (-1, K):  # below and above every class
        with pytest.raises(ValueError, match="not among the classes the model"):
            clf.partial_fit(X, np.where(np.arange(60) == 7, label, y))
    letters = MACHClassifier(**FAST, random_state=0)
    words = np.array(["a", "c", "e"])[np.arange(60) % 3]
    with pytest.raises(ValueError, match="y has labels not among classes"):
        letters.partial_fit(X, np.where(np.arange(60) == 7, "b", words), classes=words)
    letters.partial_fit(X, words, classes=["a", "c", "e"])
    with pytest.raises(ValueError, match="not among the classes the model"):
        letters.partial_fit(X, np.where(np.arange(60) == 7, "d", words))
    with pytest.raises(ValueError, match="not the same as the model.s classes_"):
        clf.partial_fit(X, y, classes=np.arange(1, K + 1))
    np.testing.assert_array_equal(clf.classes_, np.arange(K))


def test_partial_fit_labels_beyond_float64_precision():
    # int64 and uint64 compare as float64 in numpy's searchsorted: 2**62 + 1
    # was found at 2**62's place and refused as not among the classes
    X = np.random.RandomState(0).rand(4, 3).astype(np.float32)
    classes = np.array([2**62, 2**62 + 1])
    y = np.array([2**62, 2**62 + 1, 2**62, 2**62 + 1], np.uint64)
    clf = MACHClassifier(n_buckets=2, n_repetitions=1, random_state=0, max_epochs=1)
    clf.partial_fit(X, y, classes=classes)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.classes_, classes)
    with pytest.raises(ValueError, match="not among the classes the model"):
        clf.partial_fit(X, y + np.uint64(2))
    # float 2**53 is not the integer class 2**53 + 1 (LabelEncoder refuses it)
    big = MACHClassifier(n_buckets=2, n_repetitions=1, random_state=0, max_epochs=1)
    with pytest.raises(ValueError):
        big.partial_fit(X[:2], np.array([1, 2.0**53]), classes=[1, 2**53 + 1])


def test_partial_fit_encodes_string_labels_without_a_dict_of_the_classes(
    monkeypatch,
):
    # LabelEncoder.transform maps strings through a dict of every class,
    # built anew on each call: 0.65 s of a later partial_fit call on 256
    # rows at a million classes.  Sorted classes need a binary search.
    import sklearn.utils._encode as encode

    calls = []
    mapped = encode._map_to_integer
    monkeypatch.setattr(
        encode, "_map_to_integer", lambda *a: calls.append(1) or mapped(*a)
    )
    K = 5000
    classes = np.array([f"c{i:05d}" for i in range(K)])
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4).astype(np.float32), classes[rng.randint(0, K, 60)]
    clf = MACHClassifier(**dict(FAST, n_buckets=64, n_repetitions=2), random_state=0)
    clf.partial_fit(X, y, classes=classes[::-1])  # unsorted: LabelEncoder sorts
    clf.partial_fit(X, y)
    assert not calls
    np.testing.assert_array_equal(clf.classes_, classes)


def test_partial_fit_searches_strings_in_object_arrays(monkeypatch):
    # pandas' strings (object arrays) went through np.setdiff1d and the
    # LabelEncoder's dict of every class at each call: at a million
    # classes 4.6 s for a call on 256 rows, 0.04 s for numpy strings
    import sklearn.utils._encode as encode

    K = 5000
    classes = np.array([f"c{i:05d}" for i in range(K)], dtype=object)
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4).astype(np.float32), classes[rng.randint(0, K, 60)]
    clf = MACHClassifier(**dict(FAST, n_buckets=64, n_repetitions=2), random_state=0)
    clf.partial_fit(X, y, classes=classes)

    def forbidden(*args, **kwargs):
        raise AssertionError("the classes were sorted or mapped again")

    monkeypatch.setattr(encode, "_map_to_integer", forbidden)
    monkeypatch.setattr(np, "setdiff1d", forbidden)
    pd = pytest.importorskip("pandas")
    for labels in (y, y.astype(str), pd.Series(y)):  # after load: object classes
        clf.partial_fit(X, labels)
    assert clf.classes_.dtype == object
    np.testing.assert_array_equal(clf.classes_, classes)
    with pytest.raises(ValueError, match="not among"):
        clf.partial_fit(X[:1], np.array(["zzz"], dtype=object))
    with pytest.raises(ValueError):
        clf.partial_fit(X[:1], np.array([1], dtype=object))


def test_refit_releases_the_last_fits_prediction_cache(multiclass):
    # the decoder (and device copies) predictions reuse were kept with the
    # hasher (networks) they came from until the next prediction: a refit
    # model held its previous fit's bucket table; partial_fit, which keeps
    # the hasher, keeps its decoder
    import gc
    import weakref

    X, y = multiclass
    clf = MACHClassifier(random_state=0, **FAST).fit(X, y)
    clf.predict(X)
    decoder = clf._decoder()
    clf.partial_fit(X, y)
    assert clf._decoder() is decoder
    old = weakref.ref(clf.label_hasher_)
    del decoder
    clf.set_params(random_state=1).fit(X, y)
    gc.collect()
    assert old() is None


def test_device_copies_follow_networks_changed_in_place(multiclass, monkeypatch):
    # an accelerator predicts with copies of networks_ kept on it: an
    # in-place change of the networks (load_state_dict, a replaced network)
    # was ignored there, where the CPU, which runs networks_, saw it
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", set())  # copies on the CPU
    X, y = multiclass
    params = dict(FAST, max_epochs=2)
    clf = MACHClassifier(random_state=0, **params).fit(X, y)
    other = MACHClassifier(random_state=1, **params).fit(X, y)
    before = clf.predict_proba(X)
    for net, new in zip(clf.networks_, other.networks_):
        net.load_state_dict(new.state_dict())
    changed = clf.predict_proba(X)
    assert np.abs(changed - before).max() > 1e-3
    clf.networks_[0] = copy.deepcopy(clf.networks_[0])
    with torch.no_grad():
        clf.networks_[0].input_bias.add_(1.0)  # a new network, then edited
    edited = clf.predict_proba(X)
    assert np.abs(edited - changed).max() > 1e-3
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", {"cpu"})
    np.testing.assert_allclose(clf.predict_proba(X), edited, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", set())
    # a new .data is seen too
    with torch.no_grad():
        clf.networks_[1].input_bias.data = clf.networks_[1].input_bias + 1.0
    assert np.abs(clf.predict_proba(X) - edited).max() > 1e-3
    # what has no version counter: a module's extra state (any object) and a
    # model loaded in inference mode (reading _version raised on both)
    noted = MACHClassifier(random_state=0, module=WithExtraState, **params).fit(X, y)
    assert noted.predict(X).shape == y.shape
    # which the model file cannot hold: an AttributeError in save before
    with pytest.raises(ValueError, match="_extra_state: it is a dict, not a tensor"):
        noted.save(io.BytesIO())
    buffer = io.BytesIO()
    clf.save(buffer)
    with torch.inference_mode():
        buffer.seek(0)
        loaded = MACHClassifier.load(buffer)
        unpickled = pickle.loads(pickle.dumps(clf))  # inference tensors
    assert not any(p.is_inference() for p in loaded.networks_[0].parameters())
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    unpickled.predict_proba(X)
    with torch.inference_mode():  # an in-place change no version counter sees
        unpickled.networks_[0].load_state_dict(other.networks_[0].state_dict())
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", {"cpu"})
    expected = unpickled.predict_proba(X)
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", set())
    np.testing.assert_allclose(unpickled.predict_proba(X), expected, rtol=1e-5)
    # a sparse buffer has no storage pointer (data_ptr raised)
    sparse = MACHClassifier(random_state=0, module=SparseBuffer, **params).fit(X, y)
    assert sparse.predict(X).shape == y.shape


class SparseBuffer(torch.nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.register_buffer("mix", torch.eye(n_features).to_sparse())
        self.linear = torch.nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.linear(torch.sparse.mm(self.mix, X.T).T)


class WithExtraState(torch.nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_outputs)
        self.note = {"trained_on": "v1"}

    def forward(self, X):
        return self.linear(X)

    def get_extra_state(self):
        return self.note

    def set_extra_state(self, state):
        self.note = state


def test_a_prediction_during_a_failed_refit_leaves_the_model_as_it_was(
    multiclass, monkeypatch
):
    # a prediction in another thread while a refit with another n_buckets
    # ran cached a decoder of the old hasher with the new n_buckets_; the
    # failed refit restored the estimator but not the cache: wrong scores
    # for good, and an IndexError from predict_top_k's candidates
    X, y = multiclass
    params = dict(FAST, max_epochs=1, aggregation="unbiased")
    clf = MACHClassifier(random_state=0, **params).fit(X, y)
    before = clf.predict_proba(X), clf.predict_top_k(X, 3, n_candidate_buckets=2)
    forget_cached(clf)  # no decoder kept: the one built mid-refit counts

    def fail_after_predicting(self, *args, **kwargs):
        self.predict_proba(X)  # as another thread would, mid-refit
        raise ValueError("the refit fails")

    # a context of its own: undo() would also lift conftest's switches
    with monkeypatch.context() as patched:
        patched.setattr(MACHClassifier, "_train", fail_after_predicting)
        with pytest.raises(ValueError, match="the refit fails"):
            clf.set_params(n_buckets=64).fit(X, y)
    clf.set_params(n_buckets=FAST["n_buckets"])
    np.testing.assert_array_equal(clf.predict_proba(X), before[0])
    top = clf.predict_top_k(X, 3, n_candidate_buckets=2)
    np.testing.assert_array_equal(top[0], before[1][0])


def test_a_failed_fit_drops_what_was_cached_from_its_state(multiclass, monkeypatch):
    # a failure after fit put in its new hasher (here in _join_histories),
    # with a prediction meanwhile, left that hasher's decoder cached
    from sklearn_mach._utils import _CACHE

    X, y = multiclass
    clf = MACHClassifier(random_state=0, **dict(FAST, max_epochs=1)).fit(X, y)
    before, hasher = clf.predict_proba(X), clf.label_hasher_

    def fail_after_the_swap(self, *args):
        self.predict_proba(X)  # as another thread would
        raise ValueError("a late failure")

    with monkeypatch.context() as patched:  # not undo(): conftest's switches
        patched.setattr(MACHClassifier, "_join_histories", fail_after_the_swap)
        with pytest.raises(ValueError, match="a late failure"):
            clf.set_params(n_buckets=64).fit(X, y)
    owners = [owner for owner, *_ in _CACHE.get(clf, {}).values()]
    assert all(owner is hasher or owner is clf.networks_ for owner in owners)
    clf.set_params(n_buckets=FAST["n_buckets"])
    np.testing.assert_array_equal(clf.predict_proba(X), before)
