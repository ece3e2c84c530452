"""
==========================================
Quickstart: tag suggestion on BibTeX data
==========================================

Train :class:`~sklearn_mach.MACHClassifier` on the ``bibtex`` multilabel
tagging set (4,880 training entries, 159 tags) and report precision at 1, 3
and 5 on its test split.  The data lie in ``../shared/data`` beside the
checkout (set ``SKLEARN_MACH_DATA`` to read them elsewhere).
"""

import os
import time
from pathlib import Path

import scipy.sparse as sp

from sklearn_mach import MACHClassifier
from sklearn_mach.metrics import precision_at_k

data = Path(os.environ.get("SKLEARN_MACH_DATA", "../shared/data")) / "bibtex"
X_train, Y_train, X_test, Y_test = (
    sp.load_npz(data / f"{name}.npz").tocsr()
    for name in ("X_train", "Y_train", "X_test", "Y_test")
)

clf = MACHClassifier(n_buckets=256, n_repetitions=8, random_state=0)
start = time.perf_counter()
clf.fit(X_train, Y_train)
print(f"fit in {time.perf_counter() - start:.1f} s")

scores = clf.decision_function(X_test)
for k in (1, 3, 5):
    print(f"P@{k} = {precision_at_k(Y_test, scores, k=k):.3f}")
