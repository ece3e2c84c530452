"""The MACH classifier: R small networks trained on hashed labels."""

from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from joblib import cpu_count, effective_n_jobs
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from skorch.history import History
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    _num_samples,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._device import resolve_device
from ._decoding import (
    BUCKET_OUTPUT,
    aggregate,
    candidate_classes,
    certified_top_k,
    pruning_pays,
    score_candidates,
    top_buckets,
    top_k_exact,
    top_k_of_candidates,
)
from . import _persistence
from ._hashing import CountMinLabelHasher
from ._training import (
    OPTIMIZERS,
    bucket_outputs,
    build_module,
    fit_repetition,
    fit_repetition_group,
)

#: predict_proba and decision_function refuse to return an (n_samples,
#: n_classes) float64 matrix larger than this (2 GiB); predict and
#: predict_top_k work block by block and have no such limit.
MAX_DENSE_OUTPUT_BYTES = 2 * 2**30

#: Rows of class scores decoded at once are chosen so that one block of
#: (rows x n_classes) float32 scores stays below this many elements (16 MiB).
_BLOCK_ELEMENTS = 1 << 22
_MAX_BLOCK_ROWS = 4096
#: Rows per block in candidate top-k mode (bounds the candidate pairs held).
_CANDIDATE_BLOCK_ROWS = 1024
#: Networks run on batches of exactly this many rows (the last one padded):
#: the same kernels then see every row, so a sample's scores do not depend on
#: which other samples are predicted with it.
_INFER_ROWS = 256
#: On these devices, fit trains the default networks in groups of
#: _GROUP_SIZE repetitions as one batched module (one kernel per layer for the
#: group): a GPU is otherwise mostly idle with one small network at a time.
#: The same model as separate training except that a group shares its batch
#: order, so results differ from a CPU fit with the same random_state.
_GROUPED_DEVICES = {"cuda"}
_GROUP_SIZE = 8
_ACCEPT_SPARSE = ("csr", "csc", "coo")


