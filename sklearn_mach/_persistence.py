"""Saving and loading fitted :class:`MACHClassifier` models without pickle.

A model is written as ONE file: a zip archive (conventionally named
``*.skmach``) whose entries are only JSON, ``.npy`` arrays written with
``allow_pickle=False`` and ``safetensors`` weights.  Loading parses these
formats and never unpickles anything, so a model file cannot run code
through pickle.

Layout of the archive (entries not listed here are ignored)::

    manifest.json              format marker, versions, hyper-parameters,
                               scalar fitted state, class layout, network
                               specifications (UTF-8 JSON, see below)
    classes.npy                classes_ for numeric / bytes / datetime labels
      or classes.json          classes_ for str / object labels:
                               {"values": [...], "element_types": ...}
    label_hasher/hash_params.npy
                               the (R, 2) int64 hash parameters
    networks/{r}.safetensors   state_dict of network r (keys are the
                               module's state_dict names), r = 0 .. R-1
    histories.json             the R skorch training histories, as lists of
                               dicts (values that are not JSON are dropped)

``manifest.json`` holds::

    {
      "format": "sklearn-mach",            # marks a sklearn-mach model file
      "format_version": 1,
      "sklearn_mach_version": "0.1.0",     # library that wrote the file
      "library_versions": {...},           # torch, numpy, ... (informative)
      "estimator": "sklearn_mach._classifier:MACHClassifier",
      "params": {...},                     # get_params(deep=False), encoded
      "n_features_in": 10,
      "feature_names_in": null | ["a", ...],
      "classes": {"entry": "classes.npy" | "classes.json",
                  "dtype": "<i8", "n_classes": 5},
      "multilabel": false, "y_dtype": "<i8", "sparse_y": false,
      "label_hasher": {"params": {...}, "n_features_in": 5,
                       "n_features_out": 16,
                       "hash_params": "label_hasher/hash_params.npy"},
      "networks": [{"entry": "networks/0.safetensors",
                    "class": "sklearn_mach._network:MACHNetwork",
                    "kwargs": {"n_features": 10, "n_outputs": 8, ...}}, ...],
      "histories": "histories.json" | null
    }

Hyper-parameters that are not plain JSON values are tagged objects:
``{"__type__": "tuple", "items": [...]}``,
``{"__type__": "torch.device", "value": "cuda:0"}``,
``{"__type__": "RandomState", "state": {...}}`` (the Mersenne-Twister state)
and ``{"__type__": "ref", "value": "package.module:QualName"}``.

Classes and functions given by reference (the ``module`` and ``optimizer``
hyper-parameters) are stored as ``"importable.module:QualName"`` strings.
**Loading imports that Python module** (which runs its top-level code, like
any ``import``) and looks the name up in it; nothing is unpickled.  A
``module`` reference must resolve to a :class:`torch.nn.Module` subclass or
a plain function, an ``optimizer`` reference to a
:class:`torch.optim.Optimizer` subclass; anything else is refused.  Lambdas
and classes or functions defined inside functions cannot be imported, so
:func:`save_model` rejects them.

Each network is rebuilt by calling its constructor with the stored keyword
arguments (:class:`~sklearn_mach._network.MACHNetwork` with ``n_features``,
``n_outputs``, ``hidden_layer_sizes`` and ``sparse_gradient``; a custom
``module`` as ``module(n_features=..., n_outputs=...)``, as in ``fit``) and
then ``load_state_dict(strict=True)``, in eval mode on the CPU.
"""

import importlib
import io
import json
import os
import struct
import tempfile
import types
import warnings
import zipfile
import zlib
from numbers import Integral, Real

import numpy as np
import safetensors
import safetensors.torch
import torch
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from ._classifier import MACHClassifier
from ._hashing import CountMinLabelHasher
from ._network import MACHNetwork

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_model", "save_model"]

#: Value of ``manifest["format"]`` in every sklearn-mach model file.
FORMAT_NAME = "sklearn-mach"
#: Version of the file layout written by :func:`save_model`.  Files with a
#: higher ``format_version`` are refused by :func:`load_model`.
FORMAT_VERSION = 1

_MANIFEST = "manifest.json"
_CLASSES_NPY = "classes.npy"
_CLASSES_JSON = "classes.json"
_HASH_PARAMS = "label_hasher/hash_params.npy"
_HISTORIES = "histories.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same model, same bytes

