"""Saving and loading fitted estimators: one safetensors file, never pickle.

A model file is a single `safetensors <https://huggingface.co/docs/safetensors>`_
file.  Its tensors are the estimator's arrays (network weights as
``networks.{r}.{name}``, classes, hash tables, ...); its header metadata
holds one JSON manifest under the key ``"sklearn_mach"``::

    {"format": "sklearn-mach", "format_version": 2,
     "sklearn_mach_version": "0.2.0",
     "estimator": "MACHClassifier",      # a name, never an import path
     "params": {...},                    # get_params(deep=False), as JSON
     "state": {...}}                     # the estimator's own fitted state

Loading trusts nothing in the file.  Parameters are rebuilt from JSON and
then checked by the estimator's ``_parameter_constraints``; arrays are
checked against each other by the estimator's ``_set_state`` before any
network is built.  A class named in the file (a custom ``module`` or
``optimizer``) is used only if it is one of sklearn-mach's own or one of
:data:`TRUSTED_OPTIMIZERS`, or if the caller lists it in ``trusted``.  The
file's class names are compared as strings: nothing it names is imported or
called before it is on that list.  Sizes are believed only as far as the
file's bytes back them (see ``unpack_array``, ``check_bucket_table`` and
the estimator's ``_set_state``), so a small file cannot make loading
allocate gigabytes.

The file is written and read one tensor at a time by this module
(:func:`_write`, :func:`_read_tensors`), not by the safetensors package:
the bytes are those safetensors writes for the same tensors, and a header
is checked at least as strictly as safetensors checks it (the tests
compare both on forged files; see :func:`_parse_header` and
:func:`_tensor_index` for the few files safetensors takes and this code
refuses).  Saving makes no copy of the model; loading never holds the
file's bytes, only its tensors, which become the default networks'
weights.
"""

import contextlib
import errno
import functools
import gzip
import io
import json
import math
import operator
import os
import reprlib
import secrets
import stat
import struct
import sys
import tempfile
import types
import warnings
from numbers import Integral, Real

import numpy as np
import torch

from ._network import MACHNetwork
from ._optim import LazyAdam
from ._utils import damaged_data_errors, read_only_tensor
from ._version import __version__

