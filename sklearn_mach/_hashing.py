"""Count-Min sketching of label vectors with simple tabulation hashing.

MACH maps each of ``K`` classes to one of ``B`` buckets in each of ``R``
independent repetitions.  The same hashing, applied to a label vector
``y`` of length ``K``, is a Count-Min Sketch: bucket ``b`` of repetition
``r`` holds the sum of the entries of ``y`` whose class hashes to ``b``
under ``h_r``.  :class:`CountMinLabelHasher` exposes that linear map as an
ordinary scikit-learn transformer.

The hash functions are *simple tabulation* (Zobrist; Patrascu & Thorup,
2012): a key is split into its four bytes, each byte indexes a table of
random 32-bit words, and the words are XOR-ed.  The family is
3-independent, so in particular 2-universal as MACH requires.  Unlike the
Carter-Wegman family ``((a * k + b) mod p) mod B``, it has no arithmetic
structure for consecutive keys (class ids are ``0, 1, ..., K - 1``) to
line up with: for ``K <= 256`` the buckets are fully independent.

It is not 4-independent.  The XOR of the words of four keys that pair up
byte by byte (such as ``0, 1, 256, 257``) is zero, and with a power-of-two
``B`` (``mod B`` keeps the low bits) so is the XOR of their buckets:
``h(0) = h(1)`` implies ``h(256) = h(257)``.  A pair's collision rate is
still ``1 / B`` and the mean number of buckets a repetition uses is that
of random draws, but with ``K > 256`` it varies more between
repetitions: at ``K = 1000``, ``B = 1024``, a standard deviation of 16
buckets against 10 (9.9 at ``B = 1023``); at ``K = 18,069``,
``B = 2048`` no difference shows.  Repetitions stay independent of each
other (each has its own tables).
"""

import reprlib
from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from ._utils import cached, forget_cached, read_only_tensor

#: Keys are 32-bit: at most this many classes (or features) can be hashed.
MAX_KEYS = 1 << 32


def draw_tables(random_state, n_functions):
    """Random tables of ``n_functions`` tabulation hash functions.

    Returns
    -------
    tables : ndarray of shape (n_functions, 4, 256), dtype uint32
    """
    rng = check_random_state(random_state)
    return rng.randint(0, 1 << 32, size=(n_functions, 4, 256), dtype=np.uint32)


def _integers(values):
    """``values`` as an array if they are all integers, else ``None``.

    An integer array, an empty one, or an object array of Python ints (of
    any size: compare them with the range wanted before casting).
    """
    values = np.asarray(values)
    if values.dtype.kind in "iu" or values.size == 0:
        return values
    if values.dtype == object and all(
        isinstance(v, Integral) and not isinstance(v, bool) for v in values.flat
    ):
        return values
    return None


def tabulation_hash(keys, tables, n_buckets):
    """Evaluate simple tabulation hash functions on many keys at once.

    ``h(k) = (T0[k & 255] ^ T1[(k >> 8) & 255] ^ T2[(k >> 16) & 255]
    ^ T3[k >> 24]) mod B``.

    Parameters
    ----------
    keys : array-like of int of shape (n_keys,)
        Integer keys in ``[0, 2**32)``.
    tables : ndarray of shape (n_functions, 4, 256), dtype uint32
        The tables of each function (see :func:`draw_tables`).
    n_buckets : int
        Number of buckets ``B``.

    Returns
    -------
    buckets : ndarray of shape (n_functions, n_keys)
        ``buckets[r, i]`` is the bucket of ``keys[i]`` under function ``r``
        (int32, or int64 when ``n_buckets > 2**31``).
    """
    ints = _integers(keys)
    if ints is None:
        raise TypeError(
            f"Hash keys must be integers, got an array of {np.asarray(keys).dtype}."
        )
    if ints.size and (ints.min() < 0 or ints.max() >= MAX_KEYS):
        raise ValueError(f"Hash keys must lie in [0, {MAX_KEYS}).")
    keys = ints.astype(np.int64)
    parts = [((keys >> shift) & 0xFF).astype(np.uint8) for shift in (0, 8, 16, 24)]
    out = np.empty(
        (len(tables), keys.size), dtype=np.int32 if n_buckets <= 2**31 else np.int64
    )
    for r, table in enumerate(tables):
        word = table[0][parts[0]]
        for i in (1, 2, 3):
            word ^= table[i][parts[i]]
        out[r] = word % np.uint64(n_buckets)
    return out


