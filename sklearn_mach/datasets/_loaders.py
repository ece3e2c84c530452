"""Readers and writers of the standard extreme classification file formats.

Every loader returns a CSR feature matrix ``X`` and a CSR label-indicator
matrix ``Y`` (stored values all 1), both ``float32``.

Two formats are supported:

* the text format of the `Extreme Classification Repository
  <http://manikvarma.org/downloads/XC/XMLRepository.html>`_: a header line
  ``n_samples n_features n_labels``, then one line per sample,
  ``l1,l2,...,lm f1:v1 f2:v2 ...``, with 0-based label and feature indices
  (a sample without labels has a line starting with a space);
* multilabel svmlight / libsvm files, read and written with
  :func:`sklearn.datasets.load_svmlight_file` and
  :func:`sklearn.datasets.dump_svmlight_file`.

Paths may be ``str`` or :class:`os.PathLike` (names ending in ``.gz`` or
``.bz2`` are (de)compressed), or open file objects.
"""

import bz2
import codecs
import gzip
import io
import os
import re
import warnings
from contextlib import ExitStack, closing, contextmanager
from itertools import chain
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_svmlight_file
from sklearn.utils import check_array
from sklearn.utils._param_validation import (
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

from .._utils import damaged_data_errors

__all__ = [
    "dump_svmlight_multilabel",
    "dump_xc_repository",
    "load_svmlight_multilabel",
    "load_xc_repository",
]

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FEATURE = rf"\d+:{_NUMBER}"
# Labels (possibly none), then features each preceded by blanks; or, leniently,
# a line of features that does not start with a blank.
_XC_LINE = re.compile(
    rf"(?:\d+(?:,\d+)*)?(?:[ \t]+{_FEATURE})*[ \t]*"
    rf"|{_FEATURE}(?:[ \t]+{_FEATURE})*[ \t]*",
    re.ASCII,  # \d is 0-9 only: numpy parses no other digits
)
_COUNT = re.compile(r"[0-9]+")
_WRITE_BLOCK = 8192  # rows formatted at once by the writers
_READ_CHUNK = 1 << 20  # characters read (and lines parsed) at once


# ---------------------------------------------------------------------------
# File handling
# ---------------------------------------------------------------------------


def _check_path(path):
    """Raise a TypeError unless ``path`` is a path or a file object."""
    if isinstance(path, (str, os.PathLike)) or hasattr(path, "read"):
        return
    if hasattr(path, "write"):
        return
    raise TypeError(
        f"path must be a str, an os.PathLike or a file object, got "
        f"{type(path).__name__}."
    )


def _opener(path):
    """``open``-like function for ``path``, by its compression suffix."""
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name.endswith(".gz"):
        return gzip.open
    if name.endswith(".bz2"):
        return bz2.open
    return open


def _text_chunks(path):
    """The text of ``path`` (path or file object) as ``str`` pieces of
    whole lines, ``"\\r\\n"`` read as ``"\\n"``: every piece but the last
    ends with ``"\\n"``; an empty file yields none.

    The file is read ``_READ_CHUNK`` characters at a time, so that a
    reader never holds more than a piece of it as text.
    """
    _check_path(path)
    name = _file_name(path)
    pending, offset = [], 0  # an unfinished line; bytes read so far
    # damaged .gz/.bz2 data, or a compressed stream however wrapped
    with damaged_data_errors(name), ExitStack() as stack:
        if hasattr(path, "read"):
            f = path
        else:
            f = stack.enter_context(_opener(path)(path, "rb"))
        while chunk := f.read(_READ_CHUNK):
            if isinstance(chunk, (bytes, bytearray)):
                try:
                    text = chunk.decode("ascii")
                except UnicodeDecodeError as exc:
                    raise ValueError(
                        f"The file is not plain ASCII text (byte {offset + exc.start})."
                    ) from None
                offset += len(chunk)
            else:
                text = chunk
            end = text.rfind("\n") + 1
            if end:
                pending.append(text[:end])
                yield "".join(pending).replace("\r\n", "\n")
                pending = []
            pending.append(text[end:])
    rest = "".join(pending)
    if rest:
        yield rest.replace("\r\n", "\n")


def _writes_text(f):
    """Whether file object ``f`` takes ``str``: an ``io.TextIOBase``, a
    codecs writer, or a wrapper opened in a text mode (temporary files);
    anything else is sent bytes, as a binary file."""
    if isinstance(f, (io.TextIOBase, codecs.StreamWriter, codecs.StreamReaderWriter)):
        return True
    mode = getattr(f, "mode", None)
    return isinstance(mode, str) and "b" not in mode


@contextmanager
def _text_writer(path):
    """Yield a ``write(str)`` function for ``path`` (path or file object)."""
    _check_path(path)
    if hasattr(path, "write"):
        if _writes_text(path):
            yield path.write
        else:
            yield lambda text: path.write(text.encode("ascii"))
        return
    with _opener(path)(path, "wt", encoding="ascii", newline="\n") as f:
        yield f.write


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_count(value, name, default):
    """``value`` as a non-negative int, or ``default`` when it is None."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int or None, got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}.")
    if value > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must be at most 2**63 - 1, got {value}.")
    return int(value)


def _indicator_csr(Y, n_samples):
    """Canonical ``float32`` CSR copy of a 0/1 label-indicator matrix."""
    if not sp.issparse(Y) and np.ndim(Y) != 2:
        raise ValueError(
            f"Y must be a 2-D label-indicator matrix, got shape {np.shape(Y)}."
        )
    # checked in float64 (or float32, long double: kept as they are), not
    # cast to float32 first, which took 0.99999999 to a label and 1e-50 to
    # none; other dtypes (numeric strings, objects, sparse ints whose
    # duplicates could wrap) are read as float64, element by element.  A
    # dense array of ints or bools is checked in its own dtype and float16
    # in float32 (exactly): no dense copy larger than the input
    dtype = [np.float64, np.float32, np.longdouble]
    own = getattr(Y, "dtype", None)
    if sp.issparse(Y) and Y.dtype.kind in "iu":
        # summed in float64 when check_array makes it CSR, not wrapped (256
        # uint8 ones); values float64 would round are no 0/1 entries (bool
        # duplicates are an OR, as scipy sums them)
        data = Y.tocoo().data if Y.format in ("dia", "dok", "lil") else Y.data
        if ((data > 2**53) | (data < -(2**53))).any():  # compared exactly
            raise ValueError("Y must be a label-indicator matrix of 0s and 1s.")
        Y = Y.astype(np.float64)
    elif isinstance(own, np.dtype):
        if own.kind in "biu":
            dtype = None
        elif own == np.float16:
            dtype = np.float32
    Y = check_array(
        Y,
        accept_sparse="csr",
        dtype=dtype,
        ensure_min_samples=0,
        ensure_min_features=0,
        input_name="Y",
    )
    Y = sp.csr_matrix(Y, copy=True)
    Y.sum_duplicates()
    Y.eliminate_zeros()
    if not np.all(Y.data == 1):
        raise ValueError("Y must be a label-indicator matrix of 0s and 1s.")
    if Y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but Y has {Y.shape[0]}.")
    # the copy's own index arrays, its values as float32
    return sp.csr_matrix(
        (Y.data.astype(np.float32, copy=False), Y.indices, Y.indptr),
        shape=Y.shape,
        copy=False,
    )


def _feature_csr(X):
    """Canonical CSR copy of ``X`` with a floating dtype and finite values."""
    X = check_array(
        X,
        accept_sparse="csr",
        dtype=(np.float64, np.float32),
        ensure_min_samples=0,
        ensure_min_features=0,
        input_name="X",
    )
    X = sp.csr_matrix(X, copy=True)
    X.sum_duplicates()
    return X


def _float32_values(values, counts, describe_row):
    """``values`` (rows holding ``counts`` each) as float32; a value that is
    not finite there raises ``ValueError`` naming its row."""
    with np.errstate(over="ignore", invalid="ignore"):
        values32 = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values32))
    if bad.size:
        value = float(values[bad[0]])
        raise ValueError(
            f"{describe_row(_row_of(counts, bad[0]))}: feature value {value!r} is "
            + (
                "outside float32's range."
                if np.isfinite(value)
                else "not finite in float32 (the file's value is nan, inf, or "
                "beyond float32's range, about 3.4e38)."
            )
        )
    return values32


def _file_name(path):
    """How messages name ``path``: its path, a file object's name, or "The file"."""
    if isinstance(path, (str, os.PathLike)):
        return os.fspath(path)
    name = getattr(path, "name", None)
    return name if isinstance(name, str) and name else "The file"


def _check_float32_range(X, reader):
    """Refuse float64 values ``reader`` would read back as inf in float32."""
    if X.dtype != np.float32:
        with np.errstate(over="ignore"):
            outside = np.flatnonzero(np.isinf(X.data.astype(np.float32)))
        if outside.size:
            raise ValueError(
                f"X holds {float(X.data[outside[0]])!r}, outside float32's range, "
                f"which {reader} refuses."
            )


def _row_of(counts, entry):
    """The row of flat entry ``entry``, rows holding ``counts`` entries each."""
    return int(np.searchsorted(np.cumsum(counts), entry, side="right"))


def _assemble_labels(indices, counts, n_labels, describe_row):
    """CSR indicator from flat label ``indices`` and per-row ``counts``."""
    out_of_range = np.flatnonzero(indices >= n_labels)
    if out_of_range.size:
        row = _row_of(counts, out_of_range[0])
        index = int(indices[out_of_range[0]])
        shown = f"{index}" if index < np.iinfo(np.int64).max else f"{index} or more"
        raise ValueError(
            f"{describe_row(row)}: label index {shown} is "
            f"out of range for {n_labels} labels."
        )
    indptr = np.concatenate([[0], np.cumsum(counts)])
    Y = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.float32), indices, indptr),
        shape=(counts.size, n_labels),
    )
    Y.sum_duplicates()  # a label listed twice is still one label
    Y.data[:] = 1
    return Y


