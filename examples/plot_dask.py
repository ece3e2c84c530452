"""
=============================================
Training the repetitions on a Dask cluster
=============================================

The ``R`` networks of MACH need no communication while they train, so
:class:`~sklearn_mach.MACHClassifier` trains them as independent joblib
tasks.  It uses scikit-learn's :class:`~sklearn.utils.parallel.Parallel`
without fixing a backend, so :func:`joblib.parallel_config` decides where
the tasks run: threads, local processes, or the workers of a
`dask.distributed <https://distributed.dask.org>`_ cluster, with no change
to the estimator.

This example starts a local cluster of two workers, trains the same model
on ``bibtex`` locally and on the cluster, and checks that the two models
predict the same thing: the hash functions, initial weights and batch
order of every repetition come from ``random_state`` alone.
"""

# %%
# Data and model
# --------------
import time

import joblib
import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp
from distributed import Client, LocalCluster, get_task_stream

from sklearn_mach import MACHClassifier
from sklearn_mach.datasets import get_data_home
from sklearn_mach.metrics import precision_at_k

data = get_data_home() / "bibtex"
X_train, Y_train, X_test, Y_test = (
    sp.load_npz(data / f"{name}.npz").tocsr()
    for name in ("X_train", "Y_train", "X_test", "Y_test")
)
params = dict(n_buckets=32, n_repetitions=4, max_epochs=5, random_state=0)

# %%
# Local fit
# ---------
# With the default ``n_jobs=None`` the repetitions train one after the
# other in this process.
start = time.perf_counter()
local = MACHClassifier(**params).fit(X_train, Y_train)
print(f"local fit: {time.perf_counter() - start:.1f} s")

# %%
# Fit on a Dask cluster
# ---------------------
# :class:`distributed.LocalCluster` stands in for a real cluster here; with
# a remote scheduler, pass its address to :class:`distributed.Client`
# instead.  Its workers run in this process (``processes=False``) so that
# the example also runs as a plain script: worker *processes* start by
# importing the main script, which then needs its code under
# ``if __name__ == "__main__":``.  Inside
# ``joblib.parallel_config(backend="dask")`` every joblib task goes to the
# cluster of the current client; ``n_jobs=-1`` lets all workers take
# part.  The workers of a real cluster need ``sklearn_mach`` (and any custom
# ``module`` class) importable.  ``get_task_stream`` records which worker ran
# each task.
with (
    LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
    ) as cluster,
    Client(cluster) as client,
):
    start = time.perf_counter()
    with get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        remote = MACHClassifier(n_jobs=-1, **params).fit(X_train, Y_train)
    print(
        f"fit on the cluster: {time.perf_counter() - start:.1f} s "
        "(including shipping the data to the workers)"
    )
    workers = sorted(client.scheduler_info()["workers"])

# joblib names the tasks it sends to Dask "batch_of_<function>_<n>_calls-...".
tasks = [t for t in stream.data if "batch_of_" in str(t["key"])]
print(
    f"{len(tasks)} training tasks ran on {len({t['worker'] for t in tasks})} worker(s)"
)

# %%
# The local fit trains the repetitions one after another (each with torch's
# threads on both cores); the cluster's two workers train two at a time, as
# ``n_jobs=2`` does in threads.  On a real cluster each worker also pays for
# starting Python, importing torch and receiving the data, so it pays off
# when each repetition trains for minutes, or on machines with GPUs (see the
# end of this example).

# %%
# The two models are the same
# ---------------------------
# Same ``random_state``, same hash functions, same initial weights and batch
# order for every repetition: the two models give the same scores and the
# same predictions, whichever worker trained which repetition.
scores_local = local.decision_function(X_test)
scores_remote = remote.decision_function(X_test)
print(
    "same hash functions:",
    np.array_equal(local.label_hasher_.hash_tables_, remote.label_hasher_.hash_tables_),
)
print(f"largest score difference: {np.abs(scores_local - scores_remote).max():.2g}")
print(
    "same top-5 labels:",
    np.array_equal(
        local.predict_top_k(X_test, k=5)[0], remote.predict_top_k(X_test, k=5)[0]
    ),
)
print("same predictions:", (local.predict(X_test) != remote.predict(X_test)).nnz == 0)
print(
    f"P@1: local {precision_at_k(Y_test, scores_local, k=1):.3f}, "
    f"cluster {precision_at_k(Y_test, scores_remote, k=1):.3f}"
)

# %%
# When each repetition ran, and where:
fig, ax = plt.subplots(figsize=(6, 2.5))
t0 = min(t["startstops"][0]["start"] for t in tasks)
for task in tasks:
    row = workers.index(task["worker"])
    for part in task["startstops"]:
        if part["action"] == "compute":
            ax.barh(
                row,
                part["stop"] - part["start"],
                left=part["start"] - t0,
                color=f"C{row}",
                edgecolor="k",
            )
ax.set_yticks(range(len(workers)), labels=[f"worker {i}" for i in range(len(workers))])
ax.set_xlabel("seconds since the first task started")
ax.set_title(f"{params['n_repetitions']} repetitions on 2 Dask workers")
fig.tight_layout()

# %%
# On GPUs and real clusters
# -------------------------
# The device is resolved where ``fit`` is called, and the networks are
# built there before the tasks leave: ``device="auto"`` on a client without
# a GPU trains on the workers' CPUs.  A client on a GPU machine builds them
# on its current GPU, and a worker that sees one GPU only (one worker per
# GPU, as ``dask_cuda.LocalCUDACluster()`` starts them) unpickles them onto
# that one (untested: this project's CI has no GPU); the trained networks
# come back on the CPU.  Ray's joblib backend
# works the same way: call ``ray.util.joblib.register_ray()`` once, then
# fit inside ``joblib.parallel_config(backend="ray")``.