#: Keys ``0 .. n - 1`` run through every value of their two low bytes in turn.
_LOW_KEYS = 1 << 16
#: Widest sparse sketch (``R * B`` columns) computed as scipy's product with
#: the sketch matrix, whose workspace takes about 12 bytes a column.
_PRODUCT_COLUMNS = 1 << 22
#: A sparse sketch is scipy's product with the sketch matrix (``K * R``
#: entries, about 28 bytes each, built per call) only where the labels hold
#: at least this many non-zeros per class and their rows at least ``B /
#: _PRODUCT_BUCKETS_PER_LABEL`` labels on average (labels sharing buckets:
#: the product's summed output is then smaller than their ``R`` entries
#: each, 8 bytes each before summing); elsewhere the entries are the
#: smaller, or within 12% of it (``benchmarks/results/sketch.md``).
_PRODUCT_NONZEROS_PER_CLASS = 4
_PRODUCT_BUCKETS_PER_LABEL = 4
#: Class values a block of rows of a sparse sketch expands to, at most
#: (``inverse_transform``): 4M values, about 64 MB of COO triples.
_EXPANDED_ENTRIES = 1 << 22


def hash_range(n_keys, tables, n_buckets, start=0):
    """:func:`tabulation_hash` of the keys ``start, ..., start + n_keys - 1``.

    The same buckets, computed without the keys: key ``k`` is
    ``65536 * j + i``, so its word is ``(T0 ^ T1)[i]``, one pattern of
    65,536 words shared by every block of keys, XOR-ed with the constant
    ``T2[j & 255] ^ T3[j >> 8]`` of block ``j``, and ``mod B`` is a mask for
    a power-of-two ``B``.  Class and feature ids are such ranges; at 3
    million classes and 32 repetitions this took a sixth (``B = 4000``) to
    a twentieth (``B = 4096``) of the time of four table lookups per key,
    and ``load`` 0.5 s instead of 1.3 s
    (``benchmarks/results/decode_memory.md``).

    Parameters
    ----------
    n_keys : int
        Number of keys.
    tables : ndarray of shape (n_functions, 4, 256), dtype uint32
    n_buckets : int
    start : int, default=0
        The first key: a long range can be hashed in blocks, each
        ``hash_range(n, tables, n_buckets, start)`` with its own ``start``.
        The last key, ``start + n_keys - 1``, is below ``MAX_KEYS``.

    Returns
    -------
    buckets : ndarray of shape (n_functions, n_keys)
        As :func:`tabulation_hash` returns them.
    """
    n_keys, n_buckets, start = int(n_keys), int(n_buckets), int(start)
    if n_keys < 0 or start < 0 or start + n_keys > MAX_KEYS:
        raise ValueError(f"Hash keys must lie in [0, {MAX_KEYS}).")
    small = n_buckets <= 2**31
    out = np.empty((len(tables), n_keys), dtype=np.int32 if small else np.int64)
    # the blocks of 65,536 keys the range meets, and its place in the first
    first, skip = divmod(start, _LOW_KEYS)
    n_blocks = -(-(skip + n_keys) // _LOW_KEYS)
    block = np.arange(first, first + n_blocks)
    words = np.empty((n_blocks, _LOW_KEYS), dtype=np.uint32)
    for r, table in enumerate(tables):
        pattern = (table[1][:, None] ^ table[0][None, :]).ravel()
        np.bitwise_xor(
            pattern, (table[2][block & 255] ^ table[3][block >> 8])[:, None], out=words
        )
        word = words.ravel()[skip : skip + n_keys]
        if not small:
            out[r] = word % np.uint64(n_buckets)
        elif n_buckets & (n_buckets - 1) == 0:  # mod a power of two: its low bits
            np.bitwise_and(word, np.uint32(n_buckets - 1), out=out[r].view(np.uint32))
        else:
            np.remainder(word, np.uint32(n_buckets), out=out[r].view(np.uint32))
    return out


def bucket_members(buckets, n_buckets):
    """The keys of each bucket: ``(indptr, keys)``, keys ascending within a bucket.

    Parameters
    ----------
    buckets : ndarray of shape (n_keys,)
        The bucket of each key.
    n_buckets : int

    Returns
    -------
    indptr : ndarray of shape (n_buckets + 1,)
        Bucket ``b`` holds ``keys[indptr[b]:indptr[b + 1]]``.
    keys : ndarray of shape (n_keys,)
        int32 below 2**31 keys (half the memory of argsort's int64: 1.3 GB
        less at K = 1e7 and R = 32), else int64.
    """
    if n_buckets <= 2**16:
        # Same order, but numpy radix-sorts 16-bit keys: 9x faster at K=1e6.
        buckets = buckets.astype(np.uint16)
    keys = np.argsort(buckets, kind="stable")
    if len(keys) <= np.iinfo(np.int32).max:
        keys = keys.astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(buckets, minlength=n_buckets))])
    return indptr, keys


