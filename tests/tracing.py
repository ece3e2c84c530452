"""Memory traced by the tests."""

import tracemalloc


def traced_peak(call):
    """``call()``'s result and the peak of memory traced meanwhile (numpy's)."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
