"""Small helpers shared by the private modules."""

import lzma
import warnings
import zlib
from contextlib import contextmanager

import torch


@contextmanager
def damaged_data_errors(label):
    """Raise a ``ValueError`` naming ``label`` for a damaged or not
    compressed stream read in the block.

    gzip raises ``EOFError`` (cut), ``BadGzipFile`` or ``zlib.error``; bz2 an
    ``OSError``; lzma an ``LZMAError``.  Their ``OSError``s have no
    ``errno``: real I/O errors, which have one, pass as they are.
    """
    try:
        yield
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
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