FORMAT = "sklearn-mach"
FORMAT_VERSION = 2
#: Largest safetensors header read (the manifest and the tensor index).
MAX_HEADER_BYTES = 16 * 2**20
#: Optimizer classes a model file may name without being trusted explicitly.
TRUSTED_OPTIMIZERS = (
    LazyAdam,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.Adagrad,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.SGD,
)
_REFERENCE_PARAMS = ("module", "optimizer")
#: Characters a stored label dtype may be wider than the longest label
#: before it loads at the longest label's width.
_WIDTH_SLACK = 256
#: Bytes a fixed-width string array may take beyond 8 times its stored data
#: (larger ones load as object arrays).
_FIXED_WIDTH_SLACK = 64 * 2**20
#: The class-to-bucket table may take _TABLE_FACTOR times the stored
#: tensors' bytes plus _TABLE_SLACK bytes.
_TABLE_FACTOR = 64
_TABLE_SLACK = 256 * 2**20
#: The values a stored history keeps.
_SCALARS = (bool, int, float, str)
_WEIGHT_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def reference(obj):
    """``"module:QualName"``, the name a class or function is stored under."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise TypeError(
            f"Cannot save {obj!r}: only classes and functions defined at the top "
            "level of an importable module can be saved (by name); lambdas and "
            "local classes or functions cannot."
        )
    return f"{module}:{qualname}"


def _trusted_objects(trusted):
    """{parameter: {reference: object or None}}: what a file may name, per parameter.

    sklearn-mach's network may be the ``module`` and the optimizers of
    :data:`TRUSTED_OPTIMIZERS` the ``optimizer``; the caller's ``trusted``
    entries may be either.  A string entry maps to ``None``: it is imported
    only once a file names it.
    """
    extra = {}
    if isinstance(trusted, (str, type, types.FunctionType)):
        trusted = [trusted]
    for entry in trusted or ():
        if isinstance(entry, str):
            extra.setdefault(entry, None)
        elif isinstance(entry, (type, types.FunctionType)):
            try:
                extra[reference(entry)] = entry
            except TypeError:  # reference's message is save's
                raise TypeError(
                    "trusted takes classes and functions defined at the top "
                    "level of an importable module (a file names nothing "
                    f"else), got {entry!r}."
                ) from None
        else:
            raise TypeError(
                f"trusted takes classes, functions or 'module:QualName' strings, "
                f"got {entry!r}."
            )
    return {
        "module": {reference(MACHNetwork): MACHNetwork, **extra},
        "optimizer": {**{reference(o): o for o in TRUSTED_OPTIMIZERS}, **extra},
    }


def _resolve(name, ref, allowed):
    """The class a file names for parameter ``name``, if ``allowed`` trusts it."""
    if not isinstance(ref, str) or ref not in allowed[name]:
        raise ValueError(
            f"The model file's parameter {name!r} names {ref!r}, which is not "
            "trusted; nothing was imported.  If you trust it, load with "
            "trusted=[<the class>] or trusted=['module:QualName']."
        )
    obj = allowed[name][ref]
    if obj is None:  # a trusted string: import it now
        import importlib

        module, _, qualname = ref.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Cannot import the trusted {ref!r}: {exc}") from exc
    if name == "optimizer":
        ok = isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
    else:  # a module class, or a class or function building one (as fit takes)
        ok = isinstance(obj, (type, types.FunctionType)) and not (
            isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
        )
    if not ok:
        raise ValueError(f"{ref!r} is not a valid {name} (a class of the right kind).")
    return obj


#: The dtypes a feature map may be stored in.
_MAP_DTYPES = {torch.int32, torch.int64}


def check_tensors(prefix, expected, stored, maps=()):
    """Raise ``ValueError`` unless ``stored`` tensors fit the ``expected`` state dict.

    Same names and shapes; floating tensors may be stored in any of the
    weight dtypes, the feature maps named in ``maps`` (the keys of
    :class:`MACHNetwork` ``feature_rows``) in int32 or int64 (models and
    files from before the maps were int32), others in their own dtype.
    """
    if set(expected) != set(stored):
        # the differences only, shortened: a file may list any number of names
        extra, missing = set(stored) - set(expected), set(expected) - set(stored)
        raise ValueError(
            f"{prefix}* does not hold the module's state: "
            + "; ".join(
                f"{what} {reprlib.repr(sorted(names))}"
                for what, names in (("unexpected", extra), ("missing", missing))
                if names
            )
            + "."
        )
    for key, want in expected.items():
        got = stored[key]
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"{prefix}{key} has shape {reprlib.repr(tuple(got.shape))}, expected "
                f"{tuple(want.shape)}."
            )
        if got.dtype != want.dtype and not (
            (want.is_floating_point() and got.dtype in _WEIGHT_DTYPES.values())
            or (key in maps and {got.dtype, want.dtype} <= _MAP_DTYPES)
        ):
            raise ValueError(
                f"{prefix}{key} has dtype {got.dtype}, expected {want.dtype}."
            )


def assign_state(module, stored):
    """Make ``stored``'s tensors ``module``'s parameters and buffers, in place.

    ``stored`` must match ``module``'s state dict (:func:`check_tensors`),
    in its dtypes.  The tensors become the module's own, uncopied (as
    ``load_state_dict(assign=True)``, without its scan of every key for
    each submodule): ``module`` may be built on the ``meta`` device.
    """
    for key, value in stored.items():
        path, _, name = key.rpartition(".")
        owner = module.get_submodule(path)
        if name in owner._parameters:
            old = owner._parameters[name]
            owner._parameters[name] = torch.nn.Parameter(
                value, requires_grad=old.requires_grad
            )
        else:
            owner._buffers[name] = value


# --------------------------------------------------------------------------
# hyper-parameters <-> JSON
# --------------------------------------------------------------------------


def _encode_param(name, value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, list):
        return [_encode_param(name, v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode_param(name, v) for v in value]}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, gauss = value.get_state(legacy=True)
        return {"RandomState": [keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    if name in _REFERENCE_PARAMS and isinstance(value, (type, types.FunctionType)):
        return {"class": reference(value)}
    raise TypeError(
        f"Cannot save parameter {name!r}={value!r}: only None, bool, numbers, "
        "strings, lists and tuples of these, torch.device, RandomState and (for "
        "module and optimizer) importable classes are stored."
    )


def _decode_param(name, value, allowed, nested=False):
    if isinstance(value, list):
        return [_decode_param(name, v, allowed, True) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"Malformed value of parameter {name!r}: {value!r}.")
    ((tag, content),) = value.items()
    if tag == "tuple" and isinstance(content, list):
        return tuple(_decode_param(name, v, allowed, True) for v in content)
    if tag == "device" and isinstance(content, str):
        try:
            return torch.device(content)
        except RuntimeError as exc:
            raise ValueError(f"Invalid device {content!r}: {exc}") from exc
    if tag == "RandomState" and isinstance(content, list) and len(content) == 4:
        rng = np.random.RandomState()
        keys, pos, has_gauss, gauss = content
        # numpy's set_state takes any pos, and drawing then reads key[pos]
        # (memory past the keys, or a segfault): what get_state gives only
        if not (
            isinstance(keys, list)
            and len(keys) == 624
            and all(type(key) is int and 0 <= key < 2**32 for key in keys)
            and any(keys)  # all zeros: a degenerate state, never seeded
            and type(pos) is int
            and 0 <= pos <= 624
            and has_gauss in (0, 1)
            and type(has_gauss) is int
            and isinstance(gauss, float)
            and math.isfinite(gauss)
        ):
            raise ValueError(
                f"Invalid RandomState for {name!r}: not an MT19937 state "
                "(624 keys, a position in [0, 624], a gauss flag and value)."
            )
        try:
            rng.set_state(
                ("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"Invalid RandomState for {name!r}: {exc}") from exc
        return rng
    # a class only as the whole value, where get_untrusted_types looks
    if tag == "class" and name in _REFERENCE_PARAMS and not nested:
        return _resolve(name, content, allowed)
    raise ValueError(f"Malformed value of parameter {name!r}: {value!r}.")


# --------------------------------------------------------------------------
# arrays of labels and names <-> tensors
# --------------------------------------------------------------------------


#: The numeric numpy dtypes a safetensors file holds (native byte order).
_TORCH_NUMBERS = frozenset(
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.uint8,
        np.int16,
        np.uint16,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
)


def pack_array(values, name, tensors):
    """Store a 1-D array of numbers or strings as tensors; return its JSON spec."""
    values = np.asarray(values)
    if values.dtype.kind in "biufmM" and not values.dtype.isnative:
        # torch holds native byte order only; the values are the same
        values = values.astype(values.dtype.newbyteorder("="))
    kind, spec = values.dtype.kind, {"dtype": values.dtype.str}
    if kind == "O":  # python objects: all strings, or all numbers
        items = values.tolist()
        if all(isinstance(v, str) for v in items):
            kind = "U"
        elif all(isinstance(v, (bool, Integral, Real)) for v in items):
            values = np.asarray(items)
            kind, spec = values.dtype.kind, {"dtype": values.dtype.str, "object": True}
        else:
            raise TypeError(
                f"Cannot save {name}: object values must be all strings or all numbers."
            )
    if kind in "US":
        try:
            encoded = [
                v.encode("utf-8") if kind == "U" else bytes(v) for v in values.tolist()
            ]
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise ValueError(
                f"Cannot save {name}: a string in it is not valid Unicode ({exc})."
            ) from None
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        tensors[f"{name}.offsets"] = torch.from_numpy(
            np.concatenate([[0], np.cumsum(lengths)])
        )
        tensors[f"{name}.bytes"] = torch.from_numpy(
            np.frombuffer(b"".join(encoded) or b"\0", np.uint8).copy()
        )
        spec["strings"] = kind
    elif kind in "mM":
        tensors[name] = torch.from_numpy(values.view(np.int64).copy())
    elif kind in "biuf" and values.dtype in _TORCH_NUMBERS:
        # the dtype's canonical twin: torch refuses numpy.ulonglong, equal to
        # uint64 (a list of ids at or above 2**63 becomes one)
        canonical = np.dtype(values.dtype.str)
        tensors[name] = read_only_tensor(np.ascontiguousarray(values).view(canonical))
    else:
        raise TypeError(
            f"Cannot save {name} of dtype {values.dtype}: numbers or strings only."
        )
    return spec


def unpack_array(spec, name, tensors):
    """The array stored by :func:`pack_array`, checked."""
    dtype = np.dtype(spec["dtype"])
    strings = spec.get("strings")
    if strings not in (None, "U", "S") or dtype.kind not in (
        "biufmM" if strings is None else strings + "O"
    ):
        raise ValueError(f"Invalid spec {spec!r} of {name}.")
    if strings is None:
        values = tensors[name].numpy()
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D.")
        # the dtype pack_array stored, exactly: a cast would wrap (260 as
        # int8 is 4) or give what save refuses (longdouble, another byte
        # order), and a time without a unit fails in repr
        stored = (
            np.dtype(np.int64)
            if dtype.kind in "mM"
            and dtype.isnative
            and np.datetime_data(dtype)[0] != "generic"
            else dtype
        )
        if values.dtype != stored or stored not in _TORCH_NUMBERS:
            raise ValueError(
                f"{name}: the file declares dtype {dtype.str!r} for a tensor of "
                f"{values.dtype}."
            )
        values = values.view(dtype)
        return values.astype(object) if spec.get("object") is True else values
    offsets, data = tensors[f"{name}.offsets"].numpy(), tensors[f"{name}.bytes"].numpy()
    if (
        # pack_array's dtypes: unsigned offsets would wrap in np.diff, and
        # offsets going back and forth copy the same bytes again and again
        offsets.dtype != np.int64
        or data.dtype != np.uint8
        or offsets.ndim != 1
        or data.ndim != 1  # (n, 0) bytes: len() n, but no bytes
        or len(offsets) == 0
        or offsets[0] != 0
        or np.any(np.diff(offsets) < 0)
        or offsets[-1] > len(data)
    ):
        raise ValueError(f"Invalid string offsets of {name}.")
    raw = data.tobytes()
    items = [raw[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    if strings == "U":
        try:
            items = [item.decode("utf-8") for item in items]
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name} is not valid UTF-8.") from exc
    out = np.empty(len(items), dtype=object)
    out[:] = items
    # A fixed-width dtype takes its width for every item, whatever the file
    # stores (np.unique gives every label the longest one's width): past 8
    # times the stored text, the same strings come back as Python objects.
    if dtype.kind == "O" or len(items) * dtype.itemsize > max(
        _FIXED_WIDTH_SLACK, 8 * (offsets.nbytes + data.nbytes)
    ):
        return out
    # The declared dtype, as fit stored it (np.unique keeps the training
    # array's width, which may exceed its longest label), unless it is far
    # wider than the longest label: that width would be copied into every
    # predicted label (a file's "<U3000000" for 3-letter labels: 3.35 GiB
    # for 300 predictions).
    longest = max(1, max((len(item) for item in items), default=1))
    width = dtype.itemsize // (4 if strings == "U" else 1)
    if width < longest:  # astype would cut every longer label
        raise ValueError(
            f"{name} declares dtype {dtype.str}, narrower than its longest "
            f"stored label ({longest} characters)."
        )
    if width > longest + _WIDTH_SLACK:  # byte order kept: dtype.str[0]
        dtype = np.dtype(f"{dtype.str[0]}{strings}{longest}")
    return out.astype(dtype)


def pack_histories(histories, tensors):
    """Store ``histories_`` as tensors, one JSON text per network; return its spec.

    Not in the header, which :func:`load` reads only up to
    :data:`MAX_HEADER_BYTES`: a history grows by an epoch with every
    ``partial_fit`` call.  Only scalar values are kept.
    """
    texts = np.empty(len(histories), dtype=object)
    texts[:] = [
        json.dumps([_scalars(epoch) for epoch in history]) for history in histories
    ]
    return pack_array(texts, "histories", tensors)


def _scalars(epoch):
    """An epoch's record with the values JSON keeps as they are (numpy
    booleans and numbers as Python ones), under string keys."""
    record = {}
    for key, value in epoch.items():
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            value = value.item()  # np.longdouble stays itself: left out
        if isinstance(key, str) and isinstance(value, _SCALARS):
            record[key] = value
    return record


def unpack_histories(spec, tensors, n_networks):
    """The histories stored by :func:`pack_histories`: lists of dicts of scalars."""
    if not isinstance(spec, dict) or spec.get("strings") != "U":
        raise ValueError(f"malformed histories: {reprlib.repr(spec)}.")
    texts = unpack_array(spec, "histories", tensors)
    if len(texts) != n_networks or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"malformed histories: expected {n_networks} JSON texts.")
    histories = [json.loads(text) for text in texts]
    if not all(
        isinstance(h, list)
        and all(
            isinstance(e, dict)
            # save writes scalars only: nothing nested
            and all(isinstance(v, _SCALARS) for v in e.values())
            for e in h
        )
        for h in histories
    ):
        raise ValueError("malformed histories.")
    return histories


def check_bucket_table(n_repetitions, n_classes, tensors):
    """Refuse a class-to-bucket table far larger than the stored tensors.

    The table (``4 * n_repetitions * n_classes`` bytes) is the one array a
    model computes rather than reads; it may take up to 64 times the
    tensors' bytes (hash tables, classes and networks) plus 256 MiB.  A
    model with at most 64 repetitions stays below that whatever its size:
    each class is stored in at least 4 bytes once there are over 65,536.
    """
    table = 4 * n_repetitions * n_classes
    stored = sum(t.numel() * t.element_size() for t in tensors.values())
    if table > _TABLE_FACTOR * stored + _TABLE_SLACK:
        raise ValueError(
            f"{n_classes:,} classes in {n_repetitions} repetitions need a "
            f"{table:,}-byte bucket table, over {_TABLE_FACTOR} times the "
            f"{stored:,} bytes of tensors stored with them."
        )


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------


def save(estimator, path, weights_dtype=None):
    """Write a fitted estimator to ``path`` (see the module documentation)."""
    if weights_dtype is not None and weights_dtype not in _WEIGHT_DTYPES:
        raise ValueError(
            f"weights_dtype must be None or one of {sorted(_WEIGHT_DTYPES)}, got "
            f"{weights_dtype!r}."
        )
    params = {
        k: _encode_param(k, v) for k, v in estimator.get_params(deep=False).items()
    }
    state, tensors = estimator._get_state(_WEIGHT_DTYPES.get(weights_dtype))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_mach_version": __version__,
        "estimator": type(estimator).__name__,
        "params": params,
        "state": state,
    }
    header, order = _layout(tensors, {"sklearn_mach": json.dumps(manifest)})
    if len(header) > MAX_HEADER_BYTES:  # a file load would refuse is not written
        raise ValueError(
            f"The model's header (its parameters, fitted state and the index of its "
            f"{len(tensors):,} arrays) takes {len(header):,} bytes, over the "
            f"{MAX_HEADER_BYTES:,} that load reads."
        )
    if hasattr(path, "write"):
        _check_binary(path, "save", "wb")
        _write(path, header, order)
        return
    # What open(path, "wb") writes to: a link's target, which stays linked
    target = os.path.realpath(os.fspath(path))
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    if existing is None or _replaceable(target, existing):
        # owner-only while it goes over an existing file (a private one, maybe)
        mode = 0o666 if existing is None else 0o600
        try:
            fd, tmp = _new_file(os.path.dirname(target), mode)
        except PermissionError:  # open() below says so, naming the path
            fd = None
        if fd is not None and (existing is None or _takes_group(fd, existing.st_gid)):
            _replace(fd, tmp, target, existing, header, order)
            return
        if fd is not None:
            os.close(fd)
            os.remove(tmp)
    # written in place, as open() writes it (or refused as it refuses)
    with open(target, "wb") as f:
        _write(f, header, order)


def _replaceable(target, existing):
    """Whether replacing file ``target`` (``existing``, its stat) with a new
    file keeps what writing it with ``open(target, "wb")`` keeps: a regular
    file of this user's, without other hard links, writable, in a folder
    this user can write, without extended attributes but security labels
    (an access control list would be lost).  Not a device, a FIFO, nor a
    shared file (its owner would change)."""
    if not stat.S_ISREG(existing.st_mode) or existing.st_nlink > 1:
        return False
    if hasattr(os, "geteuid") and existing.st_uid != os.geteuid():
        return False
    try:
        attributes = os.listxattr(target)
    except (AttributeError, OSError):  # not Linux; a filesystem without them
        attributes = []
    if any(not name.startswith("security.") for name in attributes):
        return False
    directory = os.path.dirname(target)
    return os.access(target, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)


def _mode_after_write(mode):
    """The permissions a file of ``mode`` keeps when this process writes
    it: the kernel drops set-user-ID, and set-group-ID where the group may
    execute, for a writer other than root."""
    mode = stat.S_IMODE(mode)
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return mode
    mode &= ~stat.S_ISUID
    if mode & stat.S_IXGRP:
        mode &= ~stat.S_ISGID
    return mode


def _takes_group(fd, gid):
    """Whether new file ``fd`` has, or could be given, group ``gid``."""
    if os.fstat(fd).st_gid == gid:
        return True
    try:
        os.fchown(fd, -1, gid)
    except (OSError, AttributeError):  # not a group of this user's; Windows
        return False
    return True


def _replace(fd, tmp, target, existing, header, order):
    """Write the model to new file ``tmp`` (open as ``fd``), give it the
    permissions of the file it replaces, if any, and move it to ``target``:
    an existing file is replaced only by a complete model."""
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, header, order)
        if existing is not None:  # its permissions, as open() keeps them
            os.chmod(tmp, _mode_after_write(existing.st_mode))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _new_file(directory, mode):
    """A new file in ``directory``, open for writing: ``(fd, path)``, with
    permissions ``mode`` less the umask, as ``open()`` makes them from
    0o666 (``mkstemp`` makes 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(tempfile.TMP_MAX):
        name = os.path.join(directory, f".tmp-{secrets.token_hex(8)}.skmach")
        try:
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "No free temporary name", directory)


