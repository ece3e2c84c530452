"""Choice of the torch device, what the CPU is, and the accelerator paths' switch."""

import os
import platform
import warnings

import torch

#: ``SKLEARN_MACH_TEST_GROUPED=1`` in the environment runs the code paths
#: of accelerators on the CPU too: repetitions trained in groups, the sparse
#: update without host synchronisation, moments kept as computed, torch's
#: own cross-entropy and sparse gradient, weights copied back through a
#: staging buffer, predictions on device copies of the networks, and
#: decoding and inference batches as on a GPU.  It is how the tests and CI,
#: which have no GPU, run the GPU's code.  Read here, at import, so that it
#: holds in the worker processes a fit starts (loky, Dask), which inherit
#: the environment; each path's own set of devices stays a module or class
#: attribute that a test may set.
ACCELERATOR_PATHS_ON_CPU = os.environ.get("SKLEARN_MACH_TEST_GROUPED") == "1"


def accelerator_path(devices):
    """The device types on which a path meant for accelerators runs:
    ``devices``, and the CPU under ``SKLEARN_MACH_TEST_GROUPED=1``."""
    return set(devices) | ({"cpu"} if ACCELERATOR_PATHS_ON_CPU else set())


def cpu_path(devices):
    """The device types on which a path meant for the CPU runs:
    ``devices``, without the CPU under ``SKLEARN_MACH_TEST_GROUPED=1``."""
    return set(devices) - ({"cpu"} if ACCELERATOR_PATHS_ON_CPU else set())


def resolve_device(device, fallback_to_cpu=False):
    """The torch device string to use for ``device``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU) or any torch device
        specification such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.
    fallback_to_cpu : bool, default=False
        If the requested accelerator is not available, warn and use the CPU
        (prediction with a model moved to another machine) instead of
        raising (fit).

    Returns
    -------
    device : str
        With an index for CUDA: ``"cuda"`` (and ``"auto"``) name the
        current device of the calling thread, and each thread has its own
        (a joblib worker's is device 0 whatever the caller set with
        :func:`torch.cuda.set_device`), so the caller's is fixed here.
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', "
            "'cuda' or 'cuda:<index>'."
        ) from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available()
        and (parsed.index is None or parsed.index < torch.cuda.device_count()),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }.get(parsed.type, False)
    if available and parsed.type == "cuda" and parsed.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    if available:
        return str(parsed)
    if fallback_to_cpu:
        warnings.warn(
            f"device={str(device)!r} is not available on this machine; "
            "using the CPU instead.",
            UserWarning,
            stacklevel=3,
        )
        return "cpu"
    raise ValueError(f"device={str(device)!r} is not available on this machine.")


def cpu_vendor():
    """The CPU's vendor string (``"GenuineIntel"``, ``"AuthenticAMD"``...), or ``""``.

    Read from ``/proc/cpuinfo`` on Linux, else from
    :func:`platform.processor` (Windows names the vendor there).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    processor = platform.processor()
    for vendor in ("GenuineIntel", "AuthenticAMD"):
        if vendor in processor:
            return vendor
    return ""