_MANIFEST_KEYS = (
    "format",
    "format_version",
    "sklearn_mach_version",
    "estimator",
    "params",
    "n_features_in",
    "feature_names_in",
    "classes",
    "multilabel",
    "y_dtype",
    "sparse_y",
    "label_hasher",
    "networks",
)
#: Hyper-parameters that may hold a class or function, stored by reference.
_REFERENCE_PARAMS = ("module", "optimizer")
#: dtype kinds of ``classes_`` stored as ``.npy`` (never pickled by numpy).
_NPY_KINDS = "biufcmMSV"
#: Allowed element types of an object-dtype ``classes_``.
_PY_ELEMENT_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
#: Errors of the zip, zlib, json, numpy and safetensors readers that mean
#: the bytes are damaged.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    struct.error,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    IndexError,
    KeyError,
    safetensors.SafetensorError,
)


# --------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------


def save_model(estimator, path):
    """Save a fitted :class:`MACHClassifier` to one file, without pickle.

    The file is a zip archive of JSON, ``.npy`` and ``safetensors`` entries
    (see the module documentation for the layout); :func:`load_model`
    rebuilds the classifier from it.

    Parameters
    ----------
    estimator : MACHClassifier
        A fitted classifier.
    path : str, os.PathLike or binary file object
        Destination.  A path is written atomically (to a temporary file in
        the same directory, then renamed), so an existing file is replaced
        only by a complete model.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.
    TypeError
        If ``estimator`` is not a :class:`MACHClassifier`, or holds a value
        that cannot be stored without pickle: a ``module`` or ``optimizer``
        that is a lambda or a local class/function (not importable by name),
        hyper-parameter values of other types, class labels that are not
        numbers, strings, bytes or datetimes, or network state that is not
        plain dense tensors.
    """
    if not isinstance(estimator, MACHClassifier):
        raise TypeError(
            "save_model expects a MACHClassifier, got "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}."
        )
    check_is_fitted(estimator)

    # Everything that can be rejected is checked before a byte is written.
    manifest, entries = _build_manifest(estimator)
    states = [_network_state(net, r) for r, net in enumerate(estimator.networks_)]
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")

    def write(fileobj):
        with zipfile.ZipFile(fileobj, "w", allowZip64=True) as zf:
            _write_entry(zf, _MANIFEST, manifest_bytes, compress=True)
            for name, (data, compress) in entries.items():
                _write_entry(zf, name, data, compress=compress)
            for spec, state in zip(manifest["networks"], states):
                # one network at a time: peak memory is one network's bytes
                _write_entry(zf, spec["entry"], safetensors.torch.save(state))

    if hasattr(path, "write"):
        write(path)
        return
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # mkstemp makes the file private (0600): give the model the permissions
    # of the file it replaces, else the usual 0644.
    mode = os.stat(path).st_mode & 0o777 if os.path.isfile(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".skmach", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_entry(zf, name, data, compress=False):
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _build_manifest(est):
    """The manifest dict and the extra entries {name: (bytes, compress)}."""
    entries = {}
    params = {
        name: _encode_value(value, name)
        for name, value in est.get_params(deep=False).items()
    }

    classes_spec, name, data = _encode_classes(est.classes_)
    entries[name] = (data, True)  # label ids compress well (an arange: to ~nothing)

    feature_names = getattr(est, "feature_names_in_", None)
    if feature_names is not None:
        feature_names = [str(f) for f in feature_names]

    hasher = est.label_hasher_
    hash_params = np.ascontiguousarray(hasher.hash_params_, dtype=np.int64)
    entries[_HASH_PARAMS] = (_npy_bytes(hash_params), False)
    hasher_spec = {
        "params": {
            name: _encode_value(value, f"label_hasher_.{name}")
            for name, value in hasher.get_params(deep=False).items()
        },
        "n_features_in": int(hasher.n_features_in_),
        "n_features_out": int(hasher._n_features_out),
        "hash_params": _HASH_PARAMS,
    }

    networks = [
        _network_spec(est, net, r) for r, net in enumerate(est.networks_)
    ]

    histories = getattr(est, "histories_", None)
    if histories is not None:
        histories = [_json_history(h) for h in histories]
        entries[_HISTORIES] = (_json_bytes(histories), True)

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sklearn_mach_version": __version__,
        "library_versions": _library_versions(),
        "estimator": _reference(type(est), "the estimator class"),
        "params": params,
        "n_features_in": int(est.n_features_in_),
        "feature_names_in": feature_names,
        "classes": classes_spec,
        "multilabel": bool(est._multilabel),
        "y_dtype": _dtype_string(est._y_dtype, "the training target"),
        "sparse_y": bool(est._sparse_y),
        "label_hasher": hasher_spec,
        "networks": networks,
        "histories": _HISTORIES if histories is not None else None,
    }
    return manifest, entries


