"""
==========================================================
Extreme K: 100,000 classes, top-k decoding and model size
==========================================================

MACH is meant for label spaces where one output per class is too much.
This example trains :class:`~sklearn_mach.MACHClassifier` on a synthetic
problem with ``K = 100,000`` classes, small enough to run in well under a
minute on two CPU cores, and shows:

* how to train a model that ranks all ``K`` classes, even those absent
  from the training rows;
* :meth:`~sklearn_mach.MACHClassifier.predict_top_k`, exact and with
  candidate decoding (``n_candidate_buckets``), against scoring every class;
* the size of the model next to a network with a full output layer;
* the trade-off between the number of buckets ``B`` and of repetitions
  ``R``.
"""

# %%
# A problem with 100,000 classes
# ------------------------------
# :func:`~sklearn_mach.datasets.make_extreme_classification` draws classes
# from a power law (class ``k`` with probability proportional to
# ``1 / (k + 1)``, as in real label spaces) and gives each class a random
# signature of sparse features.  Its class ids are sorted by frequency; we
# shuffle them, as the ids of a real label space carry no such order.  With
# 40,000 training rows most of the 100,000 classes never occur, and the test
# samples of those classes cannot be predicted by any model trained on these
# rows: their fraction sets the ceiling of the precision.
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sklearn_mach import MACHClassifier, MACHNetwork
from sklearn_mach.datasets import make_extreme_classification
from sklearn_mach.metrics import precision_at_k, recall_at_k

K = 100_000
X, y = make_extreme_classification(
    n_samples=42_000, n_classes=K, n_features=20_000, random_state=0
)
y = np.random.default_rng(0).permutation(K)[y]
X_train, y_train, X_test, y_test = X[:40_000], y[:40_000], X[40_000:], y[40_000:]
ceiling = np.isin(y_test, y_train).mean()
print(f"X_train: {X_train.shape}, {X_train.nnz / X_train.shape[0]:.0f} non-zeros a row")
print(f"classes in the training rows: {len(np.unique(y_train)):,} of {K:,}")
print(f"test samples whose class was seen in training: {ceiling:.1%}")

# %%
# Training: all K classes
# -----------------------
# ``fit(X, y)`` learns the classes present in ``y``.  To rank all ``K``
# classes, announce them to the first
# :meth:`~sklearn_mach.MACHClassifier.partial_fit` call, which trains one
# epoch per call.  ``B = 1024`` buckets hold about 100 classes each; ``R = 4``
# hash functions tell them apart (two classes share all four buckets with
# probability ``1024 ** -4``).  A narrow hidden layer and
# ``n_hashed_features`` (each network hashes the 20,000 input features into
# 4,096 rows of its input table) keep the model small.
params = dict(hidden_layer_sizes=(64,), n_hashed_features=4096, random_state=0)
clf = MACHClassifier(n_buckets=1024, n_repetitions=4, **params)
start = time.perf_counter()
for _ in range(3):  # one epoch a call
    clf.partial_fit(X_train, y_train, classes=np.arange(K))
print(f"3 epochs in {time.perf_counter() - start:.1f} s; {len(clf.classes_):,} classes")

# %%
# The k best classes
# ------------------
# :meth:`~sklearn_mach.MACHClassifier.predict_top_k` returns the ``k`` best
# classes of each sample, best first, and their scores.  It is exact, yet it
# does not always score all 100,000 classes: it scores the classes of the
# best buckets of each repetition and widens the search only until no other
# class can beat the ``k``-th best (a threshold algorithm); rows that would
# need too many buckets are scored over all classes.
# ``decision_function`` computes the full ``n_samples x K`` score matrix;
# here on 500 rows only, as it would need 1.6 GB for the 2,000 test rows.
start = time.perf_counter()
top5, scores = clf.predict_top_k(X_test, k=5)
exact_s = time.perf_counter() - start
start = time.perf_counter()
full_scores = clf.decision_function(X_test[:500])
dense_s = (time.perf_counter() - start) * len(y_test) / 500
assert (top5[:500, 0] == full_scores.argmax(axis=1)).all()  # the same top-1
del full_scores
print(f"aggregation={clf.aggregation!r}")
print(f"P@1 = {precision_at_k(y_test, top5, k=1):.3f} (ceiling {ceiling:.3f})")
print(f"top-5 accuracy (recall at 5) = {recall_at_k(y_test, top5, k=5):.3f}")
print(
    f"exact top 5 of {len(y_test):,} queries: {exact_s:.2f} s; scoring all "
    f"{K:,} classes would take about {dense_s:.1f} s"
)

