"""Training the repetitions on a dask.distributed cluster, with no code change."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklearn_mach import MACHClassifier

distributed = pytest.importorskip("distributed")


def test_fit_on_a_local_dask_cluster_equals_local_fit():
    X, y = make_classification(
        n_samples=300, n_features=10, n_informative=6, n_classes=4, random_state=0
    )
    params = dict(
        n_buckets=8, n_repetitions=4, hidden_layer_sizes=(16,), max_epochs=5,
        random_state=0,
    )
    local = MACHClassifier(**params).fit(X, y)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            with joblib.parallel_config(backend="dask"):
                remote = MACHClassifier(n_jobs=-1, **params).fit(X, y)
        # The repetitions really ran as tasks on the cluster's workers.
        tasks = [t for t in stream.data if "fit_repetition" in str(t["key"])]
        assert tasks, [t["key"] for t in stream.data]
        assert {t["worker"] for t in tasks} <= set(client.scheduler_info()["workers"])
    np.testing.assert_allclose(
        remote.predict_proba(X), local.predict_proba(X), rtol=1e-5, atol=1e-7
    )