# --------------------------------------------------------------------------
# the safetensors layout, written and read one tensor at a time
# --------------------------------------------------------------------------

#: safetensors' dtype names and the torch dtypes they hold (those this torch
#: has), in the order safetensors lays tensors out: wider first.
_FILE_DTYPES = {
    name: getattr(torch, attr)
    for name, attr in (
        ("U64", "uint64"),
        ("I64", "int64"),
        ("F64", "float64"),
        ("F32", "float32"),
        ("U32", "uint32"),
        ("I32", "int32"),
        ("BF16", "bfloat16"),
        ("F16", "float16"),
        ("U16", "uint16"),
        ("I16", "int16"),
        ("I8", "int8"),
        ("U8", "uint8"),
        ("BOOL", "bool"),
    )
    if hasattr(torch, attr)
}
_DTYPE_NAMES = {dtype: name for name, dtype in _FILE_DTYPES.items()}
_DTYPE_RANKS = {dtype: rank for rank, dtype in enumerate(_FILE_DTYPES.values())}
#: Whether tensor bytes are swapped to and from the file's little-endian
#: order (a big-endian machine; tests set it to run that path here).
_SWAP_BYTES = sys.byteorder == "big"


def _layout(tensors, metadata):
    """The header's bytes and the tensors in the order their data follows it.

    The bytes safetensors writes for the same tensors and metadata: the
    widest dtypes first (every tensor starts at a multiple of its item
    size), each dtype's tensors by name, the header padded with spaces to
    a multiple of 8 bytes.
    """
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPE_NAMES:
            raise TypeError(f"Cannot save {name} of dtype {tensor.dtype}.")
    order = sorted(
        tensors.items(), key=lambda item: (_DTYPE_RANKS[item[1].dtype], item[0])
    )
    header = {"__metadata__": metadata}
    offset = 0
    for name, tensor in order:
        end = offset + tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    try:  # UTF-8, not \u escapes, as safetensors writes it
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
        text = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in a name
        raise ValueError(
            f"Cannot save: a tensor name or the manifest is not valid Unicode ({exc})."
        ) from None
    return text + b" " * (-len(text) % 8), order