def _library_versions():
    import scipy
    import sklearn

    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "safetensors": safetensors.__version__,
    }


_DROP = object()


def _json_scalar(value):
    """``value`` as a plain JSON scalar, or ``_DROP`` if it is not a scalar."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    return _DROP


def _encode_value(value, name):
    """A hyper-parameter value as JSON, tagging the non-JSON types."""
    scalar = _json_scalar(value)
    if scalar is not _DROP:
        return scalar
    if isinstance(value, tuple):
        return {"__type__": "tuple", "items": [_encode_value(v, name) for v in value]}
    if isinstance(value, list):
        return [_encode_value(v, name) for v in value]
    if isinstance(value, torch.device):
        return {"__type__": "torch.device", "value": str(value)}
    if isinstance(value, np.random.RandomState):
        state = value.get_state(legacy=True)
        if not isinstance(state, tuple) or state[0] != "MT19937":
            raise TypeError(
                f"Cannot save parameter {name!r}: only MT19937 RandomState "
                "instances can be stored."
            )
        return {
            "__type__": "RandomState",
            "state": {
                "keys": [int(k) for k in state[1]],
                "pos": int(state[2]),
                "has_gauss": int(state[3]),
                "cached_gaussian": float(state[4]),
            },
        }
    if name in _REFERENCE_PARAMS and (
        isinstance(value, type) or isinstance(value, types.FunctionType)
    ):
        return {"__type__": "ref", "value": _reference(value, f"parameter {name!r}")}
    raise TypeError(
        f"Cannot save parameter {name!r}: a value of type "
        f"{type(value).__module__}.{type(value).__qualname__} ({value!r}) cannot "
        "be stored without pickle.  Supported: None, bool, int, float, str, "
        "tuple/list of these, torch.device, numpy RandomState"
        + (", and importable classes or functions." if name in _REFERENCE_PARAMS
           else ".")
    )


def _reference(obj, what):
    """``"module:QualName"`` of an importable class or function."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise TypeError(
            f"Cannot save {what}: {obj!r} is not importable by name.  Only "
            "classes and functions defined at the top level of an importable "
            "module can be saved (by reference); lambdas and classes or "
            "functions defined inside a function cannot.  Move it to a module."
        )
    try:
        resolved = _import_reference(module, qualname)
    except (ImportError, AttributeError) as exc:
        resolved = exc
    if resolved is not obj:
        raise TypeError(
            f"Cannot save {what}: {obj!r} is not importable as "
            f"'{module}:{qualname}' (importing that name gives another object "
            "or fails).  Define it at the top level of an importable module."
        )
    return f"{module}:{qualname}"


def _import_reference(module, qualname):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _dtype_string(dtype, what):
    dtype = np.dtype(dtype)
    text = dtype.str
    if dtype.hasobject and dtype.kind != "O" or np.dtype(text) != dtype:
        raise TypeError(f"Cannot save the dtype {dtype!r} of {what} without pickle.")
    return text


def _encode_classes(classes):
    """Spec, entry name and bytes of ``classes_``."""
    classes = np.asarray(classes)
    if classes.ndim != 1:
        raise TypeError(f"classes_ must be 1-D to be saved, got shape {classes.shape}.")
    spec = {
        "dtype": _dtype_string(classes.dtype, "classes_"),
        "n_classes": int(classes.shape[0]),
    }
    kind = classes.dtype.kind
    if kind in _NPY_KINDS and not classes.dtype.hasobject:
        spec["entry"] = _CLASSES_NPY
        return spec, _CLASSES_NPY, _npy_bytes(np.ascontiguousarray(classes))
    if kind == "U":
        payload = {"values": classes.tolist(), "element_types": "str"}
    elif kind == "O":
        values, types_ = [], []
        for label in classes:
            value, type_name = _encode_label(label)
            values.append(value)
            types_.append(type_name)
        uniform = len(set(types_)) <= 1
        payload = {
            "values": values,
            "element_types": (types_[0] if types_ else "str") if uniform else types_,
        }
    else:  # pragma: no cover - every numpy kind is handled above
        raise TypeError(f"Cannot save class labels of dtype {classes.dtype}.")
    spec["entry"] = _CLASSES_JSON
    return spec, _CLASSES_JSON, _json_bytes(payload)


