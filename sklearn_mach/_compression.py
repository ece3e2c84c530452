"""What gzip, bz2 and lzma raise on damaged data, as a ``ValueError``."""

import lzma
import zlib
from contextlib import contextmanager


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
