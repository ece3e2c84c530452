"""
==========================================
Quickstart: tag suggestion on BibTeX data
==========================================

Train :class:`~sklearn_mach.MACHClassifier` on the ``bibtex`` multilabel
tagging set (4,880 training entries described by 1,836 binary word
features, 159 tags, about 2.4 tags per entry), suggest the five best tags of
test entries with :meth:`~sklearn_mach.MACHClassifier.predict_top_k`, score
them with the ranking metrics of :mod:`sklearn_mach.metrics`, and save the
model in the safe file format.

The dataset is read from the ``bibtex`` folder of
:func:`~sklearn_mach.datasets.get_data_home` (``$SKLEARN_MACH_DATA``, else
``~/sklearn_mach_data``); :ref:`datasets` says where to get it.
"""

# %%
# Loading the data
# ----------------
# The dataset folder holds ``X_train.npz``, ``Y_train.npz``, ``X_test.npz``
# and ``Y_test.npz`` (:func:`scipy.sparse.load_npz`; ``Y`` is a 0/1 label
# indicator matrix) and the names of the features and labels.
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

from sklearn_mach import MACHClassifier
from sklearn_mach.datasets import get_data_home
from sklearn_mach.metrics import ndcg_at_k, precision_at_k

data = get_data_home() / "bibtex"
X_train, Y_train, X_test, Y_test = (
    sp.load_npz(data / f"{name}.npz").tocsr()
    for name in ("X_train", "Y_train", "X_test", "Y_test")
)
tags = np.array((data / "label_names.txt").read_text().split())
words = np.array((data / "feature_names.txt").read_text().split())
print(f"train: X {X_train.shape}, Y {Y_train.shape}; test: X {X_test.shape}")
print(f"tags per entry: {Y_train.sum(axis=1).mean():.2f}")

# %%
# Training
# --------
# MACH hashes the 159 tags into ``B = 32`` buckets, independently
# ``R = 8`` times, and trains one small network per hash function to predict
# the buckets of an entry's tags (32 sigmoid outputs instead of 159).  A 2-D
# 0/1 target makes the classifier multilabel; with a 1-D target it would be
# multiclass.  ``random_state`` makes the hashing and the training
# reproducible.
clf = MACHClassifier(n_buckets=32, n_repetitions=8, random_state=0)
start = time.perf_counter()
clf.fit(X_train, Y_train)
print(f"fit in {time.perf_counter() - start:.1f} s")
print(
    "buckets of the first 8 tags in each repetition:\n"
    f"{clf.label_hasher_.buckets_[:, :8]}"
)

# %%
# Tag suggestions
# ---------------
# :meth:`~sklearn_mach.MACHClassifier.predict_top_k` returns the ``k`` best
# classes of each sample and their scores, best first, without building the
# ``n_samples x n_classes`` score matrix.  For a multilabel model the classes
# are the column indices of ``Y``.
top_labels, top_scores = clf.predict_top_k(X_test, k=5)
for i in range(3):
    print(f"entry {i}: words {', '.join(words[X_test[i].indices][:8])}, ...")
    print(f"  true tags: {', '.join(tags[Y_test[i].indices])}")
    suggested = (f"{tags[t]} ({s:.2f})" for t, s in zip(top_labels[i], top_scores[i]))
    print(f"  suggested: {', '.join(suggested)}")

# %%
# Evaluation
# ----------
# Precision at ``k`` counts the true tags among the ``k`` first suggestions,
# divided by ``k``; nDCG at ``k`` also rewards putting them first.  Both take
# either a score matrix (``decision_function``) or, as here, integer class
# indices ranked best first.
for k in (1, 3, 5):
    print(
        f"P@{k} = {precision_at_k(Y_test, top_labels, k=k):.3f}   "
        f"nDCG@{k} = {ndcg_at_k(Y_test, top_labels, k=k):.3f}"
    )

# %%
# Training curves
# ---------------
# ``histories_`` keeps the skorch history of each repetition's network: its
# training loss (binary cross-entropy over the buckets) after every epoch.
fig, ax = plt.subplots(figsize=(6, 3.5))
for r, history in enumerate(clf.histories_):
    ax.plot(
        history[:, "epoch"],
        history[:, "train_loss"],
        marker="o",
        ms=3,
        label=f"repetition {r + 1}",
    )
ax.set_xlabel("epoch")
ax.set_ylabel("training loss")
ax.set_title("One independent network per hash function")
ax.legend(ncol=2, fontsize="small")
fig.tight_layout()

# %%
# Saving and loading
# ------------------
# :meth:`~sklearn_mach.MACHClassifier.save` writes one safetensors file: the
# weights as tensors, the parameters and fitted state as JSON in its header.
# :meth:`~sklearn_mach.MACHClassifier.load` reads it back without unpickling
# or importing anything (see :ref:`persistence`).  The networks are stored
# on the CPU, so a model trained on a GPU loads on any machine.
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "bibtex.skmach"
    clf.save(path)
    print(f"model file: {path.stat().st_size / 1e6:.1f} MB")
    loaded = MACHClassifier.load(path)
same = np.array_equal(loaded.predict_top_k(X_test, k=5)[0], top_labels)
print(f"loaded model suggests the same tags: {same}")