def _encode_label(label):
    """A class label of an object array as (JSON value, type name)."""
    if isinstance(label, np.generic) and label.dtype.kind in "biufU":
        type_name = "numpy:" + label.dtype.str
        if label.dtype.kind == "U":
            return str(label), "numpy:str_"
        return label.item(), type_name
    for type_name, type_ in _PY_ELEMENT_TYPES.items():
        if type(label) is type_:
            return label, type_name
    raise TypeError(
        f"Cannot save class label {label!r} of type "
        f"{type(label).__module__}.{type(label).__qualname__}: class labels must "
        "be numbers, strings, bytes or datetimes to be stored without pickle.  "
        "Encode the labels (e.g. as strings) before fitting."
    )


def _network_spec(est, net, r):
    """Class reference and constructor arguments of network ``r``."""
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"networks_[{r}] is not a torch.nn.Module: {net!r}.")
    if est.module is None:
        if type(net) is not MACHNetwork:
            raise TypeError(
                f"networks_[{r}] is a {type(net).__qualname__}, but module=None "
                "builds MACHNetwork: the model cannot be rebuilt from its "
                "parameters."
            )
        kwargs = dict(net.init_kwargs)
        kwargs["hidden_layer_sizes"] = list(kwargs["hidden_layer_sizes"])
    else:
        kwargs = {
            "n_features": int(est.n_features_in_),
            "n_outputs": int(est.n_buckets),
        }
    return {
        "entry": f"networks/{r}.safetensors",
        "class": _reference(type(net), f"the class of networks_[{r}]"),
        "kwargs": kwargs,
    }


def _network_state(net, r):
    """The state_dict of a network as contiguous CPU tensors for safetensors."""
    state = {}
    for key, value in net.state_dict().items():
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise TypeError(
                f"Cannot save networks_[{r}]: its state_dict entry {key!r} is not "
                "a dense tensor (extra state and sparse tensors need pickle)."
            )
        # A fresh contiguous copy: no shared storage (tied weights) or views,
        # which safetensors refuses.
        state[key] = (
            value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        )
    return state


def _json_history(history):
    """A skorch History as a list of JSON-able dicts (other keys dropped)."""
    out = []
    for epoch in history:
        if isinstance(epoch, dict):
            out.append(_json_dict(epoch))
    return out




def _json_dict(d):
    out = {}
    for key, value in d.items():
        value = _json_plain(value)
        if isinstance(key, str) and value is not _DROP:
            out[key] = value
    return out


def _json_plain(value):
    scalar = _json_scalar(value)
    if scalar is not _DROP:
        return scalar
    if isinstance(value, dict):
        return _json_dict(value)
    if isinstance(value, (list, tuple)):
        items = [_json_plain(v) for v in value]
        return _DROP if any(v is _DROP for v in items) else items
    return _DROP


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


class _Archive:
    """Reads entries of a model archive, turning every damage into ValueError."""

    def __init__(self, fileobj, label):
        self.label = label
        try:
            self.zf = zipfile.ZipFile(fileobj)
            self.names = set(self.zf.namelist())
        except _READ_ERRORS as exc:
            raise ValueError(
                f"{label} is not a sklearn-mach model file, or it is corrupt or "
                f"truncated ({type(exc).__name__}: {exc})."
            ) from exc

    def require(self, names):
        missing = sorted(set(names) - self.names)
        if missing:
            raise ValueError(
                f"{self.label} is incomplete: missing entries {missing}."
            )

    def read(self, name):
        self.require([name])
        try:
            return self.zf.read(name)
        except _READ_ERRORS as exc:
            raise self.corrupt(name, exc) from exc

    def json(self, name):
        data = self.read(name)
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise self.corrupt(name, exc) from exc

    def npy(self, name):
        data = self.read(name)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except _READ_ERRORS as exc:
            raise self.corrupt(name, exc) from exc

    def tensors(self, name):
        data = self.read(name)
        try:
            return safetensors.torch.load(data)
        except _READ_ERRORS as exc:
            raise self.corrupt(name, exc) from exc

    def corrupt(self, name, exc):
        return ValueError(
            f"{self.label} is corrupt or truncated: cannot read entry {name!r} "
            f"({type(exc).__name__}: {exc})."
        )

    def close(self):
        self.zf.close()