def _file_bytes(tensor):
    """A CPU tensor's bytes in the file's (little-endian) order, as a numpy
    array: a view of the tensor itself where the machine's order is that."""
    flat = tensor.detach().reshape(-1)
    if flat.numel() == 0:
        return np.empty(0, dtype=np.uint8)
    if flat.stride(0) != 1:  # torch calls one element of any stride contiguous
        flat = flat.new_empty(flat.shape).copy_(flat)
    raw = flat.view(torch.uint8)
    if _SWAP_BYTES and tensor.element_size() > 1:
        raw = raw.view(-1, tensor.element_size()).flip(1).reshape(-1)
    return raw.numpy()


def _write_all(f, data):
    """Write all of ``data``: a raw file object may write part of what it is
    given.  File objects of Python's :mod:`io` hierarchy are given views of
    the tensors' memory; any other object 16 MiB of bytes at a time (its
    ``write`` may take ``bytes`` only)."""
    view = memoryview(data).cast("B")
    plain = not isinstance(f, io.IOBase)
    while view.nbytes:
        part = bytes(view[:_CHUNK_BYTES]) if plain else view
        written = f.write(part)
        if written is None and isinstance(f, io.RawIOBase):
            # a non-blocking raw file that would block: nothing written
            raise BlockingIOError(
                errno.EAGAIN,
                "The file object is non-blocking and would block: the model "
                "was not written in full.",
            )
        if written is None or isinstance(written, (bool, np.bool_)):
            written = len(part)  # a file object that does not say (True, None)
        else:
            try:  # any integer, numpy's too, as io's writers read a count
                written = operator.index(written)
            except TypeError:
                raise TypeError(
                    f"The file object's write returned {written!r}, not a number "
                    "of bytes written."
                ) from None
        if not 0 < written <= len(part):  # as io's writers refuse a count
            raise OSError(f"The file object wrote {written} bytes of {len(part)}.")
        view = view[written:]