# ---------------------------------------------------------------------------
# Extreme Classification Repository format
# ---------------------------------------------------------------------------


def _parse_header(line):
    """``(n_samples, n_features, n_labels)`` of the header line."""
    fields = line.split()
    if len(fields) != 3 or not all(_COUNT.fullmatch(field) for field in fields):
        raise ValueError(
            "Line 1: expected the header 'n_samples n_features n_labels', got "
            f"{line[:80]!r}."
        )
    counts = tuple(int(field) for field in fields)
    if max(counts) > np.iinfo(np.int64).max:
        raise ValueError(f"Line 1: a count of the header exceeds 2**63 - 1: {line!r}.")
    return counts


def _split_samples(lines):
    """Label and feature parts of each (validated) sample line."""
    parts = [line.split(None, 1) for line in lines]
    labels = [p[0] if p and ":" not in p[0] else "" for p in parts]
    features = [
        "" if not p else line if ":" in p[0] else p[1] if len(p) > 1 else ""
        for p, line in zip(parts, lines)
    ]
    return labels, features


def _parse_numbers(text, dtype, sep, count):
    """The ``count`` numbers of ``text``, parsed in C; ``text`` has been
    validated.  Older numpy stops at what it cannot parse, with a
    ``DeprecationWarning`` (numpy 2.4 raises): a count that differs is
    refused."""
    if not count:  # numpy would parse blanks as [-1]
        return np.empty(0, dtype=dtype)
    numbers = np.fromstring(text, dtype=dtype, sep=sep)
    if numbers.size != count:
        raise ValueError(
            f"The file's numbers could not be parsed: {numbers.size} of {count} read."
        )
    return numbers