def load_model(path):
    """Load a :class:`MACHClassifier` saved by :func:`save_model`.

    Never unpickles: the file holds only JSON, ``.npy`` (read with
    ``allow_pickle=False``) and ``safetensors`` entries.  The classes named
    by reference in the file (a custom ``module``, an ``optimizer`` class)
    are re-imported by name, which imports their Python module.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        A file written by :func:`save_model`.

    Returns
    -------
    estimator : MACHClassifier
        The fitted classifier, with its networks on the CPU in eval mode;
        it predicts exactly as the saved one.

    Raises
    ------
    ValueError
        If the file is not a sklearn-mach model file, is corrupt or
        truncated, lacks entries or fields (named in the message), or was
        written in a newer format version.
    ImportError
        If a class or function the model refers to cannot be imported.

    Warns
    -----
    UserWarning
        If the file was written by another version of sklearn-mach.
    """
    if hasattr(path, "read"):
        return _load(path, "The given file object")
    with open(path, "rb") as f:
        return _load(f, repr(os.fspath(path)))


def _load(fileobj, label):
    archive = _Archive(fileobj, label)
    try:
        if _MANIFEST not in archive.names:
            raise ValueError(
                f"{label} is not a sklearn-mach model file (no {_MANIFEST})."
            )
        manifest = archive.json(_MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ValueError(f"{label} is not a sklearn-mach model file.")
        missing = [key for key in _MANIFEST_KEYS if key not in manifest]
        if missing:
            raise ValueError(f"{label} is incomplete: manifest lacks {missing}.")
        version = manifest["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"{label}: invalid format_version {version!r}.")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{label} uses model format version {version}, newer than the "
                f"version {FORMAT_VERSION} this sklearn-mach ({__version__}) "
                "reads: upgrade sklearn-mach to load it."
            )
        try:
            return _rebuild(archive, manifest, label)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"{label} has a malformed manifest ({type(exc).__name__}: {exc})."
            ) from exc
    finally:
        archive.close()


def _rebuild(archive, manifest, label):
    file_version = manifest["sklearn_mach_version"]
    other_version = file_version != __version__

    cls = _resolve(manifest["estimator"], "estimator")
    if not (isinstance(cls, type) and issubclass(cls, MACHClassifier)):
        raise ValueError(f"{label}: {manifest['estimator']!r} is not a MACHClassifier.")

    params = {
        name: _decode_value(value, name) for name, value in manifest["params"].items()
    }
    expected = set(cls._get_param_names())
    unknown = sorted(set(params) - expected)
    if unknown:
        raise ValueError(
            f"{label} has parameters {unknown} that {cls.__qualname__} of "
            f"sklearn-mach {__version__} does not know (file written by "
            f"sklearn-mach {file_version})."
        )
    absent = sorted(expected - set(params))
    if absent and not other_version:
        raise ValueError(f"{label} is incomplete: parameters {absent} are missing.")
    if other_version:
        detail = f"; parameters {absent} take their defaults" if absent else ""
        warnings.warn(
            f"{label} was written by sklearn-mach {file_version}; it is loaded by "
            f"sklearn-mach {__version__}{detail}.  Check that it predicts as "
            "expected.",
            UserWarning,
            stacklevel=4,
        )
    est = cls(**params)

    classes = _decode_classes(archive, manifest["classes"], label)
    n_classes = len(classes)
    n_features = _as_int(manifest["n_features_in"], "n_features_in", label)

    hasher = _rebuild_hasher(archive, manifest["label_hasher"], n_classes, label)
    if (hasher.n_buckets, hasher.n_repetitions) != (est.n_buckets, est.n_repetitions):
        raise ValueError(
            f"{label} is inconsistent: the label hasher has n_buckets="
            f"{hasher.n_buckets}, n_repetitions={hasher.n_repetitions} but the "
            f"classifier n_buckets={est.n_buckets}, "
            f"n_repetitions={est.n_repetitions}."
        )

    specs = manifest["networks"]
    if not isinstance(specs, list) or len(specs) != est.n_repetitions:
        raise ValueError(
            f"{label} is inconsistent: {est.n_repetitions} repetitions but "
            f"{len(specs) if isinstance(specs, list) else specs!r} networks."
        )
    archive.require([spec["entry"] for spec in specs])
    networks = [
        _rebuild_network(archive, est, spec, r, label) for r, spec in enumerate(specs)
    ]

    histories = None
    if manifest.get("histories"):
        from skorch.history import History

        raw = archive.json(manifest["histories"])
        if not isinstance(raw, list) or not all(isinstance(h, list) for h in raw):
            raise ValueError(f"{label}: malformed {manifest['histories']!r}.")
        histories = [History(h) for h in raw]

    est.n_features_in_ = n_features
    feature_names = manifest["feature_names_in"]
    if feature_names is not None:
        if not isinstance(feature_names, list) or len(feature_names) != n_features:
            raise ValueError(f"{label}: malformed feature_names_in.")
        est.feature_names_in_ = np.asarray(
            [str(f) for f in feature_names], dtype=object
        )
    est.classes_ = classes
    est.label_hasher_ = hasher
    est.networks_ = networks
    if histories is not None:
        est.histories_ = histories
    est._multilabel = bool(manifest["multilabel"])
    est._y_dtype = _decode_dtype(manifest["y_dtype"], "y_dtype", label)
    est._sparse_y = bool(manifest["sparse_y"])
    return est


