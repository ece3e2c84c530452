"""Small helpers shared by the private modules."""

import gzip
import lzma
import threading
import warnings
import zipfile
import zlib
from contextlib import contextmanager

import torch

#: What gzip, bz2, lzma and zip members raise on a cut or corrupted
#: stream; bz2's own is an ``OSError`` with this message (other
#: ``OSError``s are I/O errors: a socket's timeout, say).
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, zipfile.BadZipFile)
_BZ2_DAMAGED = "Invalid data stream"
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def damaged_data_errors(label):
    """Raise a ``ValueError`` naming ``label`` for what gzip, bz2, lzma or a
    zip member raise on a cut, corrupted or not compressed stream read in
    the block, however wrapped (a buffered reader over a ``GzipFile``, a
    tar member); other errors (I/O, timeouts) pass as they are."""
    try:
        yield
    except _DAMAGED as exc:
        raise ValueError(f"{label}: damaged compressed data ({exc}).") from exc
    except OSError as exc:
        if str(exc) != _BZ2_DAMAGED:
            raise
        raise ValueError(f"{label}: damaged compressed data ({exc}).") from exc


def read_only_tensor(array):
    """``torch.from_numpy(array)`` for a tensor torch only reads.

    A read-only array (a model loaded by ``joblib.load(mmap_mode="r")``,
    loky's memory-mapped arguments) makes torch warn that writing would be
    undefined behaviour; nothing writes here, and a copy of a large array
    (the bucket table of millions of classes) would cost its size.  The
    warning is silenced with ``warnings.catch_warnings``, one call at a time
    (before Python 3.14 it swaps the process's filters); torch gives it
    once a process, so later read-only arrays of the caller's own do not
    warn either.
    """
    if array.flags.writeable:
        return torch.from_numpy(array)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="The given NumPy array is not writable",
            category=UserWarning,
        )
        return torch.from_numpy(array)
