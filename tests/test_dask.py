"""Training the repetitions on a dask.distributed cluster, with no code change."""

import re

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification

import sklearn_mach._training as training
from sklearn_mach import MACHClassifier

distributed = pytest.importorskip("distributed")


def test_fit_on_a_local_dask_cluster_equals_local_fit(monkeypatch):
    X, y = make_classification(
        n_samples=300, n_features=10, n_informative=6, n_classes=4, random_state=0
    )
    params = dict(
        n_buckets=8,
        n_repetitions=4,
        hidden_layer_sizes=(16,),
        max_epochs=5,
        random_state=0,
    )
    local = MACHClassifier(**params).fit(X, y)
    trainers = []  # one joblib task each: a repetition, or a group on a GPU
    init = training.Trainer.__init__
    monkeypatch.setattr(
        training.Trainer,
        "__init__",
        lambda self, *a, **k: trainers.append(self) or init(self, *a, **k),
    )
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as stream:
            with joblib.parallel_config(backend="dask"):
                remote = MACHClassifier(n_jobs=-1, **params).fit(X, y)
        # Every repetition ran as a task on one of the cluster's workers.
        calls = [
            re.fullmatch(r"batch_of_train_(\d+)_calls-.*", str(t["key"]))
            for t in stream.data
        ]
        workers = {t["worker"] for t, call in zip(stream.data, calls) if call}
        assert sum(int(call.group(1)) for call in calls if call) == len(trainers) > 0
        assert workers and workers <= set(client.scheduler_info()["workers"])
    np.testing.assert_allclose(
        remote.predict_proba(X), local.predict_proba(X), rtol=1e-5, atol=1e-7
    )