def _write(f, header, order):
    """Write a file laid out by :func:`_layout`, one tensor at a time: no
    copy of the model is made (on a little-endian machine)."""
    _write_all(f, struct.pack("<Q", len(header)))
    _write_all(f, header)
    for _, tensor in order:
        _write_all(f, _file_bytes(tensor))


def _tensor_index(header):
    """The header's tensors as ``(name, dtype, shape, n_bytes)`` in the order
    of their data, and the data's length; checked as safetensors checks a
    file: known dtypes, offsets that span each tensor's bytes exactly, and
    no gap or overlap between tensors.  Stricter on entries with fields
    besides ``dtype``, ``shape`` and ``data_offsets``, and on booleans
    stored as bytes other than 0 and 1 (:func:`_read_tensors`), neither of
    which ``save`` writes; and it takes an empty tensor whose other
    dimensions are huge (``[0, 2**32, 2**32]``), which torch's strides make
    safetensors refuse.
    """
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not all(
        isinstance(value, str) for value in metadata.values()
    ):
        raise ValueError("the header's metadata is not a map of strings")
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {
            "dtype",
            "shape",
            "data_offsets",
        }:
            raise ValueError(f"tensor {name!r} has a malformed entry")
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in _FILE_DTYPES:
            raise ValueError(f"tensor {name!r} has an unsupported dtype {dtype!r}")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(
            type(d) is int and 0 <= d < 2**63
            for d in shape  # torch's sizes
        ):
            raise ValueError(
                f"tensor {name!r} has an invalid shape {reprlib.repr(shape)}"
            )
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise ValueError(f"tensor {name!r} has invalid data offsets {offsets!r}")
        dtype = _FILE_DTYPES[dtype]
        n_bytes = 1
        for d in shape:  # as safetensors: no product past 2**64 is formed
            n_bytes *= d
            if n_bytes >= 2**64:
                raise ValueError(f"tensor {name!r} has a shape of 2**64 values or more")
        n_bytes *= dtype.itemsize
        if n_bytes >= 2**64:
            raise ValueError(f"tensor {name!r} has a shape of 2**64 bytes or more")
        if offsets[1] - offsets[0] != n_bytes:
            raise ValueError(
                f"tensor {name!r} of shape {reprlib.repr(shape)} takes {n_bytes} "
                f"bytes, its offsets span {offsets[1] - offsets[0]}"
            )
        entries.append((offsets, name, dtype, tuple(shape), n_bytes))
    entries.sort(key=lambda entry: entry[0])
    end = 0
    for (begin, stop), name, *_ in entries:
        if begin != end:
            raise ValueError(
                f"tensor {name!r} starts at byte {begin} of the data, "
                f"where the one before it ends at {end}"
            )
        end = stop
    return [entry[1:] for entry in entries], end