class MACHClassifier(ClassifierMixin, BaseEstimator):
    """Merged-Average Classifiers via Hashing for extreme classification.

    MACH (Medini et al., NeurIPS 2019) hashes the ``K`` classes into
    ``B << K`` buckets with ``R`` independent 2-universal hash functions
    (a :class:`CountMinLabelHasher`) and trains one small network per hash
    function to predict the bucket of a sample's class(es).  The score of
    class ``k`` is recovered from the ``R`` bucket outputs of the buckets
    ``k`` falls in.  Output layers and decoding cost scale with ``R * B``
    instead of ``K``, and the ``R`` networks train independently, in
    parallel through joblib.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_buckets : int, default=256
        Number of buckets ``B`` of each hash function: the output width of
        each network.

    n_repetitions : int, default=8
        Number of hash functions and networks ``R``.

    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layer widths of each repetition's :class:`MACHNetwork`.
        Ignored when ``module`` is given.

    n_hashed_features : int, default=None
        Hash the input features into this many rows of each network's input
        table, with a different hash function per repetition (as the
        reference implementation does, e.g. 337k -> 100k features).  The
        ``R`` input tables (``R * n_features * width`` weights in all)
        dominate the model for wide inputs; hashing shrinks them to
        ``R * n_hashed_features * width``.  ``None`` keeps one row per
        feature.  Ignored when ``module`` is given.

    module : type or callable, default=None
        A :class:`torch.nn.Module` class (or a callable returning a module)
        to use instead of :class:`MACHNetwork`.  It is called as
        ``module(n_features=n_features, n_outputs=n_buckets)`` and its
        ``forward`` gets a float32 batch of shape ``(batch, n_features)``,
        dense unless the class sets ``supports_sparse_input = True`` (then
        sparse input arrives as a ``torch.sparse_csr`` tensor).  It must be
        importable (defined in a module, not in ``__main__``) for process
        based joblib backends.

    max_epochs : int, default=10
        Number of passes over the training data of each network.

    batch_size : int, default=256
        Mini-batch size for training (and for prediction).

    lr : float, default=1e-2
        Learning rate of the optimizer.

    optimizer : {"adam", "sgd"} or torch.optim.Optimizer subclass, default="adam"
        ``"adam"`` is :class:`~sklearn_mach._optim.LazyAdam` (Adam that
        updates only the input-table rows a sparse batch touches); ``"sgd"``
        is plain :class:`torch.optim.SGD`.  An optimizer class gets dense
        gradients and is called as ``optimizer(params, lr=lr)``.

    aggregation : {"mean", "unbiased", "logit_sum"}, default="mean"
        How the ``R`` bucket outputs of a class are merged into its score:
        the mean of the bucket probabilities; the unbiased estimate
        ``B / (B - 1) * (mean - 1 / B)``; or the sum of bucket
        log-probabilities (multiclass) / logits (multilabel).

    device : str, default="auto"
        torch device to train and predict on.  ``"auto"`` picks ``"cuda"``
        when available, else ``"cpu"``.  A fitted model always stores its
        networks on the CPU, so it loads anywhere; predicting with a CUDA
        device on a machine without one falls back to the CPU with a
        warning.

    n_jobs : int, default=None
        Number of repetitions trained in parallel with joblib.  ``None``
        means 1 unless in a :func:`joblib.parallel_config` context; the
        context's backend (threads, processes, dask, ...) is honoured.

    random_state : int, RandomState instance or None, default=None
        Seeds the hash functions, the initial weights and the batch order of
        every repetition.  An int gives identical models whatever the joblib
        backend and ``n_jobs``.

    verbose : int, default=0
        0 prints nothing.  1 shows a progress bar per repetition (epochs and
        training loss, on stderr) and joblib's progress of the repetitions;
        2 and above also prints skorch's per-epoch table of each network.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (multiclass), or ``arange(n_labels)`` for a multilabel
        indicator target.

    label_hasher_ : CountMinLabelHasher
        The fitted hasher; ``label_hasher_.buckets_[r, k]`` is the bucket of
        class index ``k`` in repetition ``r``.

    networks_ : list of torch.nn.Module
        The ``R`` trained networks, on the CPU, in eval mode.

    histories_ : list of skorch.history.History
        The skorch training history (loss per epoch) of each network.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, if they are all strings.

    See Also
    --------
    CountMinLabelHasher : The label hashing used by MACH.
    sklearn.neural_network.MLPClassifier : A full-softmax network.

    References
    ----------
    T. K. R. Medini, Q. Huang, Y. Wang, V. Mohan, A. Shrivastava,
    "Extreme Classification in Log Memory using Count-Min Sketch: A Case
    Study of Amazon Search with 50M Products", NeurIPS 2019.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn_mach import MACHClassifier
    >>> X, y = make_classification(n_samples=200, n_classes=5,
    ...                            n_informative=6, random_state=0)
    >>> clf = MACHClassifier(n_buckets=4, n_repetitions=4,
    ...                      random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 5)
    """

    _parameter_constraints = {
        "n_buckets": [Interval(Integral, 2, None, closed="left")],
        "n_repetitions": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": [tuple, list],
        "n_hashed_features": [Interval(Integral, 1, None, closed="left"), None],
        "module": [callable, None],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "aggregation": [StrOptions(set(BUCKET_OUTPUT))],
        "device": [str, torch.device],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_buckets=256,
        n_repetitions=8,
        hidden_layer_sizes=(256,),
        n_hashed_features=None,
        module=None,
        max_epochs=10,
        batch_size=256,
        lr=1e-2,
        optimizer="adam",
        aggregation="mean",
        device="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_buckets = n_buckets
        self.n_repetitions = n_repetitions
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_hashed_features = n_hashed_features
        self.module = module
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.aggregation = aggregation
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Hash the labels and train one network per repetition.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.  Sparse input is never densified as a whole.

        y : array-like of shape (n_samples,) or {array-like, sparse matrix} \
                of shape (n_samples, n_labels)
            Class labels (multiclass; any hashable label type), or a 0/1
            label-indicator matrix (multilabel).

        Returns
        -------
        self : object
            The fitted classifier.  If fitting fails, the estimator is left
            exactly as it was before the call.
        """
        return self._atomic(self._fit, X, y, classes=None, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train every repetition's network for one epoch over ``(X, y)``.

        For data that do not fit in memory: call it once per chunk.  The
        first call fixes the classes and draws the hash functions; later
        calls continue from the current weights and optimizer state.  After
        :meth:`fit` (or :meth:`load`) it continues from the fitted weights
        with fresh optimizer moments.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.

        y : array-like of shape (n_samples,) or {array-like, sparse matrix} \
                of shape (n_samples, n_labels)
            Its targets, as in :meth:`fit`.

        classes : array-like of shape (n_classes,), default=None
            All the classes that can appear in ``y``; required on the first
            call, optional afterwards (then it must not change).  For a
            multilabel target, any array of length ``n_labels``.

        Returns
        -------
        self : object
            The updated classifier.  If the call fails, the estimator is
            left exactly as it was before it.
        """
        first_call = not hasattr(self, "networks_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._atomic(self._fit, X, y, classes=classes, incremental=True)

    def _atomic(self, method, *args, **kwargs):
        """Run ``method``; on any error restore the estimator as it was."""
        snapshot = dict(self.__dict__)
        try:
            method(*args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise
        return self

    def _fit(self, X, y, classes, incremental):
        device = resolve_device(self.device)
        continuing = incremental and hasattr(self, "networks_")
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=_ACCEPT_SPARSE,
            dtype=np.float32,
            multi_output=True,
            reset=not continuing,
        )
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        if continuing:
            classes, y_encoded, multilabel = self._encode_more_targets(y, classes)
            hasher = self.label_hasher_
            # A model fitted by fit() or loaded from a file has no optimizer
            # moments (and a loaded one no seeds): training goes on from the
            # weights with fresh moments.
            seeds = getattr(self, "_seeds", None)
            if seeds is None:
                seeds = check_random_state(self.random_state).randint(
                    np.iinfo(np.int32).max, size=self.n_repetitions
                )
            states = getattr(self, "_optimizer_states", [None] * len(self.networks_))
            warm = list(zip(self.networks_, states))
            n_updates = getattr(self, "_n_updates", 0)
        else:
            classes, y_encoded, multilabel = self._encode_targets(y, classes)
            rng = check_random_state(self.random_state)
            hasher = CountMinLabelHasher(
                n_buckets=self.n_buckets,
                n_repetitions=self.n_repetitions,
                random_state=rng.randint(np.iinfo(np.int32).max),
            ).fit(sp.csr_matrix((1, len(classes)), dtype=np.float32))
            seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_repetitions)
            warm = [None] * self.n_repetitions
            n_updates = 0

        targets = self._repetition_targets(hasher, y_encoded, multilabel)
        n_workers = min(effective_n_jobs(self.n_jobs), self.n_repetitions)
        epochs = 1 if incremental else self.max_epochs
        common = dict(
            multilabel=multilabel,
            n_outputs=self.n_buckets,
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=epochs,
            batch_size=self.batch_size,
            device=device,
            # Share the cores among the workers, never above the caller's
            # own torch.set_num_threads setting.
            n_threads=max(1, min(torch.get_num_threads(), cpu_count() // n_workers)),
            verbose=self.verbose,
            n_hashed_features=self.n_hashed_features,
        )
        # A new batch order for every partial_fit call.
        seeds = np.asarray(seeds)
        shuffle = (seeds + n_updates) % np.iinfo(np.int32).max
        grouped = (
            not incremental
            and self.module is None
            and torch.device(device).type in _GROUPED_DEVICES
        )
        if grouped:
            groups = [
                list(range(r, min(r + _GROUP_SIZE, self.n_repetitions)))
                for r in range(0, self.n_repetitions, _GROUP_SIZE)
            ]
            tasks = (
                delayed(fit_repetition_group)(
                    X,
                    [targets[r] for r in group],
                    seeds=[int(seeds[r]) for r in group],
                    shuffle_seed=int(shuffle[group[0]]),
                    description=f"repetitions {group[0] + 1}-{group[-1] + 1}"
                    f"/{self.n_repetitions}",
                    **common,
                )
                for group in groups
            )
            nested = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(tasks)
            results = [result for group in nested for result in group]
        else:
            results = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
                delayed(fit_repetition)(
                    X,
                    targets[r],
                    module=self.module,
                    seed=int(shuffle[r]),
                    description=f"repetition {r + 1}/{self.n_repetitions}",
                    warm_start=warm[r],
                    **common,
                )
                for r in range(self.n_repetitions)
            )

        self.classes_ = classes
        self.label_hasher_ = hasher
        self.networks_ = [module for module, _, _ in results]
        self.histories_ = [history for _, history, _ in results]
        self._multilabel = multilabel
        self._y_dtype = y.dtype
        self._sparse_y = sp.issparse(y)
        self._seeds = seeds
        self._n_updates = n_updates + epochs
        # Optimizer moments are kept only for streaming: a fitted model
        # carries its weights alone.
        states = [state for _, _, state in results]
        self._optimizer_states = states if incremental else [None] * len(states)
        return self

    def _encode_targets(self, y, classes=None):
        """Classes, encoded targets and whether the task is multilabel."""
        if sp.issparse(y) or (y.ndim == 2 and y.shape[1] > 1):
            target_type = type_of_target(y)
            if target_type != "multilabel-indicator":
                raise ValueError(
                    "MACHClassifier supports multiclass targets (1-D labels) and "
                    "multilabel targets (2-D 0/1 indicator matrices); got a 2-D "
                    f"target of type {target_type!r}."
                )
            Y = sp.csr_matrix(y, dtype=np.float32)
            if classes is not None and len(classes) != Y.shape[1]:
                raise ValueError(
                    f"classes has {len(classes)} entries but the multilabel "
                    f"target has {Y.shape[1]} columns."
                )
            return np.arange(Y.shape[1]), Y, True
        if y.ndim == 2:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y if classes is None else classes)
        if len(encoder.classes_) < 2:
            raise ValueError(
                "MACHClassifier needs samples of at least 2 classes in the data, "
                f"but the data contain only one class: {encoder.classes_[0]!r}."
            )
        return encoder.classes_, encoder.transform(y), False

    def _encode_more_targets(self, y, classes):
        """Encode a later partial_fit chunk against the classes of the first."""
        if classes is not None and not (
            len(classes) == len(self.classes_)
            and (self._multilabel or np.array_equal(np.unique(classes), self.classes_))
        ):
            raise ValueError(
                f"classes={classes!r} is not the same as on the first call to "
                f"partial_fit, which had {len(self.classes_)} classes."
            )
        multilabel = sp.issparse(y) or (y.ndim == 2 and y.shape[1] > 1)
        if multilabel != self._multilabel:
            kind = "multilabel" if self._multilabel else "multiclass"
            raise ValueError(f"This MACHClassifier was trained on a {kind} target.")
        if multilabel:
            if y.shape[1] != len(self.classes_):
                raise ValueError(
                    f"y has {y.shape[1]} label columns, expected {len(self.classes_)}."
                )
            return self._encode_targets(y)
        if y.ndim == 2:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        encoder = LabelEncoder()
        encoder.classes_ = self.classes_
        return self.classes_, encoder.transform(y), False

    def _repetition_targets(self, hasher, y_encoded, multilabel):
        """Training target of each repetition: bucket ids or multi-hot buckets."""
        if not multilabel:
            return [b[y_encoded].astype(np.int64) for b in hasher.buckets_]
        sketch = sp.csr_matrix(hasher.transform(y_encoded))
        sketch.data[:] = 1.0  # several labels in one bucket: still one positive
        B = self.n_buckets
        return [sketch[:, r * B : (r + 1) * B] for r in range(self.n_repetitions)]

    def _iter_outputs(self, X, block_rows=None):
        """Yield, per block of rows, the R networks' bucket outputs (torch)."""
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=_ACCEPT_SPARSE, dtype=np.float32, reset=False
        )
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        device = resolve_device(self.device, fallback_to_cpu=True)
        if block_rows is None:
            block_rows = max(
                1, min(_MAX_BLOCK_ROWS, _BLOCK_ELEMENTS // len(self.classes_))
            )
        output = BUCKET_OUTPUT[self.aggregation][self._multilabel]
        for start in range(0, X.shape[0], block_rows):
            rows = X[start : start + block_rows]
            yield [
                bucket_outputs(net, rows, device, output, batch_size=_INFER_ROWS)
                for net in self.networks_
            ]

    def _iter_scores(self, X):
        """Yield aggregated class scores (torch, float32) for blocks of rows."""
        buckets = None
        for outputs in self._iter_outputs(X):
            if buckets is None:
                buckets = torch.from_numpy(
                    self.label_hasher_.buckets_.astype(np.int64)
                ).to(outputs[0].device)
            yield aggregate(outputs, buckets, self.aggregation, self.n_buckets)

    def _scores(self, X):
        check_is_fitted(self)
        n_samples, n_classes = _num_samples(X), len(self.classes_)
        if n_samples * n_classes * 8 > MAX_DENSE_OUTPUT_BYTES:
            raise ValueError(
                f"The (n_samples, n_classes) = ({n_samples}, {n_classes}) score "
                f"matrix would take {n_samples * n_classes * 8 / 2**30:.1f} GiB, "
                f"over the {MAX_DENSE_OUTPUT_BYTES / 2**30:.1f} GiB limit of "
                "sklearn_mach._classifier.MAX_DENSE_OUTPUT_BYTES. Use "
                "predict_top_k(X, k) for the best classes, or pass fewer samples."
            )
        scores = np.empty((n_samples, n_classes))
        start = 0
        for block in self._iter_scores(X):
            scores[start : start + len(block)] = block.cpu().numpy()
            start += len(block)
        return scores

    def predict_top_k(self, X, k=5, n_candidate_buckets=None):
        """The ``k`` best classes of each sample and their scores, best first.

        Computed one block of rows at a time: peak memory is bounded by the
        block, never ``n_samples * n_classes``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.
        k : int, default=5
            Number of classes to return (at most ``n_classes``).
        n_candidate_buckets : int, default=None
            ``None`` returns the exact top ``k``.  When ``n_classes`` is
            large next to ``n_buckets`` it is found without scoring every
            class: the classes of the best buckets of each repetition are
            scored, and the search widens until no other class can reach
            the ``k``-th best score (a threshold algorithm; rows where that
            takes too many buckets are scored over all classes).  An int
            ``m`` takes the
            ``m`` best buckets of each repetition, and scores exactly only
            the union of their classes: about ``R * m * K / B`` classes per
            sample instead of ``K``.  A class missing from that union is
            never returned, so the result can differ from the exact top
            ``k``; the benchmarks document the recall it keeps.

        Returns
        -------
        labels : ndarray of shape (n_samples, k)
            The ``k`` highest-scoring classes (values of ``classes_``).
        scores : ndarray of shape (n_samples, k)
            Their aggregated scores (see ``aggregation``).
        """
        if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if n_candidate_buckets is not None and (
            not isinstance(n_candidate_buckets, Integral) or n_candidate_buckets < 1
        ):
            raise ValueError(
                "n_candidate_buckets must be None or a positive integer, got "
                f"{n_candidate_buckets!r}."
            )
        check_is_fitted(self)
        k = min(int(k), len(self.classes_))
        if n_candidate_buckets is None and self._prunes():
            blocks = self._iter_top_k_certified(X, k)
        elif n_candidate_buckets is None:
            blocks = (top_k_exact(s, k) for s in self._iter_scores(X))
        else:
            blocks = self._iter_top_k_candidates(X, k, n_candidate_buckets)
        indices, values = [], []
        for top_indices, top_values in blocks:
            indices.append(top_indices)
            values.append(top_values)
        if not indices:
            return self.classes_[:0].reshape(0, k), np.empty((0, k), np.float32)
        return self.classes_[np.concatenate(indices)], np.concatenate(values)

    def _iter_top_k_candidates(self, X, k, n_candidate_buckets):
        """Top ``k`` among the classes of the ``m`` best buckets (approximate)."""
        members, buckets = self._bucket_members(), self.label_hasher_.buckets_

        def decode(outputs):
            tops = top_buckets(outputs, n_candidate_buckets)
            candidates = candidate_classes(tops, members)
            scores = score_candidates(
                outputs, buckets, candidates, self.aggregation, self.n_buckets
            )
            indices, values = top_k_of_candidates(
                candidates, scores, k, self.n_repetitions
            )
            short = np.flatnonzero(indices[:, -1] < 0)
            if len(short):  # fewer than k candidates: score those rows exactly
                indices[short], values[short] = self._dense_top_k(outputs, short, k)
            return indices, values

        return self._iter_decoded(X, decode)

    def _iter_top_k_certified(self, X, k):
        """Exact top ``k``, scoring only as many classes as needed to prove it."""
        members, buckets = self._bucket_members(), self.label_hasher_.buckets_

        def decode(outputs):
            return certified_top_k(
                outputs, members, buckets, k, self.aggregation, self.n_buckets,
                dense_top_k=lambda rows: self._dense_top_k(outputs, rows, k),
            )

        return self._iter_decoded(X, decode)

    def _iter_decoded(self, X, decode):
        """Yield ``decode(outputs)`` for blocks of rows, as (indices, values).

        The decoding is numpy work on one core: each block of rows is split
        between as many threads as torch uses for the networks (numpy
        releases the GIL in its gathers).
        """
        n_threads = max(1, torch.get_num_threads())
        with ThreadPoolExecutor(n_threads) as pool:
            for outputs in self._iter_outputs(X, block_rows=_CANDIDATE_BLOCK_ROWS):
                outputs = [out.cpu().numpy() for out in outputs]
                parts = np.array_split(np.arange(len(outputs[0])), n_threads)
                results = list(pool.map(
                    decode, [[out[p] for out in outputs] for p in parts if len(p)]
                ))
                yield (np.concatenate([r[0] for r in results]),
                       np.concatenate([r[1] for r in results]))

    def _prunes(self):
        """Whether exact top-k skips most classes (see ``pruning_pays``)."""
        return pruning_pays(len(self.classes_), self.n_buckets, self.n_repetitions)

    def _bucket_members(self):
        hasher = self.label_hasher_
        return [hasher.bucket_members(r) for r in range(self.n_repetitions)]

    def _dense_top_k(self, outputs, rows, k):
        """Top ``k`` of some rows of a block of bucket outputs, over all classes."""
        buckets = torch.from_numpy(self.label_hasher_.buckets_.astype(np.int64))
        step = max(1, _BLOCK_ELEMENTS // len(self.classes_))
        indices, values = [], []
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            scores = aggregate(
                [torch.from_numpy(out[chunk]) for out in outputs],
                buckets,
                self.aggregation,
                self.n_buckets,
            )
            top_indices, top_values = top_k_exact(scores, k)
            indices.append(top_indices)
            values.append(top_values)
        return np.concatenate(indices), np.concatenate(values)

    def decision_function(self, X):
        """Aggregated class scores.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The score of every class (see ``aggregation``).  For a binary
            problem, the log-odds of the positive class ``classes_[1]``.

        Raises
        ------
        ValueError
            If the result would exceed ``MAX_DENSE_OUTPUT_BYTES`` (2 GiB);
            use :meth:`predict_top_k` then.
        """
        scores = self._scores(X)
        if len(self.classes_) == 2 and not self._multilabel:
            return self._binary_log_odds(scores)
        return scores

    def _binary_log_odds(self, scores):
        if self.aggregation == "logit_sum":
            return scores[:, 1] - scores[:, 0]
        scores = np.clip(scores, 1e-12, None)
        return np.log(scores[:, 1]) - np.log(scores[:, 0])

    def predict_proba(self, X):
        """Class probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Multiclass: the aggregated scores normalised over the classes
            (negative unbiased estimates are clipped to 0; ``logit_sum``
            takes the softmax).  Multilabel: the per-label probability
            estimate in ``[0, 1]``.

        Raises
        ------
        ValueError
            If the result would exceed ``MAX_DENSE_OUTPUT_BYTES`` (2 GiB);
            use :meth:`predict_top_k` then.
        """
        scores = self._scores(X)
        return self._proba_from_scores(scores)

    def _proba_from_scores(self, scores):
        if self._multilabel:
            if self.aggregation == "logit_sum":
                return expit(scores / self.n_repetitions)
            return np.clip(scores, 0.0, 1.0)
        if len(self.classes_) == 2:
            p1 = expit(self._binary_log_odds(scores))
            return np.column_stack([1.0 - p1, p1])
        if self.aggregation == "logit_sum":
            scores = scores - scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
        else:
            scores = np.clip(scores, 0.0, None)
            scores[scores.sum(axis=1) == 0] = 1.0  # no evidence at all: uniform
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predict class labels (multiclass) or label indicators (multilabel).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            The class with the highest score; for multilabel targets the
            labels whose probability exceeds 0.5 (a CSR matrix if the
            training target was sparse).
        """
        check_is_fitted(self)
        if not self._multilabel and len(self.classes_) > 2 and self._prunes():
            # The best class without scoring them all (see predict_top_k).
            labels, scores = self.predict_top_k(X, k=1)
            if self.aggregation != "logit_sum":
                # predict_proba is uniform where no class scores above 0.
                labels[scores[:, 0] <= 0, 0] = self.classes_[0]
            return labels[:, 0]
        blocks = []
        for scores in self._iter_scores(X):
            proba = self._proba_from_scores(scores.double().cpu().numpy())
            if not self._multilabel:
                blocks.append(self.classes_[np.argmax(proba, axis=1)])
            elif self._sparse_y:
                blocks.append(sp.csr_matrix((proba > 0.5).astype(self._y_dtype)))
            else:
                blocks.append((proba > 0.5).astype(self._y_dtype))
        if not blocks:
            shape = (0,) if not self._multilabel else (0, len(self.classes_))
            dtype = self.classes_.dtype if not self._multilabel else self._y_dtype
            blocks = [np.empty(shape, dtype=dtype)]
        if self._sparse_y:
            return sp.vstack(blocks, format="csr")
        return np.concatenate(blocks)

    def save(self, path, *, weights_dtype="float32"):
        """Write the fitted model to ``path`` as one safetensors file, without pickle.

        The file holds the weights and arrays as safetensors tensors and the
        parameters and fitted state as a JSON manifest in its header (see
        :ref:`persistence`).  :meth:`load` never unpickles, imports or calls
        anything the file names unless the caller trusts it.

        Parameters
        ----------
        path : str, path-like or binary file object
            Destination (conventionally ``*.skmach``).  A path is written
            atomically: an existing file is replaced only by a complete model.
        weights_dtype : {"float32", "float16", "bfloat16"}, default="float32"
            Storage type of the network weights.  ``"float16"`` halves the
            file; the loaded model predicts in float32 with the rounded
            weights (the benchmarks measure the effect on accuracy).
        """
        check_is_fitted(self)
        _persistence.save(self, path, weights_dtype=weights_dtype)

    @classmethod
    def load(cls, path, *, trusted=None):
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        path : str, path-like or binary file object
            A file written by :meth:`save`.
        trusted : list of classes, functions or str, default=None
            Classes the file may name besides sklearn-mach's own and the
            optimizers in ``sklearn_mach._persistence.TRUSTED_OPTIMIZERS``:
            a custom ``module`` or ``optimizer``, given as the object itself
            or as its ``"module:QualName"`` (as
            :func:`sklearn_mach.get_untrusted_types` lists them).  A file
            naming any other class is refused before anything is imported.

        Returns
        -------
        model : MACHClassifier
            The fitted model, its networks on the CPU in float32.

        Raises
        ------
        ValueError
            If the file is not a sklearn-mach model, is corrupt, truncated
            or inconsistent, names an untrusted class, or has another
            format version.

        Warns
        -----
        UserWarning
            If the file was written by another version of sklearn-mach.
        """
        return _persistence.load(path, cls, trusted=trusted)

    def _get_state(self, weights_dtype):
        """Fitted state as (JSON-able dict, {name: tensor}), for :meth:`save`."""
        tensors = {}
        names = getattr(self, "feature_names_in_", None)
        state = {
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": None if names is None
            else _persistence.pack_array(names, "feature_names_in", tensors),
            "classes": _persistence.pack_array(self.classes_, "classes", tensors),
            "multilabel": bool(self._multilabel),
            "sparse_y": bool(self._sparse_y),
            "y_dtype": np.dtype(self._y_dtype).str,
            "n_updates": int(self._n_updates),
            "histories": [
                [{k: v for k, v in epoch.items() if isinstance(v, (bool, int, float, str))}
                 for epoch in history]
                for history in self.histories_
            ],
        }
        self.label_hasher_._get_state(tensors, "label_hasher")
        tensors["seeds"] = torch.from_numpy(np.asarray(self._seeds, dtype=np.int64))
        for r, net in enumerate(self.networks_):
            for key, value in net.state_dict().items():
                if value.is_floating_point():
                    value = value.to(weights_dtype)
                tensors[f"networks.{r}.{key}"] = value.detach().cpu()
        return state, tensors

    def _set_state(self, state, tensors):
        """Restore what :meth:`_get_state` gave, checking every part first."""
        classes = _persistence.unpack_array(state["classes"], "classes", tensors)
        n_features = state["n_features_in"]
        if not isinstance(n_features, int) or not 0 < n_features < 2**31:
            raise ValueError(f"invalid n_features_in {n_features!r}.")
        names = state["feature_names_in"]
        if names is not None:
            names = _persistence.unpack_array(names, "feature_names_in", tensors)
            if len(names) != n_features:
                raise ValueError("feature_names_in does not match n_features_in.")
        multilabel, sparse_y = state["multilabel"], state["sparse_y"]
        if not isinstance(multilabel, bool) or not isinstance(sparse_y, bool):
            raise ValueError("multilabel and sparse_y must be booleans.")
        if len(classes) < 2 - multilabel:
            raise ValueError(f"{len(classes)} classes.")
        resolve_device(self.device, fallback_to_cpu=True)
        y_dtype = np.dtype(state["y_dtype"])
        if y_dtype.hasobject and y_dtype.kind != "O":
            raise ValueError(f"invalid y_dtype {state['y_dtype']!r}.")
        hasher = CountMinLabelHasher(
            n_buckets=self.n_buckets, n_repetitions=self.n_repetitions
        )._set_state(tensors, "label_hasher", n_classes=len(classes))
        seeds = tensors["seeds"]
        if seeds.shape != (self.n_repetitions,) or seeds.dtype != torch.int64:
            raise ValueError(f"seeds of shape {tuple(seeds.shape)}, expected ({self.n_repetitions},).")
        seeds = seeds.numpy()
        expected = {f"networks.{r}." for r in range(self.n_repetitions)}
        stray = [k for k in tensors if k.startswith("networks.")
                 and k[: k.index(".", 9) + 1] not in expected]
        if stray:
            raise ValueError(f"unexpected tensors {stray[:3]}.")
        networks = [
            self._load_network(tensors, f"networks.{r}.", n_features, int(seeds[r]))
            for r in range(self.n_repetitions)
        ]
        histories = state["histories"]
        if not (isinstance(histories, list) and len(histories) == self.n_repetitions
                and all(isinstance(h, list) and all(isinstance(e, dict) for e in h)
                        for h in histories)):
            raise ValueError("malformed histories.")
        n_updates = state["n_updates"]
        if not isinstance(n_updates, int) or n_updates < 0:
            raise ValueError(f"invalid n_updates {n_updates!r}.")
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names.astype(object)
        self.classes_ = classes
        self.label_hasher_ = hasher
        self.networks_ = networks
        self.histories_ = [History(h) for h in histories]
        self._multilabel = multilabel
        self._sparse_y = sparse_y
        self._y_dtype = y_dtype
        self._seeds = seeds
        self._n_updates = n_updates
        self._optimizer_states = [None] * self.n_repetitions

    def _load_network(self, tensors, prefix, n_features, seed):
        """Build one repetition's module and fill it with the stored tensors.

        The module is first built on torch's ``meta`` device (no memory) and
        its state compared with the stored tensors, so no shape read from a
        file allocates before it is proved to be backed by the file's data.
        """
        stored = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        def build():
            return build_module(
                self.module, n_features, self.n_buckets, tuple(self.hidden_layer_sizes),
                False, seed, n_hashed_features=self.n_hashed_features,
            )

        if self.module is None:  # the default network's rows come from the file
            rows = stored.get("feature_rows", stored.get("input_weight"))
            if rows is None or rows.ndim < 1 or rows.shape[0] != n_features:
                raise ValueError(f"{prefix}: no input table for {n_features} features.")
        try:
            with torch.device("meta"):
                expected = build().state_dict()
        except Exception:  # a custom module that cannot be built on meta
            expected = None
        if expected is not None:
            _persistence.check_tensors(prefix, expected, stored)
        net = build()
        own = net.state_dict()
        _persistence.check_tensors(prefix, own, stored)
        net.load_state_dict({k: v.to(own[k].dtype) for k, v in stored.items()}, strict=True)
        return net.eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags
