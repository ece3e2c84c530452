"""Small helpers shared by the private modules."""

import bz2
import gzip
import lzma
import warnings
import zlib
from contextlib import contextmanager

import torch

#: What gzip, bz2 and lzma raise on a cut or corrupted stream: bz2's own is
#: an ``OSError`` with this message (other ``OSError``s are I/O errors).
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
_BZ2_DAMAGED = "Invalid data stream"


def compressed(f):
    """Whether file object ``f`` decompresses gzip, bz2 or lzma data."""
    return isinstance(f, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile))


@contextmanager
def damaged_data_errors(label):
    """Raise a ``ValueError`` naming ``label`` for what gzip, bz2 and lzma
    raise on a cut, corrupted or not compressed stream read in the block;
    other errors (I/O, timeouts) pass as they are."""
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
    (the bucket table of millions of classes) would cost its size.
    """
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="The given NumPy array is not writable",
            category=UserWarning,
        )
        return torch.from_numpy(array)
