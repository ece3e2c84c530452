"""
========================================================
Choosing B and R: the memory / accuracy trade-off
========================================================

MACH has two size knobs: the number of buckets ``B`` of each hash function
(the output width of each network) and the number of repetitions ``R``
(hash functions, hence networks).  The output layers hold ``R * width * B``
weights instead of ``width * K``, and the input layers ``R * n_features *
width``.  This example measures precision at 1 and 5 and the model size on
the ``delicious`` tagging set (12,920 training bookmarks, 500 word
features, ``K = 983`` tags, about 19 tags per bookmark) for ``B`` from 16
to 512 and ``R`` from 1 to 8.

The networks are trained for 3 epochs only, to keep the example fast; the
:doc:`benchmarks </benchmarks>` compare the default model, trained for 10
epochs, with a full-output network.
"""

# %%
# Loading the data
# ----------------
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

from sklearn_mach import MACHClassifier
from sklearn_mach.datasets import get_data_home
from sklearn_mach.metrics import precision_at_k

data = get_data_home() / "delicious"
X_train, Y_train, X_test, Y_test = (
    sp.load_npz(data / f"{name}.npz").tocsr()
    for name in ("X_train", "Y_train", "X_test", "Y_test")
)
n_features, K = X_train.shape[1], Y_train.shape[1]
print(f"{X_train.shape[0]} training samples, {n_features} features, K = {K} labels")

# %%
# Training: R repetitions are R independent models
# ------------------------------------------------
# The repetitions of MACH share nothing: each has its own hash function and
# its own network, and with ``aggregation="mean"`` the score of a class is
# the mean, over repetitions, of the probability of its bucket.  So the
# scores of ``MACHClassifier(n_repetitions=R)`` are the mean of the scores
# of ``R`` single-repetition models with independent hash functions.  We
# train 8 single-repetition models per ``B`` (different ``random_state``,
# hence different hash functions) and average the first ``R`` of them:
# every ``R`` from 1 to 8 for the price of ``R = 8``.
buckets = [16, 32, 64, 128, 256, 512]
repetitions = [1, 2, 4, 8]
params = dict(hidden_layer_sizes=(256,), max_epochs=3, aggregation="mean")


def n_bytes(model):
    return sum(
        p.numel() * p.element_size()
        for net in model.networks_
        for p in net.parameters()
    )


precision = {k: np.empty((len(repetitions), len(buckets))) for k in (1, 5)}
size_mb = np.empty((len(repetitions), len(buckets)))
start = time.perf_counter()
for j, B in enumerate(buckets):
    scores, single_mb = 0.0, 0.0
    for seed in range(max(repetitions)):
        model = MACHClassifier(
            n_buckets=B, n_repetitions=1, random_state=seed, **params
        ).fit(X_train, Y_train)
        scores = scores + model.decision_function(X_test)
        single_mb = n_bytes(model) / 1e6
        if seed + 1 in repetitions:
            i = repetitions.index(seed + 1)
            for k in precision:
                precision[k][i, j] = precision_at_k(Y_test, scores / (seed + 1), k=k)
            size_mb[i, j] = (seed + 1) * single_mb
    print(
        f"B = {B:3d}: P@1 for R = {repetitions}: "
        f"{np.round(precision[1][:, j], 3).tolist()}"
    )
print(
    f"{len(buckets) * max(repetitions)} networks trained in "
    f"{time.perf_counter() - start:.0f} s"
)

# %%
# The same thing with :class:`~sklearn_mach.MACHClassifier` directly: one
# model with ``R = 4``.  Its hash functions are other random draws, so its
# precision differs from the table above by chance (by about 0.01 to 0.02
# at P@1 over a few seeds).
model = MACHClassifier(n_buckets=128, n_repetitions=4, random_state=0, **params).fit(
    X_train, Y_train
)
print(
    f"MACHClassifier(B=128, R=4): "
    f"P@1 = {precision_at_k(Y_test, model.decision_function(X_test), k=1):.3f}, "
    f"{n_bytes(model) / 1e6:.2f} MB"
)

# %%
# The trade-off
# -------------
# A network with one output per label, of the same width, would hold
# ``(n_features + 1) * 256 + (256 + 1) * K`` float32 weights; the dashed
# line shows it.
full_mb = ((n_features + 1) * 256 + (256 + 1) * K) * 4 / 1e6
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for i, R in enumerate(repetitions):
    for ax, values in zip(axes, (precision[1], precision[5], size_mb)):
        ax.plot(buckets, values[i], marker="o", label=f"R = {R}")
axes[2].axhline(full_mb, color="k", ls="--", label=f"full output (K = {K})")
for ax, title in zip(axes, ("precision at 1", "precision at 5", "model size (MB)")):
    ax.set_xscale("log", base=2)
    ax.set_xticks(buckets, labels=buckets)
    ax.set_xlabel("buckets B")
    ax.set_title(title)
axes[0].legend()
axes[2].legend(fontsize="small")
fig.suptitle(f"MACH on delicious (K = {K}), 3 epochs, one hidden layer of 256")
fig.tight_layout()

# %%
# Reading the plot
# ----------------
# * **One repetition is not enough**, whatever ``B``: all the labels that
#   share the best bucket get the same score, so the top of the ranking is
#   a tie among about ``K / B`` labels.  Each extra repetition splits these
#   ties, and the precision climbs quickly with ``R``.
# * Two labels are confused by all ``R`` hash functions with probability
#   ``B ** -R``, so about ``K * (K - 1) / 2 * B ** -R`` pairs of labels are
#   indistinguishable.  Requiring fewer than ``delta`` such pairs gives the
#   MACH paper's ``R >= 2 * log(K / sqrt(2 * delta)) / log(B)``: ``R`` grows
#   with ``log K`` only, and larger buckets need fewer repetitions.
# * Once ``B`` and ``R`` separate the labels well, the precision is flat
#   while the size keeps growing linearly with ``R``: pick the smallest
#   model on the plateau.  Here P@1 is flat from about ``B = 64`` with
#   ``R = 4``; P@5 needs more, from about ``B = 256`` with ``R = 4`` or
#   ``B = 64`` with ``R = 8``.
# * Up to ``B = 128`` the size is dominated by the input layers
#   (``R * 500 * 256`` weights here; at ``B = 512`` the output layers are
#   as large): the output side is ``O(R * B)``, but each repetition pays
#   for its own input layer.  With only ``K = 983`` labels a full-output
#   network is smaller than any MACH model with ``R >= 3``, and than
#   ``R = 2`` from ``B = 256``; MACH saves memory when ``K``
#   is much larger than ``R * B`` and the output layer, not the input layer,
#   is the bulk of the model.
pairs = K * (K - 1) / 2
for B, R in [(16, 2), (16, 4), (64, 4), (256, 4), (256, 8)]:
    print(
        f"B = {B:3d}, R = {R}: about {pairs * float(B) ** -R:10.4f} "
        "indistinguishable pairs of labels"
    )