def _read_bytes(f, n, sized):
    """``n`` bytes of ``f`` as a uint8 tensor, or fewer at its end: read
    into one tensor where ``sized`` (the file was checked to hold them),
    else by :func:`_read_at_most`."""
    readinto = getattr(f, "readinto", None)
    if not sized or readinto is None:
        data = _read_at_most(f, n)
        return (
            torch.frombuffer(data, dtype=torch.uint8)
            if data
            else torch.empty(0, dtype=torch.uint8, device="cpu")
        )
    # torch's own memory (aligned as its allocations are), on the CPU
    # whatever torch's default device: the tensors become the loaded
    # networks' weights
    buffer = torch.empty(n, dtype=torch.uint8, device="cpu")
    with memoryview(buffer.numpy()) as view:
        got = 0
        while got < n:
            count = readinto(view[got:])
            if not count:
                break
            got += count
    return buffer[:got]


def _read_tensors(f, header, left):
    """The tensors of a file whose header :func:`_read_header` read, read
    from ``f``'s position (their data) one at a time, into their own
    memory: the file's bytes are never held whole.  ``left``: the bytes
    from there to the file's end, or ``None`` where unknown (a stream)."""
    try:
        index, end = _tensor_index(header)
    except ValueError as exc:
        raise ValueError(f"corrupt or truncated ({exc})") from None
    if left is not None and left != end:
        raise ValueError(
            f"corrupt or truncated (the header describes {end} bytes of tensor "
            f"data, the file holds {left})"
        )
    tensors = {}
    for name, dtype, shape, n_bytes in index:
        raw = _read_bytes(f, n_bytes, sized=left is not None)
        if raw.numel() < n_bytes:
            raise ValueError(
                f"corrupt or truncated (tensor {name!r} has {raw.numel()} of "
                f"its {n_bytes} bytes)"
            )
        if _SWAP_BYTES and dtype.itemsize > 1:
            raw = raw.view(-1, dtype.itemsize).flip(1).reshape(-1)
        if dtype == torch.bool and n_bytes and int(raw.max()) > 1:
            raise ValueError(f"corrupt (tensor {name!r} holds booleans but 0 and 1)")
        try:
            tensors[name] = raw.view(dtype).reshape(shape)
        except RuntimeError as exc:  # a shape torch does not take
            raise ValueError(f"corrupt (tensor {name!r}: {exc})") from None
    # what can seek is read one byte past the end: safetensors refuses a
    # longer file; a pipe's next read could block
    if left is None and _seeks(f) and _read_at_most(f, 1):
        raise ValueError("corrupt or truncated (bytes past the tensors' data)")
    return tensors


def _check_binary(file, action, mode):
    """Refuse a text-mode file object: model files are bytes.

    Asked by reading or writing nothing, as not every text file is an
    ``io.TextIOBase`` (``codecs.open``, ``tempfile``'s wrappers).
    """
    try:
        probe = file.read(0) if mode == "rb" else file.write(b"")
    except TypeError:  # a text file's write refuses bytes
        probe = ""
    if isinstance(probe, str):
        name = getattr(file, "name", None)
        which = f"{name!r} is" if isinstance(name, str) else "the file is"
        raise TypeError(
            f"{action} needs a file opened in binary mode ({mode!r}); "
            f"{which} open in text mode."
        )