def _as_int(value, what, label):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{label}: {what} must be a non-negative integer, got {value!r}."
        )
    return value


def _decode_dtype(text, what, label):
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label}: invalid {what} {text!r}.") from exc
    if dtype.hasobject and dtype.kind != "O":
        raise ValueError(f"{label}: invalid {what} {text!r}.")
    return dtype


def _resolve(reference, what):
    """Import a ``"module:QualName"`` reference."""
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise ValueError(
            f"Invalid reference {reference!r} for {what} in the model file."
        )
    module, qualname = reference.split(":")
    try:
        return _import_reference(module, qualname)
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"The model file refers to {reference!r} ({what}), which cannot be "
            f"imported here: {exc}.  Make that module importable to load the model."
        ) from exc


def _decode_value(value, name):
    if isinstance(value, list):
        return [_decode_value(v, name) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get("__type__")
    if tag == "tuple":
        return tuple(_decode_value(v, name) for v in value["items"])
    if tag == "torch.device":
        return torch.device(value["value"])
    if tag == "RandomState":
        state = value["state"]
        rng = np.random.RandomState()
        rng.set_state(
            (
                "MT19937",
                np.asarray(state["keys"], dtype=np.uint32),
                int(state["pos"]),
                int(state["has_gauss"]),
                float(state["cached_gaussian"]),
            )
        )
        return rng
    if tag == "ref" and name in _REFERENCE_PARAMS:
        obj = _resolve(value["value"], f"parameter {name!r}")
        if name == "module":
            ok = (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) or (
                isinstance(obj, types.FunctionType)
            )
            expected = "a torch.nn.Module subclass or a function"
        else:
            ok = isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
            expected = "a torch.optim.Optimizer subclass"
        if not ok:
            raise ValueError(
                f"The model file's parameter {name!r} refers to {value['value']!r}, "
                f"which is not {expected}; refusing to use it."
            )
        return obj
    raise ValueError(f"Unknown encoded value {value!r} for parameter {name!r}.")


def _decode_classes(archive, spec, label):
    dtype = _decode_dtype(spec["dtype"], "classes dtype", label)
    n_classes = _as_int(spec["n_classes"], "n_classes", label)
    entry = spec["entry"]
    if entry == _CLASSES_NPY:
        classes = archive.npy(entry)
    elif entry == _CLASSES_JSON:
        payload = archive.json(entry)
        values, types_ = payload["values"], payload["element_types"]
        if not isinstance(values, list):
            raise ValueError(f"{label}: malformed {entry!r}.")
        if dtype.kind == "O":
            if isinstance(types_, str):
                types_ = [types_] * len(values)
            if len(types_) != len(values):
                raise ValueError(f"{label}: malformed {entry!r}.")
            classes = np.empty(len(values), dtype=object)
            for i, (v, t) in enumerate(zip(values, types_)):
                classes[i] = _decode_label(v, t, label)
        else:
            classes = np.array(values, dtype=dtype)
    else:
        raise ValueError(f"{label}: unknown classes entry {entry!r}.")
    if classes.ndim != 1 or classes.shape[0] != n_classes or classes.dtype != dtype:
        raise ValueError(
            f"{label} is inconsistent: classes_ should be {n_classes} labels of "
            f"dtype {dtype}, got shape {classes.shape} and dtype {classes.dtype}."
        )
    return classes


def _decode_label(value, type_name, label):
    if type_name in _PY_ELEMENT_TYPES:
        type_ = _PY_ELEMENT_TYPES[type_name]
    elif type_name == "numpy:str_":
        type_ = np.str_
    elif isinstance(type_name, str) and type_name.startswith("numpy:"):
        dtype = _decode_dtype(type_name[len("numpy:"):], "label type", label)
        if dtype.kind not in "biuf":
            raise ValueError(f"{label}: invalid class label type {type_name!r}.")
        type_ = dtype.type
    else:
        raise ValueError(f"{label}: invalid class label type {type_name!r}.")
    expected = str if type_ in (str, np.str_) else (bool, int, float)
    if not isinstance(value, expected):
        raise ValueError(f"{label}: class label {value!r} is not a {type_name}.")
    return type_(value)


def _rebuild_hasher(archive, spec, n_classes, label):
    params = {
        name: _decode_value(value, f"label_hasher_.{name}")
        for name, value in spec["params"].items()
    }
    hasher = CountMinLabelHasher(**params)
    hash_params = archive.npy(spec["hash_params"])
    if (
        hash_params.dtype != np.int64
        or hash_params.shape != (hasher.n_repetitions, 2)
    ):
        raise ValueError(
            f"{label} is inconsistent: hash parameters of shape "
            f"{hash_params.shape} and dtype {hash_params.dtype}, expected "
            f"({hasher.n_repetitions}, 2) int64."
        )
    n_in = _as_int(spec["n_features_in"], "label_hasher n_features_in", label)
    n_out = _as_int(spec["n_features_out"], "label_hasher n_features_out", label)
    if n_in != n_classes or n_out != hasher.n_repetitions * hasher.n_buckets:
        raise ValueError(
            f"{label} is inconsistent: the label hasher covers {n_in} classes "
            f"and {n_out} buckets in all, for {n_classes} classes."
        )
    hasher.hash_params_ = hash_params
    hasher.n_features_in_ = n_in
    hasher._n_features_out = n_out
    hasher.buckets_ = hasher.hash(np.arange(n_in))
    return hasher


def _rebuild_network(archive, est, spec, r, label):
    kwargs = dict(spec["kwargs"])
    if est.module is None:
        kwargs["hidden_layer_sizes"] = tuple(kwargs.get("hidden_layer_sizes", ()))
        factory = MACHNetwork
    else:
        factory = est.module
    state = archive.tensors(spec["entry"])
    # Constructors draw initial weights from torch's global generator:
    # leave the caller's random stream untouched.
    try:
        with torch.random.fork_rng(devices=[]):
            net = factory(**kwargs)
    except Exception as exc:
        raise ValueError(
            f"{label}: cannot rebuild networks_[{r}] as "
            f"{getattr(factory, '__qualname__', factory)}(**{kwargs!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{label}: rebuilding networks_[{r}] did not give a module.")
    built = f"{type(net).__module__}:{type(net).__qualname__}"
    if built != spec["class"]:
        raise ValueError(
            f"{label}: networks_[{r}] was a {spec['class']} but rebuilding it "
            f"gives a {built}."
        )
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{label}: the weights of networks_[{r}] do not match its module: "
            f"missing keys {missing}, unexpected keys {unexpected}."
        )
    for key, tensor in state.items():
        if own[key].shape != tensor.shape:
            raise ValueError(
                f"{label}: networks_[{r}] weight {key!r} has shape "
                f"{tuple(tensor.shape)}, the module expects {tuple(own[key].shape)}."
            )
    net.load_state_dict(state, strict=True)
    return net.to("cpu").eval()