def load_xc_repository(path, n_features=None, n_labels=None):
    """Load a dataset in the Extreme Classification Repository text format.

    The first line is the header ``n_samples n_features n_labels``; each of
    the ``n_samples`` following lines is ``l1,l2,...,lm f1:v1 f2:v2 ...``:
    comma-separated 0-based label indices (none for an unlabelled sample,
    whose line then starts with a space, or is empty if it has no feature
    either), then 0-based ``index:value``
    feature pairs.  A label or feature index listed twice in a line counts
    once for labels and sums its values for features (in float64, then
    rounded to float32 once; the sum must be within float32's range).

    Parameters
    ----------
    path : str, os.PathLike or file object
        The file (``.gz`` and ``.bz2`` names are decompressed), or an open
        text or binary file object, read a megabyte at a time (its ``read``
        takes a size, as Python's file objects' do).
    n_features : int, default=None
        Number of feature columns of ``X``; by default, the header's.  Useful
        when the header of a test file is inconsistent with its training file.
    n_labels : int, default=None
        Number of label columns of ``Y``; by default, the header's.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), dtype float32
        Features, with sorted column indices.
    Y : scipy.sparse.csr_matrix of shape (n_samples, n_labels), dtype float32
        Label-indicator matrix (stored values are all 1).

    Raises
    ------
    ValueError
        On a malformed line, a header inconsistent with the number of lines,
        or an index out of range; the message gives the line number.

    See Also
    --------
    dump_xc_repository : Write a dataset in this format.

    Examples
    --------
    >>> import io
    >>> from sklearn_mach.datasets import load_xc_repository
    >>> X, Y = load_xc_repository(io.StringIO("2 3 4\\n0,3 1:0.5\\n 2:1\\n"))
    >>> X.toarray()
    array([[0. , 0.5, 0. ],
           [0. , 0. , 1. ]], dtype=float32)
    >>> Y.toarray()
    array([[1., 0., 0., 1.],
           [0., 0., 0., 0.]], dtype=float32)
    """
    header = None
    n_lines = 0  # sample lines, trailing blank lines included
    beyond = False  # a line that is not blank after the declared samples
    X_blocks, Y_blocks = [], []
    with closing(_text_chunks(path)) as chunks:  # closes the file on errors
        for chunk in chunks:
            lines = chunk.split("\n")
            if chunk.endswith("\n"):
                lines.pop()  # after the final newline
            if header is None:
                header = _parse_header(lines[0])
                n_samples = header[0]
                n_features = _check_count(n_features, "n_features", header[1])
                n_labels = _check_count(n_labels, "n_labels", header[2])
                del lines[0]
            samples = lines[: max(n_samples - n_lines, 0)]
            if samples:
                X_block, Y_block = _parse_xc_lines(
                    samples, n_lines + 2, n_features, n_labels
                )
                X_blocks.append(X_block)
                Y_blocks.append(Y_block)
            beyond = beyond or any(line.strip() for line in lines[len(samples) :])
            n_lines += len(lines)
    if header is None:
        raise ValueError("The file is empty: the header line is missing.")
    if n_lines < n_samples or beyond:
        raise ValueError(
            f"The header declares {n_samples} samples but the file has "
            f"{n_lines} sample lines."
        )
    return _stack_rows(X_blocks, n_features), _stack_rows(Y_blocks, n_labels)