#: Bytes a read asks for at a time where the size left is unknown (a pipe).
_CHUNK_BYTES = 2**24


def _size_left(f):
    """Bytes from ``f``'s position to its end, where known without reading:
    a :class:`io.BytesIO` (a seek to its end costs nothing), or a file of
    the file system opened by :func:`open` (``fstat``; a buffered reader's
    position is the file's).  ``None`` for anything else: a pipe, a socket,
    a device such as ``/dev/zero``, a compressed file object (whose
    ``fileno`` is the compressed file's, and whose seek to its end would
    decompress it all), a file object that cannot seek or misbehaves."""
    try:
        if not f.seekable():
            return None
        here = f.tell()
        if not isinstance(here, int):
            return None
        if isinstance(f, io.BytesIO):  # getbuffer() would copy shared bytes
            end = f.seek(0, os.SEEK_END)
            f.seek(here)
            return max(0, end - here) if isinstance(end, int) else None
        raw = f.raw if isinstance(f, (io.BufferedReader, io.BufferedRandom)) else f
        if isinstance(raw, io.FileIO):
            status = os.fstat(raw.fileno())
            if stat.S_ISREG(status.st_mode):
                return max(0, status.st_size - here)
    except Exception:  # a file object's own idea of seeking
        pass
    return None


def _seeks(f):
    """Whether ``f`` can seek, so that reading on cannot block.  A
    :class:`gzip.GzipFile` says it can whatever it reads from (a pipe
    whose writer keeps it open): the object it wraps decides."""
    try:
        if isinstance(f, gzip.GzipFile) and not f.fileobj.seekable():
            return False
        return bool(f.seekable())
    except Exception:
        return False


def _position(f):
    """Where file object ``f`` is, to seek back to; ``None`` where it cannot
    seek back (a pipe, or a compressed stream over one), or does not say.
    An object without ``seekable`` (an :class:`mmap.mmap` before Python
    3.13) is asked its position; one whose ``tell`` fails, with a seek."""
    if hasattr(f, "seekable") and not _seeks(f):
        return None
    for ask in (lambda: f.tell(), lambda: f.seek(0, io.SEEK_CUR)):
        try:
            here = ask()
        except Exception:
            continue
        if isinstance(here, int):
            return here
    return None


def _read_at_most(f, n):
    """Up to ``n`` bytes of ``f`` (fewer at its end) as a bytearray, read
    16 MiB at a time onto its end, so that a stream makes it hold no more
    than it delivered (and a chunk): what a stream claims is not allocated
    ahead.  ``read`` returning ``None`` (no data yet) ends it."""
    buffer = bytearray()
    while len(buffer) < n:
        part = f.read(min(n - len(buffer), _CHUNK_BYTES))
        if not part:
            break
        buffer += part
    return buffer


def _parse_header(text):
    """The header's JSON, read at least as strictly as safetensors reads it:
    UTF-8 only (no byte-order mark, no UTF-16, no lone surrogate escape),
    no NaN or infinity, no negative integers (the only numbers are sizes
    and offsets), and no duplicate keys (safetensors refuses them in a
    tensor's entry and for ``__metadata__``, and keeps the last of two
    tensors or metadata keys: sklearn-mach refuses them all, as ``save``
    never writes them).  Python's :func:`json.loads` alone takes them all."""

    def pairs(items):
        keys = [key for key, _ in items]
        if len(set(keys)) < len(keys):
            raise ValueError("a key appears twice in an object of the header")
        for key, value in items:
            for string in (key, value):
                if isinstance(string, str):
                    string.encode("utf-8")  # a lone surrogate: a ValueError
        return dict(items)

    def integer(literal):
        if literal.startswith("-"):
            raise ValueError(f"a negative number in the header: {literal[:20]}")
        return int(literal)

    def constant(name):
        raise ValueError(f"{name} in the header")

    return json.loads(
        text.decode("utf-8"),
        object_pairs_hook=pairs,
        parse_int=integer,
        parse_constant=constant,
    )


@contextlib.contextmanager
def _opened(path):
    """``(binary file object, label)`` for a path or a file object; a file
    object's decompressor errors (a damaged gzip, bz2, lzma or zip stream,
    however wrapped) raised in the block become ``ValueError``."""
    if hasattr(path, "read"):
        _check_binary(path, "load", "rb")
        with damaged_data_errors("The model file"):
            yield path, "The model file"
        return
    label = repr(os.fspath(path))
    with open(path, "rb") as f:
        yield f, label


