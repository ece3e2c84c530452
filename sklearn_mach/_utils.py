"""Small helpers shared by the private modules."""

import gzip
import lzma
import tarfile
import threading
import warnings
import weakref
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np
import torch

#: What the decompressors raise on a cut or corrupted stream; bz2's own is
#: an ``OSError`` with the message below, and tarfile's stream mode turns
#: the others into ``ReadError``.
_DAMAGED = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.ReadError,
    OSError,
)
_BZ2_DAMAGED = "Invalid data stream"
#: The modules whose code raises them: the same error from a caller's own
#: stream (a dropped connection's EOFError) is an I/O error, not damage.
_DECOMPRESSORS = {"gzip", "bz2", "lzma", "_compression", "zipfile", "tarfile"}
_WARNINGS_LOCK = threading.Lock()
#: Per object, values its calls reuse (a classifier's decoder and device
#: copies, a hasher's classes sorted by bucket), each with the state it was
#: built from.  Outside the objects: calls never change their __dict__, and
#: nothing cached is pickled or copied.
_CACHE = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _raised_by_decompressor(exc):
    """Whether ``exc`` comes from a decompressor's code: the innermost
    Python frame of its traceback is in one of ``_DECOMPRESSORS``."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    if tb.tb_frame.f_globals.get("__name__") not in _DECOMPRESSORS:
        return False
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
        return str(exc) == _BZ2_DAMAGED  # other OSErrors: the file's I/O
    return True


@contextmanager
def damaged_data_errors(label):
    """Raise a ``ValueError`` naming ``label`` for what gzip, bz2, lzma, zip
    or tar readers raise on a cut, corrupted or not compressed stream (or a
    cut plain tar, a bad CRC in a stored zip member) read in the block,
    however wrapped (a buffered reader over a ``GzipFile``, an archive's
    member); the same errors from other code, and I/O errors (timeouts,
    reset connections), pass as they are."""
    try:
        yield
    except _DAMAGED as exc:
        if not _raised_by_decompressor(exc):
            raise
        raise ValueError(f"{label}: damaged or truncated data ({exc}).") from exc


def cached(obj, key, owner, build, version=None):
    """``build()``, kept for ``obj`` under ``key`` and reused while ``owner``
    (the fitted state it was built from) is the same object and
    ``version`` (a snapshot of what may change in place) compares equal."""
    with _CACHE_LOCK:
        entries = _CACHE.setdefault(obj, {})
        entry = entries.get(key)
        if entry is None or entry[0] is not owner or entry[1] != version:
            entries[key] = entry = (owner, version, build())
        return entry[2]


def forget_cached(obj, current=()):
    """Drop what :func:`cached` keeps for ``obj`` but what was built from one
    of ``current``: ``obj``'s fitted state was replaced, and the earlier
    state would otherwise be held until the next call."""
    with _CACHE_LOCK:
        entries = _CACHE.get(obj, {})
        for key, (owner, *_) in list(entries.items()):
            if not any(owner is state for state in current):
                del entries[key]


@contextmanager
def silenced(*messages):
    """Ignore the ``UserWarning`` whose message starts with one of
    ``messages`` in the block, which must be short:
    ``warnings.catch_warnings`` swaps the process's filters (before Python
    3.14), so blocks run one at a time, and a block that overlapped another
    thread's long call could leave its filter behind or drop one that
    thread set."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        for message in messages:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def float_or_inf(value):
    """``value`` (a positive number) as a float64; inf past float64's range."""
    try:
        return np.float64(value)
    except OverflowError:  # an int of 2**1024 or more
        return np.float64(np.inf)


def is_missing(value):
    """Whether a label is None or a missing value: NaN, NaT or pandas' NA
    (whose comparisons are NA, ambiguous as a bool)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError, ArithmeticError):
        return True


def read_only_tensor(array):
    """``torch.from_numpy(array)`` for a tensor torch only reads.

    A read-only array (a model loaded by ``joblib.load(mmap_mode="r")``,
    loky's memory-mapped arguments) makes torch warn that writing would be
    undefined behaviour; nothing writes here, and a copy of a large array
    (the bucket table of millions of classes) would cost its size.  The
    warning is :func:`silenced`; torch gives it once a process, so later
    read-only arrays of the caller's own do not warn either.
    """
    if array.flags.writeable:
        return torch.from_numpy(array)
    with silenced("The given NumPy array is not writable"):
        return torch.from_numpy(array)


def all_finite(tensor):
    """Whether a floating-point tensor holds no NaN and no infinity.

    One pass through its smallest and largest values (NaN propagates to
    both), with no temporary of its size: ``torch.isfinite(t).all()``
    allocates a boolean a value, a quarter of a float32 model's size when
    :meth:`MACHClassifier.save` checks every weight.
    """
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) and torch.isfinite(high))