def _parse_xc_lines(lines, first, n_features, n_labels):
    """``(X, Y)`` CSR blocks of sample ``lines``, the first of which is line
    ``first`` of the file."""
    for number, line in enumerate(lines, start=first):
        if _XC_LINE.fullmatch(line) is None:
            raise ValueError(
                f"Line {number} is malformed: {line[:80]!r}; expected "
                "'l1,l2,... f1:v1 f2:v2 ...'."
            )

    def describe_row(row):
        return f"Line {row + first}"

    label_parts, feature_parts = _split_samples(lines)
    label_counts = np.array(
        [part.count(",") + 1 if part else 0 for part in label_parts], dtype=np.int64
    )
    labels = _parse_numbers(
        ",".join(filter(None, label_parts)), np.int64, ",", label_counts.sum()
    )
    Y = _assemble_labels(labels, label_counts, n_labels, describe_row)

    feature_counts = np.array([part.count(":") for part in feature_parts], np.int64)
    pairs = _parse_numbers(
        " ".join(feature_parts).replace(":", " "),
        np.float64,
        " ",
        2 * feature_counts.sum(),
    )
    columns, values = pairs[0::2], pairs[1::2]
    if columns.size and columns.max() >= 2.0**53:
        # float64 rounds such indices: read them again, as the integers they
        # are (Python ints; only files of over 2**53 features have them)
        columns = np.array(
            [
                int(pair.partition(":")[0])
                for part in feature_parts
                for pair in part.split()
            ],
            dtype=object,
        )
    out_of_range = np.flatnonzero(columns >= n_features)
    if out_of_range.size:
        row = _row_of(feature_counts, out_of_range[0])
        raise ValueError(
            f"{describe_row(row)}: feature index {int(columns[out_of_range[0]])} "
            f"is out of range for {n_features} features."
        )
    indptr = np.concatenate([[0], np.cumsum(feature_counts)])
    # the file's own values first ("1e400" is inf): their sum could be nan
    not_finite = np.flatnonzero(~np.isfinite(values))
    if not_finite.size:
        first_bad = not_finite[0]
        raise ValueError(
            f"{describe_row(_row_of(feature_counts, first_bad))}: feature value "
            f"{float(values[first_bad])!r} is not finite (the file's value is nan, "
            "inf, or beyond float64's range)."
        )
    # a feature listed twice sums its values: in float64, checked after
    X = sp.csr_matrix(
        (values, columns.astype(np.int64), indptr), shape=(len(lines), n_features)
    )
    X.sum_duplicates()
    X.data = _float32_values(X.data, np.diff(X.indptr), describe_row)
    return X, Y


