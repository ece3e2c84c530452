"""
===========================================================
Text classification: a pipeline and a grid search over B, R
===========================================================

:class:`~sklearn_mach.MACHClassifier` is an ordinary scikit-learn classifier:
it goes at the end of a :class:`~sklearn.pipeline.Pipeline` that starts from
raw text, and :class:`~sklearn.model_selection.GridSearchCV` tunes its number
of buckets ``B`` and repetitions ``R`` with a precision-at-k scorer from
:mod:`sklearn_mach.metrics`.

The task comes from the ``pypi-maskedword`` dataset: each sample is the
context of one word of a PyPI package summary, with ``_`` where the word
was, and the class is the hidden word (18,069 words in the full set).  To
keep this example fast it uses the 200 most frequent words and 30 contexts
of each.
"""

# %%
# Loading a subset of the raw text
# --------------------------------
# ``texts_train.txt`` holds one context per line, row-aligned with the class
# ids of ``y_train.npy``; ``label_names.txt`` names the classes, most
# frequent first.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from sklearn_mach import MACHClassifier
from sklearn_mach.datasets import get_data_home
from sklearn_mach.metrics import get_scorer, make_at_k_scorer

data = get_data_home() / "pypi-maskedword"
class_ids = np.load(data / "y_train.npy")
words = np.array((data / "label_names.txt").read_text().split())

n_classes, per_class = 200, 30
rng = np.random.default_rng(0)
rows = np.sort(
    np.concatenate(
        [
            rng.choice(np.flatnonzero(class_ids == c), per_class, replace=False)
            for c in range(n_classes)
        ]
    )
)
wanted = set(rows.tolist())
with open(data / "texts_train.txt", encoding="utf-8") as f:
    texts = np.array([line.rstrip("\n") for i, line in enumerate(f) if i in wanted])
y = words[class_ids[rows]]  # string labels
for text, label in zip(texts[:5].tolist(), y[:5].tolist()):
    print(f"{text[:50]!r:52} -> {label}")

texts_train, texts_test, y_train, y_test = train_test_split(
    texts, y, test_size=0.25, stratify=y, random_state=0
)
print(
    f"{len(texts_train)} training and {len(texts_test)} test contexts, "
    f"{n_classes} classes"
)

# %%
# The pipeline
# ------------
# The vectorizer splits on whitespace and keeps ``_`` as a token, so its word
# bigrams such as ``"python _"`` or ``"_ wrapper"`` tell which words stand
# right before and after the hidden one.  The classifier gets a 1-D target
# of strings: a multiclass problem, one softmax over the ``B`` buckets per
# repetition.  Small networks and few epochs keep the search short.
pipe = Pipeline(
    [
        (
            "tfidf",
            # float32 features: MACHClassifier trains in the dtype of X, and
            # float64 (the vectorizer's default) is about 3 times slower
            TfidfVectorizer(
                token_pattern=r"\S+",
                ngram_range=(1, 2),
                sublinear_tf=True,
                dtype=np.float32,
            ),
        ),
        (
            "mach",
            MACHClassifier(
                hidden_layer_sizes=(64,), max_epochs=5, batch_size=64, random_state=0
            ),
        ),
    ]
)

# %%
# Grid search over ``B`` and ``R``
# --------------------------------
# ``make_at_k_scorer("precision", k=1)`` (the same as
# ``get_scorer("precision_at_1")``) ranks the classes with the final
# step's ``predict_top_k`` (on the TF-IDF features, without an
# ``n x K`` matrix) and returns the mean precision at 1, here the
# accuracy.  ``get_scorer("recall_at_5")`` gives the fraction of contexts
# whose word is among the 5 best guesses (the top-5 accuracy, for one label
# per sample).  scikit-learn does not know these names as ``scoring``
# strings: pass the scorer objects.
param_grid = {
    "mach__n_buckets": [16, 64],
    "mach__n_repetitions": [2, 8],
}
scoring = {"P@1": make_at_k_scorer("precision", k=1), "R@5": get_scorer("recall_at_5")}
search = GridSearchCV(pipe, param_grid, scoring=scoring, refit="P@1", cv=3)
start = time.perf_counter()
search.fit(texts_train, y_train)
print(f"grid search in {time.perf_counter() - start:.0f} s")

results = search.cv_results_
for i, params in enumerate(results["params"]):
    print(
        f"B={params['mach__n_buckets']:3d} R={params['mach__n_repetitions']}: "
        f"P@1 {results['mean_test_P@1'][i]:.3f} "
        f"(+/- {results['std_test_P@1'][i]:.3f}), "
        f"R@5 {results['mean_test_R@5'][i]:.3f}"
    )
print("best:", search.best_params_)

# %%
# The cross-validated precision at 1 of each setting:
Bs, Rs = param_grid["mach__n_buckets"], param_grid["mach__n_repetitions"]
p_at_1 = np.empty((len(Rs), len(Bs)))
for params, score in zip(results["params"], results["mean_test_P@1"]):
    p_at_1[
        Rs.index(params["mach__n_repetitions"]), Bs.index(params["mach__n_buckets"])
    ] = score
fig, ax = plt.subplots(figsize=(4.5, 3.5))
image = ax.imshow(p_at_1, cmap="viridis")
for (i, j), value in np.ndenumerate(p_at_1):
    dark = value < (p_at_1.min() + p_at_1.max()) / 2
    ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w" if dark else "k")
ax.set_xticks(range(len(Bs)), labels=Bs)
ax.set_yticks(range(len(Rs)), labels=Rs)
ax.set_xlabel("buckets B")
ax.set_ylabel("repetitions R")
ax.set_title("cross-validated P@1, 200 classes")
fig.colorbar(image)
fig.tight_layout()

# %%
# The refitted best pipeline on the held-out contexts
# ---------------------------------------------------
# The scorers also work on any fitted estimator.  ``predict_top_k`` of the
# final step gives the 5 best guesses of new contexts.
best = search.best_estimator_
print(
    f"test P@1 {get_scorer('precision_at_1')(best, texts_test, y_test):.3f}, "
    f"R@5 {get_scorer('recall_at_5')(best, texts_test, y_test):.3f}"
)
contexts = [
    "fast _ framework building apis",
    "python _ google cloud",
    "simple command line _",
    "machine learning _ pytorch",
]
guesses, _ = best["mach"].predict_top_k(best["tfidf"].transform(contexts), k=5)
for context, row in zip(contexts, guesses):
    print(f"{context!r:40} -> {', '.join(row)}")
