"""The training loop: trainers, batches, groups, weights and histories."""

import threading

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
import torch
from sklearn.datasets import make_classification, make_multilabel_classification

import sklearn_mach._network as network_module
import sklearn_mach._training as training
from sklearn_mach import MACHClassifier, MACHNetwork
from sklearn_mach._device import resolve_device
from sklearn_mach._training import (
    BatchIterator,
    Trainer,
    TrainingData,
    build_module,
    group_repetitions,
)


def wide_sparse(n_samples=400, n_features=5000, n_classes=6, seed=0):
    """Classes marked by a few of many features: sparse gradients switch on."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n_samples)
    marks = rng.randint(n_features, size=(n_classes, 4))
    cols = np.concatenate(
        [marks[y], rng.randint(n_features, size=(n_samples, 2))], axis=1
    )
    X = sp.csr_matrix(
        (
            np.ones(cols.size, np.float32),
            (np.repeat(np.arange(n_samples), 6), cols.ravel()),
        ),
        shape=(n_samples, n_features),
    )
    return X, y


#: A small classifier for wide_sparse, on the CPU (bitwise equal fits).
WIDE_PARAMS = dict(
    n_buckets=8,
    n_repetitions=3,
    hidden_layer_sizes=(16,),
    batch_size=64,
    device="cpu",
    random_state=0,
)


@pytest.mark.parametrize("row_sum", [False, True])
def test_wide_sparse_input_switches_sparse_gradients_on(row_sum, monkeypatch):
    # the table's gradient summed by row (the CPU) or as embedding_bag gives
    # it (switched off, as on a GPU); a group (on a GPU, or on the CPU under
    # SKLEARN_MACH_TEST_GROUPED=1) trains a GroupedMACHNetwork, which always
    # takes embedding_bag's
    device = torch.device(resolve_device("auto")).type
    row_summed = row_sum and device == "cpu" and device not in training._GROUPED_DEVICES
    monkeypatch.setattr(MACHNetwork, "_ROW_SUM_DEVICES", {"cpu"} if row_sum else set())
    calls = []
    backward = network_module._TableBag.backward

    def counted(ctx, grad):
        calls.append(grad.shape)
        return backward(ctx, grad)

    monkeypatch.setattr(network_module._TableBag, "backward", staticmethod(counted))
    X, y = wide_sparse()
    assert training.sparse_gradient_pays(X, 64)
    clf = MACHClassifier(
        n_buckets=8,
        n_repetitions=3,
        hidden_layer_sizes=(16,),
        batch_size=64,
        max_epochs=8,
        random_state=0,
    ).fit(X, y)
    assert all(net.sparse_gradient for net in clf.networks_)
    assert clf.score(X, y) > 0.9
    # every step of the fit: 3 networks, 8 epochs of 7 batches
    assert len(calls) == (3 * 8 * 7 if row_summed else 0)


def test_optimizers_that_are_not_elementwise_train_each_network_alone(monkeypatch):
    # Stacked in a group, an optimizer that looks across all its parameters
    # (here: the gradient's global norm) coupled the networks: the CUDA fit
    # was not the CPU fit.  Such optimizers now train one network at a time.
    from .modules import GlobalNormSGD

    X, y = make_classification(
        n_samples=300,
        n_features=12,
        n_informative=8,
        n_classes=4,
        n_clusters_per_class=1,
        random_state=0,
    )
    params = dict(
        n_buckets=4,
        n_repetitions=3,
        hidden_layer_sizes=(8,),
        max_epochs=3,
        batch_size=32,
        lr=0.05,
        optimizer=GlobalNormSGD,
        random_state=0,
    )
    fits = []
    for devices in ({"cuda"}, {"cpu", "cuda"}):
        monkeypatch.setattr(training, "_GROUPED_DEVICES", devices)
        fits.append(MACHClassifier(**params).fit(X, y))
    for a, b in zip(*[fit.networks_ for fit in fits]):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert training.groups_exactly("adam") and training.groups_exactly("sgd")
    assert not training.groups_exactly(GlobalNormSGD)


def test_stored_zeros_train_the_same_model():
    # An explicitly stored 0 used to count as a feature of its row: the
    # sparse gradient touched that input-table row, and Adam moved it.
    X, y = wide_sparse()
    n = X.shape[0]
    zero_cols = X.shape[1] - 1 - np.arange(n) % 50  # one stored 0 per row
    with_zeros = sp.csr_matrix(
        (
            np.r_[X.data, np.zeros(n, np.float32)],
            (
                np.r_[np.repeat(np.arange(n), np.diff(X.indptr)), np.arange(n)],
                np.r_[X.indices, zero_cols],
            ),
        ),
        shape=X.shape,
    )
    assert with_zeros.nnz == X.nnz + n and abs(with_zeros - X).max() == 0
    stored = with_zeros.data.copy()
    params = dict(
        n_buckets=8,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        batch_size=64,
        max_epochs=3,
        device="cpu",  # bitwise equal fits: CUDA's atomic adds round differently
        random_state=0,
    )
    a = MACHClassifier(**params).fit(X, y)
    b = MACHClassifier(**params).fit(with_zeros, y)
    assert all(net.sparse_gradient for net in b.networks_)
    for p, q in zip(a.networks_, b.networks_):
        for u, v in zip(p.parameters(), q.parameters()):
            assert torch.equal(u, v)
    np.testing.assert_array_equal(with_zeros.data, stored)  # the input is not changed
    # duplicates that cancel (+1 and -1 in one column) are a stored 0 too;
    # they trained another model (the column's row in the sparse gradient)
    data, indices, indptr = [], [], [0]
    for i in range(n):
        row = slice(X.indptr[i], X.indptr[i + 1])
        data += [*X.data[row], 1.0, -1.0]
        indices += [*X.indices[row], zero_cols[i], zero_cols[i]]
        indptr.append(len(data))
    cancelling = sp.csr_matrix(
        (np.array(data, np.float32), indices, indptr), shape=X.shape
    )
    assert cancelling.nnz == X.nnz + 2 * n and abs(cancelling - X).max() == 0
    c = MACHClassifier(**params).fit(cancelling, y)
    for p, q in zip(a.networks_, c.networks_):
        for u, v in zip(p.parameters(), q.parameters()):
            assert torch.equal(u, v)
    assert cancelling.nnz == X.nnz + 2 * n  # the input is not changed


def test_the_accelerator_paths_switch_holds_in_worker_processes():
    # SKLEARN_MACH_TEST_GROUPED=1 was applied by the tests' conftest in the
    # pytest process only: loky and Dask workers trained and predicted the
    # CPU's way, under a run meant to test the GPU's.  It is now read when
    # sklearn-mach is imported, which worker processes do afresh.
    import os
    import subprocess
    import sys

    from .modules import device_paths

    code = "from tests.modules import device_paths; print(device_paths())"
    forced, plain = (
        subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, SKLEARN_MACH_TEST_GROUPED=value),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for value in ("1", "0")
    )
    assert plain == str(
        dict(grouped=["cuda"], sync_free=["cuda"], flush=["cpu"], staged=["cuda"],
             cut=["cpu"], row_sum=["cpu"], shared=["cpu"], decoding=["cpu"],
             infer_rows=["cpu"])
    )  # fmt: skip
    assert forced == str(
        dict(grouped=["cpu", "cuda"], sync_free=["cpu", "cuda"], flush=[],
             staged=["cpu", "cuda"], cut=[], row_sum=[], shared=[], decoding=[],
             infer_rows=[])
    )  # fmt: skip
    # the paths of this run, whichever it is, are the loky workers'
    here = device_paths()
    with joblib.parallel_config(backend="loky", n_jobs=2):
        workers = joblib.Parallel()(joblib.delayed(device_paths)() for _ in range(2))
    assert workers == [here, here]


@pytest.mark.parametrize("cuda_paths", [False, True], ids=["cpu", "cuda-on-cpu"])
def test_device_switches_choose_the_sparse_update_of_a_fit(cuda_paths, monkeypatch):
    # The switches that SKLEARN_MACH_TEST_GROUPED=1 sets (tests/conftest.py)
    # do reach a fit: the CUDA pass updates the input tables without
    # coalescing, the CPU coalesces.
    from sklearn_mach._optim import LazyAdam

    devices = {"cpu", "cuda"} if cuda_paths else {"cuda"}
    monkeypatch.setattr(training, "_GROUPED_DEVICES", devices)
    monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", devices)
    calls = {"_sparse_update": 0, "_sparse_update_sync_free": 0}
    for name in calls:
        original = getattr(LazyAdam, name)

        def spy(self, *args, _name=name, _original=original):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(LazyAdam, name, spy)
    X, y = wide_sparse(n_samples=128)
    MACHClassifier(
        n_buckets=8,
        n_repetitions=2,
        hidden_layer_sizes=(8,),
        batch_size=64,
        max_epochs=1,
        device="cpu",  # the switches, not a CUDA machine's "auto", choose
        random_state=0,
    ).fit(X, y)
    if cuda_paths:  # one group of 2, 2 steps
        assert calls == {"_sparse_update": 0, "_sparse_update_sync_free": 2}
    else:  # 2 networks, 2 steps each
        assert calls == {"_sparse_update": 4, "_sparse_update_sync_free": 0}


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("data", ["dense", "sparse", "wide-sparse"])
def test_grouped_training_is_separate_training(task, data):
    B = 8
    if data == "wide-sparse":
        X, y = wide_sparse(300)
        Y = np.eye(6, dtype=int)[y] | np.eye(6, dtype=int)[(y + 1) % 6]
    else:
        X, y = make_classification(
            n_samples=300, n_features=15, n_informative=8, n_classes=4, random_state=0
        )
        Y = make_multilabel_classification(
            n_samples=300, n_features=15, n_classes=B, random_state=0
        )[1]
        X = X.astype(np.float32)
        if data == "sparse":
            X = sp.csr_matrix(X)
    if task == "multiclass":
        targets = [((y * (r + 3)) % B)[None] for r in range(2)]  # two bucket maps
    else:
        targets = [
            sp.csr_matrix(Y[:, :B].astype(np.float32)),
            sp.csr_matrix(Y[:, ::-1][:, :B].astype(np.float32)),
        ]
        targets = [
            sp.csr_matrix(np.pad(t.toarray(), ((0, 0), (0, B - t.shape[1]))))
            for t in targets
        ]
    sparse_gradient = training.sparse_gradient_pays(X, 64)
    assert sparse_gradient == (data == "wide-sparse")
    weights = np.random.RandomState(0).rand(X.shape[0]) + 0.5

    def module(seed):
        return build_module(None, X.shape[1], B, (16,), sparse_gradient, seed=seed)

    common = dict(
        multilabel=task == "multilabel",
        optimizer="adam",
        lr=1e-2,
        batch_size=64,
        device="cpu",
    )
    # Each network draws its own batches from its own seed, in a group as
    # alone: a network trained alone is its group member.
    seeds = [7, 12]
    alone = [
        Trainer([r], [module(5 + r)], grouped=False, **common).run(
            X, t, weights, 3, seeds=[seeds[r]]
        )
        for r, t in enumerate(targets)
    ]
    stacked = (
        sp.vstack(targets, format="csr")
        if task == "multilabel"
        else np.concatenate(targets)
    )
    group = Trainer([0, 1], [module(5), module(6)], grouped=True, **common).run(
        X, stacked, weights, 3, seeds=seeds
    )
    Xt = torch.from_numpy(np.asarray(X.todense() if sp.issparse(X) else X))
    together = group.networks()
    with torch.no_grad():
        for trainer, net, history in zip(alone, together, group.histories):
            assert type(net) is MACHNetwork and net.sparse_gradient == sparse_gradient
            torch.testing.assert_close(
                net(Xt), trainer.networks()[0](Xt), rtol=1e-4, atol=1e-4
            )
            # each network's own loss per epoch, not the group's
            np.testing.assert_allclose(
                history[:, "train_loss"],
                trainer.histories[0][:, "train_loss"],
                rtol=1e-4,
            )


def test_classifier_trains_groups_and_groups_do_not_change_the_model(monkeypatch):
    built = []

    class Spy(training.GroupedMACHNetwork):
        def __init__(self, networks):
            built.append(len(networks))
            super().__init__(networks)

    monkeypatch.setattr(training, "GroupedMACHNetwork", Spy)
    monkeypatch.setattr(training, "_GROUPED_DEVICES", {"cpu", "cuda"})
    X, y = wide_sparse()
    params = dict(WIDE_PARAMS, max_epochs=6)
    clf = MACHClassifier(**params).fit(X, y)
    assert built == [3]  # one group: all three fit the memory budget
    assert all(
        type(net) is MACHNetwork and net.sparse_gradient for net in clf.networks_
    )
    assert clf.score(X, y) > 0.9
    losses = [h[:, "train_loss"] for h in clf.histories_]
    assert len({tuple(loss) for loss in losses}) == 3  # per network, not shared
    expected = clf.predict_proba(X)
    with sklearn.config_context(working_memory=0.2):  # groups sized by the budget
        small = MACHClassifier(**params).fit(X, y)
    assert built[1:] and all(size < 3 for size in built[1:])
    two = len(built)
    with joblib.parallel_config(backend="threading"):  # the spy stays in-process
        MACHClassifier(n_jobs=2, **params).fit(X, y)  # a group per worker
    assert sorted(built[two:]) == [1, 2]
    monkeypatch.setattr(training, "_GROUPED_DEVICES", set())
    alone = MACHClassifier(**params).fit(X, y)  # every repetition alone
    assert len(built) == two + 2
    # Each network draws its own batches: groups change rounding, not the model.
    for other in (small, alone):
        np.testing.assert_allclose(other.predict_proba(X), expected, atol=1e-4)
        for a, b in zip(other.histories_, clf.histories_):
            np.testing.assert_allclose(
                a[:, "train_loss"], b[:, "train_loss"], rtol=1e-4
            )


def test_group_repetitions_by_memory_and_workers():
    assert group_repetitions(5, False, 10, "cpu") == [[0], [1], [2], [3], [4]]
    with sklearn.config_context(working_memory=1):  # 1 MiB
        assert group_repetitions(5, True, 400_000, "cpu") == [[0, 1], [2, 3], [4]]
        assert group_repetitions(5, True, 10, "cpu") == [[0, 1, 2, 3, 4]]
        assert group_repetitions(2, True, 10**9, "cpu") == [[0], [1]]
        # a group for every worker, sizes one apart at most: 5 over 4
        # workers made [[0, 1], [2, 3], [4]], one worker idle
        assert group_repetitions(5, True, 10, "cpu", n_workers=2) == [
            [0, 1, 2],
            [3, 4],
        ]
        assert group_repetitions(5, True, 10, "cpu", n_workers=4) == [
            [0, 1],
            [2],
            [3],
            [4],
        ]
        assert group_repetitions(2, True, 10, "cpu", n_workers=4) == [[0], [1]]
        # three groups of at most 4 (the budget) hold 10: 4, 3, 3
        assert group_repetitions(10, True, 250_000, "cpu") == [
            [0, 1, 2, 3],
            [4, 5, 6],
            [7, 8, 9],
        ]
    for r in range(1, 40):
        for workers in range(1, 9):
            for per_network in (10, 150_000, 400_000, 10**9):
                with sklearn.config_context(working_memory=1):
                    groups = group_repetitions(r, True, per_network, "cpu", workers)
                    largest = max(1, (2**20) // per_network)
                assert sum(groups, []) == list(range(r))
                sizes = [len(g) for g in groups]
                assert len(groups) >= min(r, workers)
                assert max(sizes) - min(sizes) <= 1
                assert max(sizes) <= largest or max(sizes) == 1


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("sparse", [False, True])
def test_training_data_batches_are_each_networks_permuted_rows(sparse, task):
    rng = np.random.RandomState(0)
    X = sp.random(50, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    X = X if sparse else X.toarray()
    if task == "multilabel":
        targets = [
            sp.random(
                50, 6, density=0.3, format="csr", random_state=s, dtype=np.float32
            )
            for s in (1, 2)
        ]
        for t in targets:
            t.data[:] = 1
        stacked = sp.vstack(targets, format="csr")
    else:
        targets = [rng.randint(6, size=50) for _ in range(2)]
        stacked = np.stack(targets)
    # distinct weights name the rows; in [1, 2), TrainingData keeps them as
    # they are (it scales others there by a power of 2)
    weights = (1 + rng.rand(50)).astype(np.float32)
    data = TrainingData(X, stacked, weights, "cpu", sparse_input=sparse)
    iterator = BatchIterator(data, batch_size=16, shuffle=True, seed=[3, 8])
    seen = [[], []]
    for batch_X, batch_y, batch_w in iterator:
        assert batch_X.layout == (torch.sparse_csr if sparse else torch.strided)
        dense_X = (batch_X.to_dense() if sparse else batch_X).numpy()
        m = batch_w.shape[1]
        assert batch_X.shape[0] == 2 * m
        for g in range(2):
            rows = np.flatnonzero(np.isin(weights, batch_w[g].numpy()))
            assert np.all(np.diff(rows) > 0)  # sorted within the batch
            np.testing.assert_array_equal(
                dense_X[g * m : (g + 1) * m], sp.csr_matrix(X)[rows].toarray()
            )
            expected = (
                targets[g][rows].toarray() if task == "multilabel" else targets[g][rows]
            )
            np.testing.assert_array_equal(batch_y[g].numpy(), expected)
            seen[g].append(rows)
    for g in range(2):
        assert sorted(np.concatenate(seen[g])) == list(range(50))
    assert len(iterator) == 4
    assert not all(np.array_equal(a, b) for a, b in zip(seen[0], seen[1]))
    # network g's batches are those of an iterator seeded seeds[g] alone
    alone = TrainingData(
        X,
        targets[1] if task == "multilabel" else targets[1][None],
        weights,
        "cpu",
        sparse_input=sparse,
    )
    for rows, (_, _, w) in zip(seen[1], BatchIterator(alone, 16, True, seed=8)):
        np.testing.assert_array_equal(w[0].numpy(), weights[rows])
    # epoch e of seed s is epoch 0 of seed s + e
    second = [w.numpy() for _, _, w in iterator]  # the iterator's next epoch
    again = [w.numpy() for _, _, w in BatchIterator(data, 16, True, seed=[4, 9])]
    assert all(np.array_equal(a, b) for a, b in zip(second, again))
    assert not all(
        np.array_equal(a[0], weights[rows]) for a, rows in zip(second, seen[0])
    )


@pytest.mark.parametrize("grouped", [False, True])
def test_fit_epochs_equal_partial_fit_calls(grouped, monkeypatch):
    if grouped:
        monkeypatch.setattr(training, "_GROUPED_DEVICES", {"cpu", "cuda"})
    X, y = wide_sparse(300)
    params = dict(
        n_buckets=8,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        batch_size=64,
        random_state=0,
    )
    fitted = MACHClassifier(max_epochs=3, **params).fit(X, y)
    streamed = MACHClassifier(**params)
    for _ in range(3):
        streamed.partial_fit(X, y, classes=np.arange(6))
    np.testing.assert_allclose(
        streamed.predict_proba(X), fitted.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    assert [len(h) for h in streamed.histories_] == [3, 3]
    assert streamed.n_iter_ == 1 and fitted.n_iter_ == 3


def test_zero_weight_is_absence_and_weights_are_relative():
    X, y = make_classification(
        n_samples=300, n_features=15, n_informative=8, n_classes=4, random_state=0
    )
    params = dict(
        n_buckets=8,
        n_repetitions=2,
        hidden_layer_sizes=(16,),
        max_epochs=4,
        batch_size=64,
        random_state=0,
    )
    weights = np.random.RandomState(1).randint(0, 4, size=300).astype(float)
    kept = weights > 0
    weighted = MACHClassifier(**params).fit(X, y, sample_weight=weights)
    subset = MACHClassifier(**params).fit(X[kept], y[kept], sample_weight=weights[kept])
    np.testing.assert_array_equal(weighted.predict_proba(X), subset.predict_proba(X))
    doubled = MACHClassifier(**params).fit(X, y, sample_weight=2 * weights)
    np.testing.assert_array_equal(doubled.predict_proba(X), weighted.predict_proba(X))
    plain = MACHClassifier(**params).fit(X, y)
    assert not np.allclose(plain.predict_proba(X), weighted.predict_proba(X))


def test_sample_weight_shifts_the_decision():
    # One duplicated point labelled both ways: the heavier label wins.
    X = np.array([[0.0, 1.0]] * 40 + [[1.0, 0.0]] * 40, dtype=np.float32)
    y = np.array([0, 1] * 20 + [2] * 40)
    weights = np.where(y == 1, 5.0, 1.0)
    params = dict(
        n_buckets=4,
        n_repetitions=2,
        hidden_layer_sizes=(8,),
        max_epochs=30,
        random_state=0,
    )
    assert (
        MACHClassifier(**params).fit(X, y, sample_weight=weights).predict(X[:1])[0] == 1
    )
    weights = np.where(y == 0, 5.0, 1.0)
    assert (
        MACHClassifier(**params).fit(X, y, sample_weight=weights).predict(X[:1])[0] == 0
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (-np.ones(300), "non-negative"),
        (np.zeros(300), "non-zero"),
        (np.ones(299), "shape"),
        ([[1.0]] * 300, "1-D"),
    ],
)
def test_bad_sample_weight(bad, match):
    X, y = make_classification(n_samples=300, random_state=0)
    clf = MACHClassifier(n_buckets=4, n_repetitions=1, max_epochs=1)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y, sample_weight=bad)
    assert not hasattr(clf, "networks_")


#: One network trained on its own on the CPU, as the trainer tests build it.
ONE_NETWORK = dict(
    grouped=False,
    multilabel=False,
    optimizer="adam",
    lr=1e-2,
    batch_size=64,
    device="cpu",
)


def test_trainer_continues_from_its_optimizer_state():
    X, y = wide_sparse(200)
    net = build_module(None, X.shape[1], 8, (16,), True, seed=1)
    one = Trainer([0], [net], **ONE_NETWORK).run(
        X, (y % 8)[None], np.ones(200), 2, seeds=[3]
    )
    first = Trainer([0], [net], **ONE_NETWORK).run(
        X, (y % 8)[None], np.ones(200), 1, seeds=[3]
    )
    second = Trainer(
        [0], first.networks(), optimizer_state=first.optimizer_state(), **ONE_NETWORK
    ).run(X, (y % 8)[None], np.ones(200), 1, seeds=[4])
    for a, b in zip(one.networks()[0].parameters(), second.networks()[0].parameters()):
        torch.testing.assert_close(a, b)


def test_finished_trainer_hands_over_its_network():
    # finish() copied every weight once more, per network and partial_fit
    # call: 12% of a streaming call at the defaults' sizes (bench_stream.py)
    X, y = wide_sparse(200)
    net = build_module(None, X.shape[1], 8, (16,), True, seed=1)
    trainer = Trainer([0], [net], **ONE_NETWORK).run(
        X, (y % 8)[None], np.ones(200), 1, seeds=[3]
    )
    module = trainer.net.module_
    copied = trainer.networks()[0]
    assert copied is not module and module.training
    (taken,) = trainer.finish(keep_optimizer_state=True).networks()
    assert taken is module and not taken.training and taken.sparse_gradient
    assert all(p.grad is None for p in taken.parameters())
    for a, b in zip(copied.parameters(), taken.parameters()):
        assert torch.equal(a, b)
    # any other module is copied: it may keep tensors of its last batch's
    # graph (a cached output, spectral_norm), which break the next copy
    custom = type("Custom", (MACHNetwork,), {})(X.shape[1], 8, hidden_layer_sizes=(4,))
    trainer = Trainer([0], [custom], **ONE_NETWORK).run(
        X, (y % 8)[None], np.ones(200), 1, seeds=[3]
    )
    module = trainer.net.module_
    (copied,) = trainer.finish(keep_optimizer_state=False).networks()
    assert copied is not module and type(copied).__name__ == "Custom"
    assert all(
        not torch.equal(a, b) for a, b in zip(net.parameters(), taken.parameters())
    )


def test_default_network_draws_from_a_generator_of_its_own(monkeypatch):
    # Seeding torch's global generator (even forked, under a lock that only
    # sklearn-mach takes) let another thread's torch.rand during fit change
    # the model, and rewound that thread's stream.  The default network
    # draws from its own generator: the same weights as the global draw
    # after torch.manual_seed(seed), without touching the global generator.
    torch.manual_seed(5)
    plain = MACHNetwork(
        300, 8, hidden_layer_sizes=(16, 8), n_hashed_features=64, feature_seed=5
    )
    state = torch.random.get_rng_state()

    def no_global_seeding(*args, **kwargs):
        raise AssertionError("the global generator was seeded")

    monkeypatch.setattr(torch, "manual_seed", no_global_seeding)
    monkeypatch.setattr(torch.random, "fork_rng", no_global_seeding)
    for device in (None, "cpu"):
        net = build_module(
            None, 300, 8, (16, 8), False, seed=5, n_hashed_features=64, device=device
        )
        assert torch.equal(torch.random.get_rng_state(), state)
        for a, b in zip(plain.state_dict().values(), net.state_dict().values()):
            assert torch.equal(a, b)
    monkeypatch.undo()

    X, y = wide_sparse(300)
    clf = MACHClassifier(
        n_buckets=8,
        n_repetitions=4,
        hidden_layer_sizes=(8,),
        max_epochs=1,
        device="cpu",  # bitwise equal fits: CUDA's atomic adds round differently
        random_state=0,
    )
    reference = [p.clone() for n in clf.fit(X, y).networks_ for p in n.parameters()]
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            torch.rand(1)

    thread = threading.Thread(target=draw)
    thread.start()
    try:
        fitted = [clf.fit(X, y) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    for model in fitted:
        ours = [p for n in model.networks_ for p in n.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(reference, ours))


def test_torch_default_dtype_does_not_change_the_model():
    # The tables were built in torch's default dtype and cast afterwards:
    # under torch.set_default_dtype(torch.float64) the same generator drew
    # other numbers, and random_state gave another model.
    X, y = wide_sparse(300)
    clf = MACHClassifier(**dict(WIDE_PARAMS, max_epochs=1))
    reference = [p.clone() for n in clf.fit(X, y).networks_ for p in n.parameters()]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        clf.fit(X, y)
        net = build_module(None, 300, 8, (16, 8), False, seed=5)
    finally:
        torch.set_default_dtype(default)
    ours = [p for n in clf.networks_ for p in n.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(reference, ours, strict=True))
    assert {p.dtype for p in net.parameters()} == {torch.float32}


@pytest.mark.parametrize("grouped", [False, True], ids=["separate", "grouped"])
def test_a_call_with_a_dense_optimizer_keeps_sparse_gradients(grouped, monkeypatch):
    # A partial_fit with torch.optim.Adam (no sparse updates) trains dense
    # input gradients.  Separate training then kept sparse_gradient=False for
    # good (its init_kwargs still said True) while grouped training rebuilt
    # it as True: LazyAdam's later updates, and saved files, differed.
    devices = {"cpu", "cuda"} if grouped else {"cuda"}
    monkeypatch.setattr(training, "_GROUPED_DEVICES", devices)
    X, y = wide_sparse()
    params = WIDE_PARAMS
    clf = MACHClassifier(**params).partial_fit(X, y, classes=np.arange(6))
    clf.set_params(optimizer=torch.optim.Adam).partial_fit(X, y)
    for net in clf.networks_:
        assert net.sparse_gradient and net.init_kwargs["sparse_gradient"]
    # and the next LazyAdam calls take the same path either way
    clf.set_params(optimizer="adam").partial_fit(X, y)
    monkeypatch.setattr(training, "_GROUPED_DEVICES", {"cpu", "cuda"} - devices)
    other = MACHClassifier(**params).partial_fit(X, y, classes=np.arange(6))
    other.set_params(optimizer=torch.optim.Adam).partial_fit(X, y)
    other.set_params(optimizer="adam").partial_fit(X, y)
    np.testing.assert_allclose(
        clf.decision_function(X), other.decision_function(X), atol=1e-4
    )


def test_loaded_optimizer_state_is_not_trained_in_place():
    # Off the CPU, load_state_dict copies the moments to the device but keeps
    # Adam's step tensors as given: the stored state counted the steps of a
    # call that then failed.  A dtype change forces the same copy here.
    source = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([source])
    source.grad = torch.ones(3)
    optimizer.step()
    stored = optimizer.state_dict()
    for device_type in ("cpu", "cuda"):
        target = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        again = torch.optim.Adam([target])
        again.load_state_dict(training._unshared_state(stored, device_type))
        for _ in range(3):
            target.grad = torch.ones(3, dtype=torch.float64)
            again.step()
        assert again.state[target]["step"].item() == 4
        assert stored["state"][0]["step"].item() == 1
        assert torch.equal(stored["state"][0]["exp_avg"], torch.full((3,), 0.1))


def test_cuda_without_an_index_is_the_caller_s_device(monkeypatch):
    # "cuda" names each thread's current device: the caller's set_device(1)
    # built the networks on cuda:1, and a joblib worker's batches went to
    # cuda:0.  resolve_device fixes the caller's index.
    from sklearn_mach._device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == resolve_device("auto") == "cuda:1"
    assert resolve_device(torch.device("cuda")) == "cuda:1"
    assert resolve_device("cuda:0") == "cuda:0"
    assert resolve_device("cpu") == "cpu"


def test_memory_budget_counts_the_allocator_s_cache_as_free(monkeypatch):
    # the driver reports blocks torch keeps cached (an earlier fit's data)
    # as taken: back-to-back fits saw ever smaller budgets
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2000)
    assert training.memory_budget("cuda:0") == (1000 + 3000) // 2


def test_a_custom_module_s_seed_leaves_other_generators_alone(monkeypatch):
    # torch.manual_seed reseeded every GPU's generator for good (fork_rng
    # restores the CPU's and the target's only)
    calls = []
    for name in ("manual_seed_all", "manual_seed"):
        monkeypatch.setattr(
            torch.cuda, name, lambda seed, _name=name: calls.append((_name, seed))
        )
    state = torch.get_rng_state()
    first = training.build_module(
        lambda n_features, n_outputs: torch.nn.Linear(n_features, n_outputs),
        5,
        3,
        (),
        False,
        7,
        device="cpu",
    )
    assert calls == [] and torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    np.testing.assert_array_equal(
        first.weight.detach().numpy(), torch.nn.Linear(5, 3).weight.detach().numpy()
    )