def _read_header(f, label):
    """The header (a dict), the manifest, the tensor names and the bytes of
    tensor data left in ``f`` (``None`` where unknown), ``f`` left where
    that data starts.

    The 8-byte header length is read first, then the header: a sized file
    (one opened by :func:`open`, a :class:`io.BytesIO`) is read no further
    than its end, whatever the length claims, and a header over
    ``MAX_HEADER_BYTES`` is refused unread.
    """
    left = _size_left(f)
    data = _read_at_most(f, 8)
    if data[:4] == b"PK\x03\x04":
        raise ValueError(
            f"{label} is a zip archive, not a model file of format version "
            f"{FORMAT_VERSION}: if sklearn-mach 0.1 wrote it (format version 1), "
            f"sklearn-mach {__version__} cannot read it.  Refit the model, or "
            "load it with sklearn-mach 0.1 and save it with joblib."
        )
    try:
        (size,) = struct.unpack("<Q", data)
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"a header of {size} bytes, over {MAX_HEADER_BYTES}")
        # a sized file's claim cannot make it allocate past its end
        text = _read_at_most(f, size if left is None else min(size, left))
        header = _parse_header(text)
        manifest = json.loads(header["__metadata__"]["sklearn_mach"])
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("no sklearn-mach manifest")
    except (
        struct.error,
        ValueError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
        RecursionError,  # JSON nested deeper than Python's stack
    ) as exc:
        raise ValueError(f"{label} is not a sklearn-mach model file ({exc}).") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{label} has model format version {version!r}; sklearn-mach "
            f"{__version__} reads format version {FORMAT_VERSION}."
        )
    names = [name for name in header if name != "__metadata__"]
    return header, manifest, names, None if left is None else left - 8 - size


@contextlib.contextmanager
def _load_errors(label):
    """What a file's content makes loading raise, as one ``ValueError``."""
    try:
        yield
    except (
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        ValueError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise ValueError(
            f"{label} cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None


#: Characters of a file's text a message or warning quotes at most.
_QUOTED_CHARS = 1000


def _printable(text, limit=_QUOTED_CHARS):
    """``text`` shortened to about ``limit`` characters around its middle,
    with characters that are not printable (terminal escape sequences, line
    breaks) escaped: what a message may quote of a file."""
    if len(text) <= limit and text.isprintable():
        return text
    if len(text) > limit:
        cut = f" ...[{len(text) - limit:,} characters]... "
        text = text[: limit // 2] + cut + text[len(text) - limit // 2 :]
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _printable_errors(function):
    """``function`` whose ``ValueError`` and ``TypeError`` messages, which
    may quote the file, are :func:`_printable`."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            text = str(exc)
            short = _printable(text)
            if short == text:
                raise
            try:
                shortened = type(exc)(short)
            except Exception:  # an exception class taking other arguments
                shortened = ValueError(short)
            raise shortened from None

    return wrapped


@_printable_errors
def load(path, estimator_class, trusted=None):
    """Rebuild an ``estimator_class`` saved by :func:`save` (see the module docs)."""
    allowed = _trusted_objects(trusted)
    with _opened(path) as (f, label):
        header, manifest, names, left = _read_header(f, label)
        version = manifest.get("sklearn_mach_version")
        other_version = None if version == __version__ else _printable(str(version))
        with _load_errors(label):
            if manifest["estimator"] != estimator_class.__name__:
                raise ValueError(
                    f"it holds a {manifest['estimator']!r}, not a "
                    f"{estimator_class.__name__}"
                )
            params = {
                k: _decode_param(k, v, allowed) for k, v in manifest["params"].items()
            }
            unknown = set(params) - set(estimator_class._get_param_names())
            missing = sorted(set(estimator_class._get_param_names()) - set(params))
            if unknown:
                raise ValueError(f"unknown parameters {sorted(unknown)}")
            if missing and other_version is None:
                raise ValueError(f"parameters {missing} are missing")
            estimator = estimator_class(**params)
            estimator._validate_params()
            # names first, from the header: no tensor is read for a file
            # naming others (290,000 empty ones in a 16 MiB header took
            # 412 MB when they were all built first)
            stray = estimator._stray_tensors(names)
            if stray:
                raise ValueError(f"unexpected tensors {stray[:3]}.")
            tensors = _read_tensors(f, header, left)
    with _load_errors(label):
        estimator._set_state(manifest["state"], tensors)
    if other_version is not None:
        detail = f"; parameters {missing} take their defaults" if missing else ""
        warnings.warn(
            f"{label} was written by sklearn-mach {other_version} and is loaded by "
            f"sklearn-mach {__version__}{detail}: check its predictions.",
            UserWarning,
            stacklevel=4,  # MACHClassifier.load's caller, past _printable_errors
        )
    return estimator


@_printable_errors
def get_untrusted_types(path):
    """The classes a model file names that :meth:`MACHClassifier.load` would not trust.

    Parameters
    ----------
    path : str, path-like or binary file object
        A file written by :meth:`MACHClassifier.save`.  A file object that
        can seek (an open file, a :class:`io.BytesIO`, a compressed file,
        an :class:`mmap.mmap`) is left at its position, to be passed to
        :meth:`MACHClassifier.load` next; one that cannot (a pipe) is read
        past the file's header, so load it from its source again.

    Returns
    -------
    names : list of str
        ``"module:QualName"`` of every custom ``module`` or ``optimizer``
        class the file names.  Review them, then pass the ones you trust to
        ``MACHClassifier.load(path, trusted=...)``.  Nothing is imported.
    """
    with _opened(path) as (f, label):
        # left where it was, where it can seek, so that load reads the same
        # file object next
        start = _position(f) if f is path else None
        manifest = _read_header(f, label)[1]
        if start is not None:
            with contextlib.suppress(Exception):  # load will say what is wrong
                f.seek(start)
    allowed = _trusted_objects(None)
    params = manifest.get("params")
    names = []
    for name in _REFERENCE_PARAMS:
        value = params.get(name) if isinstance(params, dict) else None
        if isinstance(value, dict) and set(value) == {"class"}:
            if not isinstance(value["class"], str):  # load refuses it too
                raise ValueError(f"Malformed value of parameter {name!r}: {value!r}.")
            if value["class"] not in allowed[name]:
                names.append(value["class"])
    return names