def _stack_rows(blocks, n_columns):
    """The float32 CSR matrix of the rows of CSR ``blocks``, in order."""
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        return sp.csr_matrix((0, n_columns), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def _row_positions(indptr, start, stop):
    """Row (relative to ``start``) and rank in row of the entries of rows
    ``start:stop`` of a CSR matrix."""
    counts = np.diff(indptr[start : stop + 1])
    rows = np.repeat(np.arange(stop - start), counts)
    ranks = np.arange(rows.size) - (indptr[start:stop] - indptr[start])[rows]
    return counts, rows, ranks


def _format_xc_block(X, Y, start, stop):
    """Text of the sample lines ``start:stop`` (each ending with a newline)."""
    x_counts, x_rows, x_ranks = _row_positions(X.indptr, start, stop)
    y_counts, y_rows, y_ranks = _row_positions(Y.indptr, start, stop)
    sizes = y_counts + x_counts + 1  # pieces per line: labels, features, "\n"
    line_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pieces = np.empty(sizes.sum(), dtype=object)

    labels = Y.indices[Y.indptr[start] : Y.indptr[stop]].astype(str)
    not_last = y_ranks < y_counts[y_rows] - 1
    labels = np.where(not_last, np.char.add(labels, ","), labels)
    pieces[line_start[y_rows] + y_ranks] = labels

    span = slice(X.indptr[start], X.indptr[stop])
    features = np.char.add(" ", X.indices[span].astype(str))
    features = np.char.add(np.char.add(features, ":"), X.data[span].astype(str))
    pieces[line_start[x_rows] + y_counts[x_rows] + x_ranks] = features

    pieces[line_start + sizes - 1] = "\n"
    return "".join(pieces.tolist())


def dump_xc_repository(X, Y, path):
    """Write a dataset in the Extreme Classification Repository text format.

    Writes the header ``n_samples n_features n_labels``, then one line
    ``l1,l2,...,lm f1:v1 f2:v2 ...`` per sample (0-based indices; the line
    of an unlabelled sample starts with a space, and is empty without
    features either).  Values are written with
    the shortest representation that reads back to the same number of
    ``X``'s dtype, so :func:`load_xc_repository` reads back exactly the same
    ``float32`` matrices.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Features; finite values.  Explicitly stored zeros are written too.
    Y : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Label-indicator matrix of 0s and 1s.
    path : str, os.PathLike or file object
        Destination (``.gz`` and ``.bz2`` names are compressed), or an open
        text or binary file object.

    See Also
    --------
    load_xc_repository : Read a dataset in this format.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from sklearn_mach.datasets import dump_xc_repository
    >>> f = io.StringIO()
    >>> dump_xc_repository(np.array([[0, 0.5], [2, 0]]), np.array([[1, 1], [0, 0]]), f)
    >>> print(f.getvalue(), end="")
    2 2 2
    0,1 1:0.5
     0:2.0
    """
    X = _feature_csr(X)
    Y = _indicator_csr(Y, X.shape[0])
    _check_float32_range(X, "load_xc_repository")
    with _text_writer(path) as write:
        write(f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}\n")
        for start in range(0, X.shape[0], _WRITE_BLOCK):
            stop = min(start + _WRITE_BLOCK, X.shape[0])
            write(_format_xc_block(X, Y, start, stop))


# ---------------------------------------------------------------------------
# svmlight / libsvm multilabel format
# ---------------------------------------------------------------------------


def _labels_from_tuples(label_tuples, n_labels):
    """CSR indicator from scikit-learn's tuple-of-labels representation."""
    counts = np.fromiter(
        map(len, label_tuples), dtype=np.int64, count=len(label_tuples)
    )
    flat = np.fromiter(chain.from_iterable(label_tuples), np.float64, int(counts.sum()))
    # float64 holds every integer below 2**53 exactly (labels were parsed
    # as floats): beyond, or not finite, a cast to int64 gives garbage
    with np.errstate(invalid="ignore"):
        invalid = np.flatnonzero(
            ~((flat >= 0) & (flat < 2**53)) | (flat != np.floor(flat))
        )
    if invalid.size:
        row = _row_of(counts, invalid[0])
        raise ValueError(
            f"Sample {row}: label {float(flat[invalid[0]])!r} is not a non-negative "
            "integer label index (below 2**53)."
        )
    labels = flat.astype(np.int64)
    n_labels = _check_count(
        n_labels, "n_labels", int(labels.max()) + 1 if labels.size else 0
    )
    return _assemble_labels(labels, counts, n_labels, lambda row: f"Sample {row}")


def load_svmlight_multilabel(path, n_features=None, n_labels=None, zero_based=True):
    """Load a multilabel dataset in svmlight / libsvm format.

    A thin wrapper of :func:`sklearn.datasets.load_svmlight_file` with
    ``multilabel=True`` that returns the labels as a CSR indicator matrix.
    Label values must be non-negative integers; they are used as column
    indices of ``Y`` as they are (``zero_based`` concerns the feature
    indices only, as in scikit-learn).

    Parameters
    ----------
    path : str, os.PathLike or file object
        The file (``.gz`` and ``.bz2`` names are decompressed), or a file
        object opened in binary mode.
    n_features : int, default=None
        Number of feature columns; by default, the largest index + 1 (at
        least 1, as scikit-learn reads it: pass ``n_features=0`` for a file
        with no features).
    n_labels : int, default=None
        Number of label columns; by default, the largest label + 1.
    zero_based : bool or "auto", default=True
        Whether feature indices in the file start at 0 (see
        :func:`~sklearn.datasets.load_svmlight_file`).

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), dtype float32
        Features.
    Y : scipy.sparse.csr_matrix of shape (n_samples, n_labels), dtype float32
        Label-indicator matrix (stored values are all 1).

    See Also
    --------
    dump_svmlight_multilabel : Write a dataset in this format.
    load_xc_repository : Read the Extreme Classification Repository format.
    """
    _check_path(path)
    n_features = _check_count(n_features, "n_features", None)
    _check_count(n_labels, "n_labels", None)  # before the file is read
    # here, not in scikit-learn: its message would name load_svmlight_file
    validate_parameter_constraints(
        {"zero_based": ["boolean", StrOptions({"auto"})]},
        {"zero_based": zero_based},
        caller_name="load_svmlight_multilabel",
    )
    name = _file_name(path)
    # outside the try: not "not a valid svmlight file" again
    with damaged_data_errors(name):
        try:
            # n_features checked below: scikit-learn's refusal would read as
            # a fault of the file
            X, label_tuples = load_svmlight_file(
                path, dtype=np.float32, multilabel=True, zero_based=zero_based
            )
        except InvalidParameterError:  # scikit-learn's, about an argument
            raise
        except TypeError as exc:  # a text-mode file object
            raise TypeError(
                f"{name}: load_svmlight_multilabel reads bytes; open the file in "
                f"binary mode ({exc})."
            ) from exc
        except (ValueError, OverflowError) as exc:
            raise ValueError(
                f"{name} is not a valid multilabel svmlight file: {exc}"
            ) from exc
    X = sp.csr_matrix(X)
    if n_features is not None:
        # scikit-learn's width is at least 1, also for a file of no feature
        largest = int(X.indices.max()) if X.nnz else -1
        if largest >= n_features:
            raise ValueError(
                f"{name}: feature index {largest} (counted from 0) is out of "
                f"range for n_features={n_features}."
            )
        X.resize(X.shape[0], n_features)
    # refused as load_xc_repository refuses them (parsed as float32 already)
    _float32_values(X.data, np.diff(X.indptr), lambda row: f"Sample {row}")
    return X, _labels_from_tuples(label_tuples, n_labels)


def dump_svmlight_multilabel(X, Y, path, zero_based=True):
    """Write a multilabel dataset in svmlight / libsvm format.

    A thin wrapper of :func:`sklearn.datasets.dump_svmlight_file` with
    ``multilabel=True``: each line is ``l1,l2,... f1:v1 f2:v2 ...`` with the
    0-based column indices of ``Y`` as labels.  svmlight readers, scikit-learn's
    included, skip lines that have neither labels nor features, so samples
    without labels *and* features do not survive a round trip (a warning is
    emitted); :func:`dump_xc_repository` has no such limitation.

    Values are written as scikit-learn writes them, with 16 significant
    digits (a float64 that needs 17 comes back rounded to 16).
    :func:`load_svmlight_multilabel` reads float32: a float64 value just
    past a float32 rounding midpoint then comes back as the float32
    next to ``X.astype(np.float32)``'s (rounded twice).  For an exact
    float32 round trip, pass float32 ``X`` or use
    :func:`dump_xc_repository`.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Features; finite values.
    Y : {array-like, sparse matrix} of shape (n_samples, n_labels)
        Label-indicator matrix of 0s and 1s.
    path : str, os.PathLike or file object
        Destination, or a file object opened in binary mode.
    zero_based : bool, default=True
        Whether feature indices are written 0-based (True) or 1-based.

    See Also
    --------
    load_svmlight_multilabel : Read a dataset in this format.
    """
    _check_path(path)
    # here: scikit-learn's check names dump_svmlight_file, and is skipped
    # for 0 samples
    validate_parameter_constraints(
        {"zero_based": ["boolean"]},
        {"zero_based": zero_based},
        caller_name="dump_svmlight_multilabel",
    )
    X = _feature_csr(X)
    Y = _indicator_csr(Y, X.shape[0])
    _check_float32_range(X, "load_svmlight_multilabel")
    blank = np.flatnonzero((np.diff(X.indptr) == 0) & (np.diff(Y.indptr) == 0))
    if blank.size:
        warnings.warn(
            f"{blank.size} samples (first: {blank[0]}) have neither labels nor "
            "features; svmlight readers skip their empty lines, so they will be "
            "lost when the file is read back. Use dump_xc_repository to keep them.",
            UserWarning,
            stacklevel=2,
        )
    # scikit-learn refuses a matrix of no columns: one empty column writes
    # nothing, and its refusal came after the file was opened (emptied)
    if X.shape[1] == 0:
        X = sp.csr_matrix((X.shape[0], 1), dtype=X.dtype)
    if Y.shape[1] == 0:
        Y = sp.csr_matrix((Y.shape[0], 1), dtype=Y.dtype)
    if not isinstance(path, (str, os.PathLike)) and _writes_text(path):
        raise TypeError(
            "dump_svmlight_multilabel writes bytes; open the file in binary mode."
        )

    def dump(f):
        if X.shape[0]:  # scikit-learn refuses 0 samples: an empty file
            dump_svmlight_file(X, Y, f, zero_based=zero_based, multilabel=True)

    if not isinstance(path, (str, os.PathLike)):
        dump(path)
        return
    with _opener(path)(path, "wb") as f:
        dump(f)
