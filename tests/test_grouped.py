"""Grouped (batched) training of repetitions, the GPU path, checked on the CPU."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification, make_multilabel_classification

import sklearn_mach._classifier as classifier_module
from sklearn_mach import MACHClassifier, MACHNetwork
from sklearn_mach._network import GroupedMACHNetwork
from sklearn_mach._training import csr_to_torch, fit_repetition, fit_repetition_group


@pytest.mark.parametrize("n_hashed_features", [None, 7])
@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_forward_equals_separate_networks(n_hashed_features, sparse):
    networks = [
        MACHNetwork(20, 6, (8, 5), n_hashed_features=n_hashed_features, feature_seed=s)
        for s in range(3)
    ]
    grouped = GroupedMACHNetwork(networks)
    X = sp.random(11, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    batch = csr_to_torch(X) if sparse else torch.from_numpy(X.toarray())
    with torch.no_grad():
        out = grouped(batch)
        assert out.shape == (3, 11, 6)
        for g, net in enumerate(networks):
            torch.testing.assert_close(out[g], net(batch), rtol=1e-5, atol=1e-6)
        for net, back in zip(networks, grouped.split()):
            torch.testing.assert_close(back(batch), net(batch))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_training_is_separate_training(task, sparse):
    B = 8
    if task == "multiclass":
        X, y = make_classification(n_samples=300, n_features=15, n_informative=8,
                                   n_classes=4, random_state=0)
        targets = [(y * (r + 3)) % B for r in range(2)]  # two bucket maps
    else:
        X, Y = make_multilabel_classification(n_samples=300, n_features=15,
                                              n_classes=B, random_state=0)
        targets = [sp.csr_matrix(Y.astype(np.float32)), sp.csr_matrix(Y[:, ::-1].astype(np.float32))]
    X = X.astype(np.float32)
    if sparse:
        X = sp.csr_matrix(X)
    common = dict(multilabel=task == "multilabel", n_outputs=B, hidden_layer_sizes=(16,),
                  optimizer="adam", lr=1e-2, max_epochs=3, batch_size=64,
                  device="cpu", n_threads=1, verbose=0)
    # Same initialisation seed and batch order for both networks, so each
    # separately trained network sees exactly what its group member sees.
    separate = [fit_repetition(X, t, module=None, seed=5, **common)[0] for t in targets]
    grouped = fit_repetition_group(X, targets, seeds=[5, 5], shuffle_seed=5, **common)
    Xt = torch.from_numpy(np.asarray(X.todense() if sparse else X))
    with torch.no_grad():
        for alone, (together, _, _) in zip(separate, grouped):
            assert isinstance(together, MACHNetwork)
            torch.testing.assert_close(together(Xt), alone(Xt), rtol=1e-4, atol=1e-4)


def test_classifier_uses_groups_on_grouped_devices(monkeypatch):
    monkeypatch.setattr(classifier_module, "_GROUPED_DEVICES", {"cpu", "cuda"})
    monkeypatch.setattr(classifier_module, "_GROUP_SIZE", 2)
    X, y = make_classification(n_samples=400, n_features=20, n_informative=10,
                               n_classes=6, n_clusters_per_class=1, class_sep=2.0,
                               random_state=0)
    clf = MACHClassifier(n_buckets=8, n_repetitions=3, hidden_layer_sizes=(32,),
                         max_epochs=15, device="cpu", random_state=0).fit(X, y)
    assert len(clf.networks_) == 3
    assert all(type(net) is MACHNetwork for net in clf.networks_)
    assert clf.score(X, y) > 0.9
    again = MACHClassifier(n_buckets=8, n_repetitions=3, hidden_layer_sizes=(32,),
                           max_epochs=15, device="cpu", random_state=0).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grouped_training_on_cuda():
    X, y = make_classification(n_samples=400, n_features=20, n_informative=10,
                               n_classes=6, random_state=0)
    clf = MACHClassifier(n_buckets=8, n_repetitions=10, hidden_layer_sizes=(32,),
                         max_epochs=10, device="cuda", random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.8
    assert all(p.device.type == "cpu" for n in clf.networks_ for p in n.parameters())
