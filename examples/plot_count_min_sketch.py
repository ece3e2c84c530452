"""
======================================================
How MACH hashes labels: the count-min sketch, R x B
======================================================

MACH never trains a ``K``-way output.  It draws ``R`` independent hash
functions ``h_r`` that map the ``K`` classes to ``B`` buckets, and network
``r`` learns to predict the buckets ``h_r(y)`` of a sample's labels.
Together the ``R`` targets are the count-min sketch of the label vector:
an ``R x B`` table whose cell ``(r, b)`` counts the labels that ``h_r``
sends to bucket ``b``.  :class:`~sklearn_mach.CountMinLabelHasher` computes
that sketch; this example draws it for a toy problem with ``K = 12``
classes, ``B = 4`` buckets and ``R = 3`` repetitions.
"""

# %%
# The hash functions
# ------------------
# ``fit`` only looks at the number of columns of the label matrix (``K``)
# and draws the random tables of each hash function (``hash_tables_``: simple
# tabulation hashing, see :ref:`the user guide <hashing>`).
# ``buckets_[r, k]`` is the bucket of class ``k`` in repetition ``r``.
import matplotlib.pyplot as plt
import numpy as np

from sklearn_mach import CountMinLabelHasher

K, B, R = 12, 4, 3
y = np.zeros((1, K))
y[0, [2, 9]] = 1  # a sample with two labels: classes 2 and 9
hasher = CountMinLabelHasher(n_buckets=B, n_repetitions=R, random_state=111).fit(y)
print("hash tables: R x 4 bytes x 256 random words:", hasher.hash_tables_.shape)
print("buckets_ (R x K):\n", hasher.buckets_)
for r in range(R):
    indptr, members = hasher.bucket_members(r)
    print(
        f"h_{r + 1}:", [members[indptr[b] : indptr[b + 1]].tolist() for b in range(B)]
    )

# %%
# The sketch of a label vector
# ----------------------------
# ``transform`` maps each label vector to its ``R * B`` bucket sums (it is a
# linear map, ``y @ sketch_matrix()``); reshaped, it is the ``R x B`` table.
# Each row is the training target of one network: a softmax target over its
# ``B`` buckets for multiclass data, a multi-hot one for multilabel data.
sketch = hasher.transform(y).reshape(R, B)
print("sketch (R x B):\n", sketch)

fig = plt.figure(figsize=(8, 5))
grid = fig.add_gridspec(
    2, 1, height_ratios=[1, R], hspace=0.6, left=0.2, right=0.97, top=0.86, bottom=0.08
)
ax_y, ax_s = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
colors = {2: "tab:red", 9: "tab:blue"}


def draw_cells(ax, values, n_rows, n_cols):
    ax.imshow(values, cmap="Greens", vmin=0, vmax=3.5, aspect="auto")
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="w", lw=3)
    ax.tick_params(which="both", length=0)


def draw_class(ax, x, y_pos, k, fontsize=11):
    true = k in colors
    ax.text(
        x,
        y_pos,
        str(k),
        ha="center",
        va="center",
        fontsize=fontsize,
        color=colors.get(k, "0.35"),
        fontweight="bold" if true else None,
    )


draw_cells(ax_y, y, 1, K)
for k in range(K):
    draw_class(ax_y, k, 0, k)
ax_y.set_xticks([])
ax_y.set_yticks([0], labels=["y"])
ax_y.set_title(f"label vector of one sample: K = {K} classes, labels 2 and 9")

draw_cells(ax_s, sketch, R, B)
for r in range(R):
    indptr, members = hasher.bucket_members(r)
    for b in range(B):
        ax_s.text(
            b,
            r + 0.3,
            f"sum {sketch[r, b]:.0f}",
            ha="center",
            va="center",
            fontsize=8,
            color="0.3",
        )
        classes = members[indptr[b] : indptr[b + 1]]
        for i, k in enumerate(classes):
            draw_class(ax_s, b + (i - (len(classes) - 1) / 2) * 0.17, r - 0.1, k)
ax_s.set_xticks(range(B), labels=[f"bucket {b}" for b in range(B)])
ax_s.set_yticks(range(R), labels=[f"$h_{r + 1}$ / network {r + 1}" for r in range(R)])
ax_s.set_title(f"its count-min sketch: R = {R} hash functions x B = {B} buckets")
fig.suptitle("MACH's label hashing: each class lands in one bucket per row")

# %%
# Decoding: the R buckets of each class
# -------------------------------------
# The score of class ``k`` is read from the ``R`` cells it falls in.  On the
# exact sketch, the minimum of these cells (``inverse_transform`` with
# ``estimator="min"``) is the count-min estimate: never below the truth, and
# above it only for a class that shares a bucket with a true label in every
# one of the ``R`` rows (printed below), which more repetitions make rare.
# :class:`~sklearn_mach.MACHClassifier` applies the same read-out to the
# *predicted* bucket probabilities of its ``R`` networks and merges them with
# their mean (``aggregation="mean"``) or one of its variants.
estimate_min = hasher.inverse_transform(sketch.reshape(1, -1))[0]
false_positives = np.flatnonzero((estimate_min > 0) & (y[0] == 0))
print("count-min false positives:", false_positives.tolist())

# %%
# For multilabel data each network is trained on the 0/1 version of its row
# (is there a label in this bucket?).  If the networks predicted these
# targets perfectly, the ``"mean"`` score of a class would be the fraction
# of its ``R`` buckets that hold a label: 1 for the true labels, less for
# most other classes.
targets = np.minimum(sketch, 1).reshape(1, -1)
mach_mean = hasher.set_params(estimator="mean").inverse_transform(targets)[0]
fig, ax = plt.subplots(figsize=(7.5, 3))
ax.bar(np.arange(K) - 0.27, y[0], width=0.27, label="true label", color="k")
ax.bar(np.arange(K), estimate_min, width=0.27, label="count-min: min of bucket sums")
ax.bar(
    np.arange(K) + 0.27,
    mach_mean,
    width=0.27,
    label="MACH, perfect networks: mean of 0/1 buckets",
)
ax.set_xticks(range(K))
ax.set_xlabel("class k")
ax.set_ylabel("estimate")
ax.legend(fontsize="small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, 1.32))
fig.tight_layout()