# %%
# How much the search prunes depends on how the ``R`` bucket outputs of a
# class are merged (``aggregation``, used at prediction time only, so one
# fitted model serves both).  The bound is tight for the mean of the bucket
# probabilities (``"mean"``), and loose for the sum of their logarithms
# (``"logit_sum"``), where a single repetition can sink a class: the latter
# usually ranks better, the former decodes faster.
exact = {}
for aggregation in ("mean", "logit_sum"):
    clf.set_params(aggregation=aggregation)
    start = time.perf_counter()
    labels, _ = clf.predict_top_k(X_test, k=5)
    exact[aggregation] = time.perf_counter() - start
    print(
        f"aggregation={aggregation!r}: exact top 5 in {exact[aggregation]:.2f} s, "
        f"P@1 {precision_at_k(y_test, labels, k=1):.3f}"
    )
clf.set_params(aggregation=MACHClassifier().aggregation)  # back to the default

# %%
# Candidate decoding trades exactness for speed: with
# ``n_candidate_buckets=m`` only the classes of the ``m`` best buckets of
# each repetition are scored, about ``R * m * K / B`` classes a query, with
# no proof that nothing better lies elsewhere.  The agreement is the
# fraction of the exact top 5 (with the default aggregation) that it
# returns.
candidates = [1, 2, 4, 8]
times, agreement = [], []
for m in candidates:
    start = time.perf_counter()
    labels, _ = clf.predict_top_k(X_test, k=5, n_candidate_buckets=m)
    times.append(time.perf_counter() - start)
    agreement.append(
        np.mean([len(np.intersect1d(a, b)) / 5 for a, b in zip(labels, top5)])
    )
    print(
        f"m = {m}: ~{4 * m * K // 1024:,} classes scored a query, "
        f"{times[-1]:.2f} s, agreement with the exact top 5 {agreement[-1]:.3f}"
    )

fig, (ax_time, ax_agree) = plt.subplots(1, 2, figsize=(9, 4))
ax_time.plot(candidates, times, marker="o", label="candidate decoding")
for (aggregation, seconds), ls in zip(exact.items(), ("-.", "--")):
    ax_time.axhline(seconds, color="k", ls=ls, label=f"exact top 5, {aggregation}")
ax_time.axhline(dense_s, color="tab:red", ls=":", label=f"scoring all {K:,} classes")
ax_time.set_ylim(0, None)
ax_time.set_ylabel(f"seconds for {len(y_test):,} queries")
ax_time.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0, -0.2), ncol=2)
ax_agree.plot(candidates, agreement, marker="o")
ax_agree.set_ylabel("agreement with the exact top 5")
for ax in (ax_time, ax_agree):
    ax.set_xscale("log", base=2)
    ax.set_xticks(candidates, labels=candidates)
    ax.set_xlabel("n_candidate_buckets m")
fig.suptitle(f"Top-5 decoding, K = {K:,}, B = 1024, R = 4")
fig.tight_layout()

# %%
# Model size against a full output layer
# --------------------------------------
# A network of the same width with one output per class would need a
# ``64 x 100,000`` output layer.  We build one (untrained) to count its
# weights: :class:`~sklearn_mach.MACHNetwork` with ``n_outputs=K`` is that
# network.  MACH's output side is ``R * 64 * B`` weights; its input side,
# one table per repetition, is shrunk by ``n_hashed_features``.
full = MACHNetwork(n_features=X.shape[1], n_outputs=K, hidden_layer_sizes=(64,))


def parts(networks):
    """Weights of the input tables and of the rest (hidden and output layers)."""
    inputs = sum(n.input_weight.numel() + n.input_bias.numel() for n in networks)
    total = sum(p.numel() for n in networks for p in n.parameters())
    return inputs, total - inputs


sizes = {
    "MACH, B=1024, R=4": parts(clf.networks_),
    f"full output, K={K:,}": parts([full]),
}
for name, (inputs, outputs) in sizes.items():
    print(f"{name:22}: {(inputs + outputs) * 4 / 1e6:5.1f} MB of float32 weights")