def _float_dtype(X):
    """``X`` as float64 unless it is float32 or float64 already.

    ``check_array`` converts a sparse pandas DataFrame after its dtype
    conversion, so a frame of sparse booleans (``pd.get_dummies(...,
    sparse=True)``) comes back boolean, and a bucket's sum of labels would
    be ``True``.
    """
    return X if X.dtype in (np.float64, np.float32) else X.astype(np.float64)


class CountMinLabelHasher(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Count-Min Sketch of label vectors, as used by MACH.

    Each row of the input is a label vector of length ``K`` (a 0/1
    label-indicator row or non-negative label scores).  ``fit`` draws ``R``
    independent 2-universal hash functions ``h_r: [K] -> [B]``;
    ``transform`` returns the ``(n_samples, R * B)`` sketch whose column
    ``r * B + b`` sums the entries of the row whose class hashes to ``b``
    under ``h_r``.  The map is linear, so sparse input stays sparse.
    ``inverse_transform`` answers the point query of every class: the
    minimum (or mean) over repetitions of the buckets the class falls in.

    Read more about MACH in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_buckets : int, default=1024
        Number of buckets ``B`` of each hash function, below ``2**31`` (as
        in :class:`MACHClassifier`).  A bucket is a 32-bit hash word modulo
        ``B``, so where ``B`` does not divide ``2**32`` some buckets are
        likelier than others by a factor ``1 + 1 / floor(2**32 / B)``
        (``1.0023`` at ``B = 10**7``; exactly 1 for a power of two).

    n_repetitions : int, default=4
        Number of independent hash functions ``R``.

    estimator : {"min", "mean"}, default="min"
        How :meth:`inverse_transform` merges the ``R`` bucket values of a
        class.  ``"min"`` is the Count-Min estimate, never below the truth
        for non-negative input; ``"mean"`` averages the repetitions.

    random_state : int, RandomState instance or None, default=None
        Seeds the draw of the hash functions.  Pass an int for
        reproducible output across multiple function calls.

    Attributes
    ----------
    hash_tables_ : ndarray of shape (n_repetitions, 4, 256), dtype uint32
        The tables of each simple tabulation hash function ``h_r`` (see the
        :ref:`user guide <hashing>`).  They are all the randomness of the
        sketch.

    buckets_ : ndarray of shape (n_repetitions, `n_features_in_`), dtype int32
        ``buckets_[r, k]`` is the bucket of class ``k`` in repetition ``r``;
        a cache derived from ``hash_tables_``.

    n_features_in_ : int
        Number of classes ``K`` (columns of the label matrix seen in fit).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the label columns seen during fit, if they are all
        strings.

    See Also
    --------
    MACHClassifier : Trains one network per repetition on the sketch.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_mach import CountMinLabelHasher
    >>> Y = np.array([[1, 0, 0, 1, 0, 0],
    ...               [0, 1, 0, 0, 0, 1]])
    >>> hasher = CountMinLabelHasher(n_buckets=4, n_repetitions=3,
    ...                              random_state=0).fit(Y)
    >>> hasher.transform(Y).shape
    (2, 12)
    >>> bool((hasher.inverse_transform(hasher.transform(Y)) >= Y).all())
    True
    """

    _parameter_constraints = {
        "n_buckets": [Interval(Integral, 2, 2**31 - 1, closed="both")],
        "n_repetitions": [Interval(Integral, 1, None, closed="left")],
        "estimator": [StrOptions({"min", "mean"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self, n_buckets=1024, n_repetitions=4, estimator="min", random_state=None
    ):
        self.n_buckets = n_buckets
        self.n_repetitions = n_repetitions
        self.estimator = estimator
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the hash functions for label vectors of ``X.shape[1]`` classes.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_classes)
            Label-indicator matrix or non-negative label scores.  Only its
            number of columns is used.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted hasher.
        """
        snapshot = dict(self.__dict__)
        try:  # validate_data sets n_features_in_ before the checks that follow
            X = self._validate_labels(X, reset=True)
            n_classes = X.shape[1]
            if n_classes > MAX_KEYS:
                raise ValueError(
                    f"CountMinLabelHasher supports at most {MAX_KEYS} classes, "
                    f"got {n_classes}."
                )
            n_repetitions = int(self.n_repetitions)  # True counts as 1
            self.hash_tables_ = draw_tables(self.random_state, n_repetitions)
            # int(): a numpy integer's product keeps its type, and wraps
            self._n_features_out = n_repetitions * int(self.n_buckets)
            self.buckets_ = hash_range(n_classes, self.hash_tables_, self._n_buckets)
        except BaseException:  # a failed fit leaves the hasher as it was
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise
        forget_cached(self)
        return self

    @property
    def _n_buckets(self):
        """``B`` as fitted (``n_buckets`` may have changed since)."""
        return self._n_features_out // len(self.hash_tables_)

    def hash(self, classes):
        """Bucket of each class index in every repetition.

        Parameters
        ----------
        classes : array-like of int of shape (n,)
            Class indices in ``[0, n_features_in_)``.

        Returns
        -------
        buckets : ndarray of shape (n_repetitions, n), dtype int32
        """
        check_is_fitted(self, "hash_tables_")
        classes = np.asarray(classes)
        if classes.ndim != 1:
            raise ValueError(
                f"classes must be a 1-D array of class indices, got shape "
                f"{classes.shape}."
            )
        ints = _integers(classes)
        if ints is None:
            raise TypeError(
                f"classes must be integer class indices, got {classes.dtype}."
            )
        n_classes = self.n_features_in_
        if ints.size and (ints.min() < 0 or ints.max() >= n_classes):
            raise ValueError(
                f"classes must lie in [0, n_features_in_={n_classes}), got "
                f"values in [{ints.min()}, {ints.max()}]."
            )
        # the fitted sketch's shape, not the parameters, which set_params
        # may have changed since (as scikit-learn's transforms do)
        return tabulation_hash(ints, self.hash_tables_, self._n_buckets)

    def sketch_matrix(self):
        """The linear map of the sketch as a sparse 0/1 matrix.

        Returns
        -------
        M : scipy.sparse.csr_matrix of shape (n_features_in_, n_repetitions * n_buckets)
            ``M[k, r * B + b] = 1`` if and only if ``h_r(k) = b``;
            ``transform(X) = X @ M``.
        """
        check_is_fitted(self, "buckets_")
        n_classes = self.n_features_in_
        R = len(self.buckets_)
        cols = self.buckets_.T + np.arange(R) * self._n_buckets
        indptr = np.arange(0, n_classes * R + 1, R)
        data = np.ones(n_classes * R, dtype=np.float64)
        return sp.csr_matrix(
            (data, cols.ravel().astype(np.int64), indptr),
            shape=(n_classes, self._n_features_out),
        )

    def bucket_members(self, repetition):
        """Classes falling in each bucket of one repetition.

        Parameters
        ----------
        repetition : int
            Index ``r`` of the hash function.

        Returns
        -------
        indptr : ndarray of shape (n_buckets + 1,)
            Bucket ``b`` holds the classes ``members[indptr[b]:indptr[b + 1]]``.
        members : ndarray of shape (`n_features_in_`,)
            Class indices sorted by bucket (ascending within a bucket);
            int32 below 2**31 classes.
        """
        check_is_fitted(self, "buckets_")
        R = len(self.buckets_)
        if not (
            isinstance(repetition, Integral)
            and not isinstance(repetition, bool)
            and 0 <= repetition < R
        ):
            raise ValueError(
                f"repetition must be an integer in [0, {R}), got {repetition!r}."
            )
        return bucket_members(self.buckets_[repetition], self._n_buckets)

    def transform(self, X):
        """Sketch each label vector into ``R * B`` bucket sums.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_classes)
            Label-indicator matrix or non-negative label scores.

        Returns
        -------
        S : {ndarray, sparse matrix} of shape (n_samples, n_repetitions * n_buckets)
            The sketch; CSR (of the input's sparse container type) if ``X``
            is sparse.  Float32 input gives float32 output, anything else
            float64.
        """
        check_is_fitted(self, "buckets_")
        return self._sketch(self._validate_labels(X, reset=False))

    def _sketch(self, X):
        """:meth:`transform` of validated labels, whatever ``set_output``
        says: what MACHClassifier trains its multilabel networks on."""
        nnz = X.nnz if sp.issparse(X) else np.count_nonzero(X)
        if self._by_product(X.shape, nnz):  # labels share buckets: the product
            M = self.sketch_matrix().astype(X.dtype)
            if not sp.issparse(X):
                return np.ascontiguousarray(np.asarray(M.T @ X.T).T)
            S = sp.csr_matrix(X @ M)
            S.sort_indices()
        else:
            # from the entries, dense labels too: the product builds the
            # sketch matrix's K * R entries at every call (2.5 GB for one
            # row at K = 10**7, R = 8)
            S = self._sparse_sketch(sp.csr_matrix(X))
            if not sp.issparse(X):
                return S.toarray()
        return sp.csr_array(S) if isinstance(X, sp.sparray) else S

    def _by_product(self, shape, nnz):
        """Whether labels of ``shape`` with ``nnz`` non-zeros are sketched as
        a product with the sketch matrix (``_PRODUCT_NONZEROS_PER_CLASS``),
        else from their entries (:meth:`_sparse_sketch`)."""
        return (
            self._n_features_out <= _PRODUCT_COLUMNS
            and nnz >= _PRODUCT_NONZEROS_PER_CLASS * shape[1]
            and _PRODUCT_BUCKETS_PER_LABEL * nnz >= shape[0] * self._n_buckets
        )

    def _sparse_sketch(self, X):
        """``X @ sketch_matrix()`` for CSR ``X``, built from its entries: each
        stored value lands in ``R`` buckets.  The entries are grouped by row
        already, so the CSR arrays are written directly, with 32-bit indices
        where they fit.  Used where scipy's product would cost more: it
        builds the sketch matrix's ``K * R`` entries per call whatever ``X``
        holds (2.5 GB for one row at ``K = 10**7``, ``R = 8``), and
        allocates per output column (1.5 GiB for one row at ``R * B =
        2**27``).  Where rows hold ``B / 4`` labels or more and the labels
        ``_PRODUCT_NONZEROS_PER_CLASS`` non-zeros per class, the product is
        the smaller: with 500 labels a row at ``B = 64`` the entries took 8
        times its memory (``benchmarks/results/sketch.md``)."""
        R, B = len(self.buckets_), self._n_buckets
        fits = max(R * B, X.nnz * R) < 2**31
        index = np.int32 if fits else np.int64
        cols = self.buckets_[:, X.indices].T.astype(index)
        cols += np.arange(R, dtype=index) * index(B)
        S = sp.csr_matrix(
            (np.repeat(X.data, R), cols.ravel(), X.indptr.astype(index) * index(R)),
            shape=(X.shape[0], self._n_features_out),
            dtype=X.dtype,
        )
        S.sum_duplicates()  # classes sharing a bucket add up, indices sorted
        S.eliminate_zeros()  # as scipy's product: no stored zeros
        return S

    def inverse_transform(self, X):
        """Point-query estimate of every class from a sketch.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_repetitions * n_buckets)
            A sketch, as returned by :meth:`transform`.

        Returns
        -------
        Y : {ndarray, sparse matrix} of shape (n_samples, `n_features_in_`)
            ``min`` (or ``mean``, see ``estimator``) over repetitions of the
            bucket each class falls in.  CSR if ``X`` is sparse.
        """
        check_is_fitted(self, "buckets_")
        # the one parameter it reads that set_params may change after fit
        validate_parameter_constraints(
            {"estimator": self._parameter_constraints["estimator"]},
            {"estimator": self.estimator},
            caller_name=type(self).__name__,
        )
        X = self._validate_sketch(X)
        if sp.issparse(X):
            out = self._sparse_point_query(sp.csr_matrix(X, copy=True))
            return sp.csr_array(out) if isinstance(X, sp.sparray) else out
        return self._point_query(X)

    def _point_query(self, S):
        """The estimates of dense sketch ``S``."""
        B = self._n_buckets
        estimate = None
        for r in range(len(self.buckets_)):
            values = S[:, r * B + self.buckets_[r]]
            if estimate is None:
                estimate = values.copy()
            elif self.estimator == "min":
                np.minimum(estimate, values, out=estimate)
            else:
                estimate += values
        if self.estimator == "mean":
            estimate /= len(self.buckets_)
        return estimate

    def _classes_by_bucket(self):
        """Per repetition, the classes sorted by bucket (stable) and where
        each bucket's run starts: ``(classes, indptr, None)`` with
        :func:`bucket_members`' offsets (in the classes' dtype) where ``B
        <= K``, else ``(classes, None, buckets)`` with the sorted buckets
        (``B + 1`` offsets would outgrow the classes).  Computed once per
        fitted hasher (:func:`~sklearn_mach._utils.cached`)."""

        def build():
            members = []
            for b in self.buckets_:
                if self._n_buckets <= len(b):
                    indptr, classes = bucket_members(b, self._n_buckets)
                    indptr = indptr.astype(classes.dtype)  # at most K
                    members.append((classes, indptr, None))
                else:
                    dtype = np.int32 if len(b) < 2**31 else np.int64
                    classes = np.argsort(b, kind="stable").astype(dtype, copy=False)
                    members.append((classes, None, b[classes]))
            return members

        return cached(self, "classes_by_bucket", self.buckets_, build)

    def _sparse_point_query(self, S):
        """The estimates of CSR sketch ``S`` (a copy), as CSR, from its stored
        entries: each lands on the classes of its bucket, read from the
        classes sorted by bucket.  Neither ``B`` nor ``R * B`` sizes
        anything (scipy's column indexing allocates per sketch column: 256
        MiB at ``R * B = 2**26``), nor, after the first call, ``K``; rows go
        in blocks of at most ``_EXPANDED_ENTRIES`` class values, one row at
        least."""
        S.sum_duplicates()  # canonical: sorted, no duplicates
        R, K = len(self.buckets_), self.n_features_in_
        n = S.shape[0]
        repetition, bucket = np.divmod(S.indices.astype(np.int64), self._n_buckets)
        start = np.empty(S.nnz, dtype=np.int64)
        count = np.empty(S.nnz, dtype=np.int64)
        members = self._classes_by_bucket()
        for r, (_, indptr, by_bucket) in enumerate(members):
            here = repetition == r
            if indptr is not None:
                start[here] = indptr[bucket[here]]
                count[here] = indptr[bucket[here] + 1]
            else:  # in the buckets' dtype: numpy would widen by_bucket
                needles = bucket[here].astype(by_bucket.dtype)
                start[here] = np.searchsorted(by_bucket, needles, side="left")
                count[here] = np.searchsorted(by_bucket, needles, side="right")
            count[here] -= start[here]
        # rows in blocks: every stored entry becomes count class values
        row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(S.indptr))
        ends = np.cumsum(np.bincount(row_of, weights=count, minlength=n))
        cuts = [0]
        while cuts[-1] < n:
            done = ends[cuts[-1] - 1] if cuts[-1] else 0
            stop = np.searchsorted(ends, done + _EXPANDED_ENTRIES, side="right")
            cuts.append(int(max(stop, cuts[-1] + 1)))
        blocks = []
        for first, stop in zip(cuts[:-1], cuts[1:]):
            lo, hi = S.indptr[first], S.indptr[stop]
            estimate = None
            for r, (order, _, _) in enumerate(members):
                here = np.flatnonzero(repetition[lo:hi] == r) + lo
                counts = count[here]
                entry = np.repeat(here, counts)
                offset = np.arange(entry.size) - np.repeat(
                    np.cumsum(counts) - counts, counts
                )
                values = sp.csr_matrix(
                    (
                        S.data[entry],
                        (row_of[entry] - first, order[start[entry] + offset]),
                    ),
                    shape=(stop - first, K),
                )
                if estimate is None:
                    estimate = values
                elif self.estimator == "min":
                    estimate = estimate.minimum(values)
                else:
                    estimate = estimate + values
            if self.estimator == "mean":
                estimate.data /= R  # as the dense path divides
            estimate.sum_duplicates()
            estimate.eliminate_zeros()
            blocks.append(estimate)
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:  # no row
            return sp.csr_matrix((n, K), dtype=S.dtype)
        return sp.vstack(blocks, format="csr")

    def _validate_labels(self, X, reset):
        X = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc", "coo"),
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        X = _float_dtype(X)
        if sp.issparse(X):
            X = X.tocsr()
        # Count-Min estimates are upper bounds only for non-negative vectors.
        check_non_negative(X, "CountMinLabelHasher (label vectors)")
        return X

    def _validate_sketch(self, X):
        X = check_array(
            X, accept_sparse=("csr", "csc", "coo"), dtype=(np.float64, np.float32)
        )
        X = _float_dtype(X)
        if X.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {X.shape[1]} columns, but a sketch of this "
                f"CountMinLabelHasher has n_repetitions * n_buckets = "
                f"{self._n_features_out} columns (as fitted)."
            )
        return X.tocsr() if sp.issparse(X) else X

    def _get_state(self, tensors, prefix):
        """Add the fitted hash tables to ``tensors`` (for saving a model)."""
        tensors[f"{prefix}.hash_tables"] = read_only_tensor(
            self.hash_tables_.view(np.int32)
        )

    def _set_state(self, tensors, prefix, n_classes):
        """Restore the tables :meth:`_get_state` stored, for ``n_classes`` classes.

        ``n_classes`` must come from data the caller checked (the length of
        a stored array), never from a bare number in a file.
        """
        tables = tensors[f"{prefix}.hash_tables"]
        if tables.shape != (self.n_repetitions, 4, 256) or tables.dtype != torch.int32:
            raise ValueError(
                f"hash tables of shape {reprlib.repr(tuple(tables.shape))} "
                f"({tables.dtype}), expected ({self.n_repetitions}, 4, 256) int32."
            )
        self.hash_tables_ = tables.numpy().view(np.uint32).copy()
        self.n_features_in_ = n_classes
        self._n_features_out = int(self.n_repetitions) * int(self.n_buckets)
        self.buckets_ = hash_range(n_classes, self.hash_tables_, self._n_buckets)
        forget_cached(self)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