with tempfile.TemporaryDirectory() as tmp:
    for dtype in (None, "float16"):
        path = Path(tmp) / "model.skmach"
        clf.save(path, weights_dtype=dtype)
        print(f"saved file, weights_dtype={dtype}: {path.stat().st_size / 1e6:.1f} MB")

fig, ax = plt.subplots(figsize=(7, 2.2))
for i, (inputs, outputs) in enumerate(sizes.values()):
    ax.barh(
        i, inputs * 4 / 1e6, color="tab:blue", label="input tables" if i == 0 else None
    )
    ax.barh(
        i,
        outputs * 4 / 1e6,
        left=inputs * 4 / 1e6,
        color="tab:orange",
        label="hidden and output layers" if i == 0 else None,
    )
ax.set_yticks(range(len(sizes)), labels=list(sizes))
ax.set_xlabel("MB of float32 weights")
ax.legend(fontsize="small", loc="lower right")
fig.tight_layout()

# %%
# The trade-off between B and R
# -----------------------------
# ``B`` sets how many classes share a bucket (``K / B``) and the width of
# every output layer; ``R`` sets how well the classes are told apart, and
# multiplies the whole model.  Two classes share all their buckets with
# probability ``B ** -R``, so the number of indistinguishable pairs,
# ``K ** 2 / 2 * B ** -R``, falls fast with ``R``.  We train a few more
# models: ``R`` from 1 to 4 at ``B = 1024``, and ``B`` from 256 to 4096 at
# ``R = 2``.
results = {(1024, 4): (precision_at_k(y_test, top5, k=1), exact_s)}
for B, R in [(1024, 1), (1024, 2), (256, 2), (4096, 2)]:
    model = MACHClassifier(n_buckets=B, n_repetitions=R, **params)
    for _ in range(3):  # one epoch a call
        model.partial_fit(X_train, y_train, classes=np.arange(K))
    start = time.perf_counter()
    labels, _ = model.predict_top_k(X_test, k=5)
    results[B, R] = (precision_at_k(y_test, labels, k=1), time.perf_counter() - start)
for (B, R), (p1, seconds) in sorted(results.items()):
    pairs = K**2 / 2 * float(B) ** -R
    print(
        f"B = {B:4d}, R = {R}: P@1 {p1:.3f}, top 5 in {seconds:.2f} s, "
        f"output weights {R * 64 * B:>9,}, indistinguishable pairs ~{pairs:.3g}"
    )

fig, (ax_r, ax_b) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
Rs, Bs = [1, 2, 4], [256, 1024, 4096]
ax_r.plot(Rs, [results[1024, R][0] for R in Rs], marker="o")
ax_r.set_xticks(Rs)
ax_r.set_xlabel("repetitions R (B = 1024)")
ax_b.plot(Bs, [results[B, 2][0] for B in Bs], marker="o")
ax_b.set_xscale("log", base=2)
ax_b.set_xticks(Bs, labels=Bs)
ax_b.set_xlabel("buckets B (R = 2)")
ax_r.set_ylabel("P@1")
for ax in (ax_r, ax_b):
    ax.axhline(
        ceiling, color="k", ls="--", lw=1, label="ceiling: class seen in training"
    )
ax_r.legend(fontsize="small", loc="lower right")
fig.suptitle(f"K = {K:,}: precision at 1 against R and B")
fig.tight_layout()

# %%
# Reading the results
# -------------------
# * With ``R = 1`` every class of the best bucket gets the same score: the
#   top of the ranking is a tie among about ``K / B`` classes, here about
#   100, which predicts the right one only by chance.  A second repetition
#   splits most of these ties, and the precision climbs towards the
#   ceiling with ``R``.
# * With ``R = 2``, ``B = 256`` leaves about 75,000 pairs of classes that
#   no repetition tells apart; ``B = 1024`` about 5,000.
# * More buckets make each network's task finer (fewer classes a bucket),
#   at the price of wider output layers and more outputs to decode.
# * The output side of every model here is 12 to 195 times smaller than the
#   full layer, and the exact top-k scores only part of the ``K`` classes
#   for most queries (how much depends on ``aggregation``).  The
#   :doc:`benchmarks </benchmarks>` compare MACH with other extreme
#   classification methods at up to a million classes, and the
#   :ref:`user guide <choosing_b_r>` explains how to choose ``B``, ``R``
#   and the input size.
