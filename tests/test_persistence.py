"""Saving and loading models: one safetensors file, nothing in it trusted."""

import codecs
import copy
import gzip
import io
import json
import math
import mmap
import os
import pickle
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import warnings

import joblib
import numpy as np
import pytest
import safetensors.torch
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.exceptions import NotFittedError
from skorch.history import History

import sklearn_mach
from sklearn_mach import MACHClassifier, _persistence, get_untrusted_types
from sklearn_mach._persistence import FORMAT_VERSION, MAX_HEADER_BYTES

from .modules import DroppedStream
from .persistence_modules import (
    AliasedMap,
    DetachedMap,
    HashedWrapper,
    Int32Rows,
    RenamedMap,
    TiedHashed,
    TinyMLP,
    UnsavedMap,
    hashed_network,
    make_tiny_mlp,
)
from .tracing import traced_peak

TINY = dict(
    n_buckets=8, n_repetitions=2, hidden_layer_sizes=(16,), max_epochs=3, random_state=0
)
HOSTILE = "tests.hostile_module"


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=200,
        n_features=10,
        n_informative=6,
        n_classes=5,
        n_clusters_per_class=1,
        random_state=0,
    )
    return X.astype(np.float32), np.array(["ant", "bee", "cat", "dog", "eel"])[y]


@pytest.fixture(scope="module")
def string_model(data):
    return MACHClassifier(**TINY).fit(*data)


@pytest.fixture(scope="module")
def model_bytes(string_model):
    buffer = io.BytesIO()
    string_model.save(buffer)
    return buffer.getvalue()


def parse(raw):
    """(manifest, tensors) of a model file, read with safetensors directly."""
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    return json.loads(header["__metadata__"]["sklearn_mach"]), safetensors.torch.load(
        raw
    )


def craft(manifest, tensors):
    """A model file built by hand (not through ``save``)."""
    return safetensors.torch.save(
        tensors, metadata={"sklearn_mach": json.dumps(manifest)}
    )


def edited(raw, edit):
    manifest, tensors = parse(raw)
    edit(manifest, tensors)
    return craft(manifest, tensors)


def replaced(raw, name, tensor):
    """A model file with its tensor ``name`` replaced by ``tensor``."""
    return edited(raw, lambda manifest, tensors: tensors.__setitem__(name, tensor))


def store_histories(manifest, tensors, histories):
    """Replace a parsed file's histories: one list of epoch dicts (or raw
    JSON text) per network."""
    for key in [k for k in tensors if k.startswith("histories.")]:
        del tensors[key]
    texts = np.empty(len(histories), dtype=object)
    texts[:] = [h if isinstance(h, str) else json.dumps(h) for h in histories]
    manifest["state"]["histories"] = _persistence.pack_array(
        texts, "histories", tensors
    )


def load_bytes(raw, **kwargs):
    return MACHClassifier.load(io.BytesIO(raw), **kwargs)


def assert_same_model(a, b, X):
    assert type(a) is type(b)
    assert a.get_params().keys() == b.get_params().keys()
    assert a.classes_.dtype == b.classes_.dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(
        a.label_hasher_.hash_tables_, b.label_hasher_.hash_tables_
    )
    np.testing.assert_array_equal(a.label_hasher_.buckets_, b.label_hasher_.buckets_)
    # the documented seed, which rebuilds the buckets, survives
    assert a.label_hasher_.get_params() == b.label_hasher_.get_params()
    for na, nb in zip(a.networks_, b.networks_, strict=True):
        assert type(na) is type(nb) and not nb.training
        sa, sb = na.state_dict(), nb.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key])
    pa, pb = a.predict(X), b.predict(X)
    if sp.issparse(pa):
        assert sp.issparse(pb) and (pa != pb).nnz == 0
    else:
        assert pa.dtype == pb.dtype
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    la, sa_ = a.predict_top_k(X, k=3)
    lb, sb_ = b.predict_top_k(X, k=3)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(sa_, sb_)


def roundtrip(model, tmp_path, **kwargs):
    path = tmp_path / "model.skmach"
    model.save(path)
    return MACHClassifier.load(path, **kwargs)


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------


def test_roundtrip_string_labels(string_model, data, tmp_path):
    X, _ = data
    loaded = roundtrip(string_model, tmp_path)
    assert loaded.classes_.dtype.kind == "U"
    assert loaded.get_params() == string_model.get_params()
    assert_same_model(string_model, loaded, X)
    losses = string_model.histories_[0][:, "train_loss"]
    assert loaded.histories_[0][:, "train_loss"] == losses


@pytest.mark.parametrize(
    "labels", ["int", "object-str", "int8", "float", "bool-multiclass"]
)
def test_roundtrip_label_types(data, labels, tmp_path):
    X, y = data
    codes = np.unique(y, return_inverse=True)[1]
    y = {
        "int": codes * 7 - 3,
        "object-str": np.array([s.upper() for s in y], dtype=object),
        "int8": codes.astype(np.int8),
        "float": codes + 0.0,
        "bool-multiclass": codes > 2,
    }[labels]
    model = MACHClassifier(**TINY).fit(X, y)
    loaded = roundtrip(model, tmp_path)
    assert [type(c) for c in loaded.classes_] == [type(c) for c in model.classes_]
    assert_same_model(model, loaded, X)


def test_feature_names(data, tmp_path):
    pd = pytest.importorskip("pandas")

    X, y = data
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    model = MACHClassifier(**TINY).fit(frame, y)
    loaded = roundtrip(model, tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    assert_same_model(model, loaded, frame)


@pytest.mark.parametrize("sparse_y", [False, True])
def test_roundtrip_multilabel(sparse_y, tmp_path):
    X, Y = make_multilabel_classification(
        n_samples=200, n_features=10, n_classes=6, random_state=0
    )
    X = X.astype(np.float32)
    model = MACHClassifier(**TINY).fit(X, sp.csr_matrix(Y) if sparse_y else Y)
    loaded = roundtrip(model, tmp_path)
    assert loaded._multilabel and loaded._sparse_y == sparse_y
    assert_same_model(model, loaded, X)
    assert_same_model(model, loaded, sp.csr_matrix(X))


@pytest.mark.parametrize("module", [TinyMLP, make_tiny_mlp])
def test_custom_module_loads_only_when_trusted(data, module, tmp_path):
    X, y = data
    params = dict(TINY, hidden_layer_sizes=[16], random_state=np.random.RandomState(3))
    model = MACHClassifier(
        **params, module=module, optimizer=torch.optim.SGD, device=torch.device("cpu")
    ).fit(X, y)
    path = tmp_path / "model.skmach"
    model.save(path)
    name = f"tests.persistence_modules:{module.__qualname__}"
    assert get_untrusted_types(path) == [name]  # SGD is trusted by default
    with pytest.raises(ValueError, match="not trusted"):
        MACHClassifier.load(path)
    for trusted in ([module], [name], module):
        loaded = MACHClassifier.load(path, trusted=trusted)
        assert loaded.module is module and loaded.optimizer is torch.optim.SGD
        assert loaded.hidden_layer_sizes == [16] and loaded.device == torch.device(
            "cpu"
        )
        np.testing.assert_array_equal(
            loaded.random_state.get_state()[1], model.random_state.get_state()[1]
        )
        assert_same_model(model, loaded, X)


def test_get_untrusted_types_leaves_a_file_object_for_load(data, tmp_path):
    # the documented check-then-load on one file object: the check left it
    # past the header, and load called a valid file "not a sklearn-mach
    # model file"
    model = MACHClassifier(**dict(TINY, module=TinyMLP)).fit(*data)
    path = tmp_path / "model.skmach"
    model.save(path)
    prefix = b"other data first"
    with open(path, "rb") as f, gzip.open(tmp_path / "model.gz", "wb") as z:
        z.write(f.read())

    class NoSeekable(io.BytesIO):  # as an mmap before Python 3.13
        seekable = property()  # hasattr: False

    class NoTell(io.BytesIO):
        def tell(self):
            raise OSError("tell unsupported")

    openers = [
        lambda: open(path, "rb"),
        lambda: io.BytesIO(prefix + path.read_bytes()),
        lambda: gzip.open(tmp_path / "model.gz", "rb"),
        lambda: NoSeekable(prefix + path.read_bytes()),
        lambda: NoTell(prefix + path.read_bytes()),
    ]
    for opener in openers:
        with opener() as f:
            if isinstance(f, io.BytesIO):
                f.seek(len(prefix))
            start = f.seek(0, io.SEEK_CUR)
            names = get_untrusted_types(f)
            assert names == ["tests.persistence_modules:TinyMLP"]
            assert f.seek(0, io.SEEK_CUR) == start
            assert_same_model(model, MACHClassifier.load(f, trusted=names), data[0])
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        names = get_untrusted_types(m)
        assert m.tell() == 0
        assert_same_model(model, MACHClassifier.load(m, trusted=names), data[0])


@pytest.mark.parametrize(
    "params",
    [
        dict(hidden_layer_sizes=()),  # linear network
        dict(n_hashed_features=7),  # hashed input table
        # a row per feature (n_hashed_features_ None): load said it
        # contradicted n_hashed_features=10
        dict(n_hashed_features=10),
        dict(aggregation="logit_sum", optimizer="sgd"),
        dict(module=sklearn_mach.MACHNetwork, optimizer=sklearn_mach.LazyAdam),
    ],
    ids=[
        "linear",
        "hashed-input",
        "hashing-to-n_features",
        "logit_sum-sgd",
        "module-and-optimizer-classes",
    ],
)
def test_roundtrip_configurations(data, params, tmp_path):
    X, y = data
    model = MACHClassifier(**dict(TINY, **params)).fit(X, y)
    loaded = roundtrip(model, tmp_path)
    assert loaded.get_params() == model.get_params()
    assert_same_model(model, loaded, X)


def test_text_mode_files_are_refused_by_name(data, tmp_path):
    # save raised Python's "write() argument must be str, not bytes", and
    # load a UnicodeDecodeError from reading the weights as text
    model = MACHClassifier(**TINY).fit(*data)
    path = tmp_path / "model.skmach"
    with open(path, "w") as f:
        with pytest.raises(
            TypeError, match=r"save needs a file opened in binary.*'wb'"
        ):
            model.save(f)
    assert path.read_bytes() == b""
    model.save(path)
    with open(path) as f:
        with pytest.raises(
            TypeError, match=r"load needs a file opened in binary.*'rb'"
        ):
            MACHClassifier.load(f)
    with open(path, "rb") as f:
        assert_same_model(model, MACHClassifier.load(f), data[0])
    # text files that are not io.TextIOBase
    with codecs.open(path, "r", "utf-8") as f:
        with pytest.raises(TypeError, match="load needs a file opened in binary"):
            MACHClassifier.load(f)
    with tempfile.NamedTemporaryFile("w", dir=tmp_path) as f:
        with pytest.raises(TypeError, match="save needs a file opened in binary"):
            model.save(f)
    with tempfile.SpooledTemporaryFile(mode="w+") as f:
        with pytest.raises(TypeError, match="the file is open in text mode"):
            model.save(f)


def test_histories_are_not_in_the_header(data, tmp_path, monkeypatch):
    # histories_ grow by an epoch per partial_fit call.  In the JSON header
    # (about 90 bytes a network-epoch) they passed the 16 MiB load reads
    # after some 23,000 calls at R = 8, and save refused the model.
    model = MACHClassifier(**TINY).partial_fit(*data, classes=np.unique(data[1]))
    path = tmp_path / "model.skmach"
    model.save(path)
    (header,) = struct.unpack("<Q", path.read_bytes()[:8])
    for _ in range(20):
        model.partial_fit(*data)
    monkeypatch.setattr(_persistence, "MAX_HEADER_BYTES", header + 100)
    loaded = roundtrip(model, tmp_path)
    for back, history in zip(loaded.histories_, model.histories_):
        assert isinstance(back, History)
        assert back[:, "epoch"] == list(range(1, 22))
        assert back[:, "train_loss"] == history[:, "train_loss"]
        assert back[:, "dur"] == history[:, "dur"]
    model.histories_ = [History(h[-1:]) for h in model.histories_]
    loaded = roundtrip(model, tmp_path)
    assert loaded.histories_[0][:, "epoch"] == [21]
    loaded.partial_fit(*data)  # numbered on from the epoch kept
    assert loaded.histories_[1][:, "epoch"] == [21, 22]


def test_histories_save_as_load_needs_them(string_model, tmp_path):
    model = copy.deepcopy(string_model)
    # numpy scalars are kept as numbers; values and keys JSON cannot hold
    # as they are are left out, as skorch's "batches" lists are
    model.histories_[0][-1].update(
        lr=np.float32(0.5),
        n=np.int64(3),
        ok=np.bool_(True),
        batches=[{}],
        when=np.datetime64("2020-01-01", "ns"),  # .item() would give an int
    )
    model.histories_[0][-1][("a", "tuple")] = 1
    loaded = roundtrip(model, tmp_path)
    last = loaded.histories_[0][-1]
    assert (last["lr"], last["n"], last["ok"]) == (0.5, 3, True)
    assert "batches" not in last and "when" not in last and len(last) == 6
    for histories in ([], model.histories_[:1], [History(), [1.0]]):
        model.histories_ = histories
        with pytest.raises(ValueError, match="save needs histories_ to hold one"):
            model.save(tmp_path / "refused.skmach")
    assert not (tmp_path / "refused.skmach").exists()


def test_a_header_load_would_refuse_is_not_written(string_model, tmp_path, monkeypatch):
    path = tmp_path / "model.skmach"
    string_model.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(_persistence, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ValueError, match="header .* over the 1,000 that load reads"):
        string_model.save(path)
    assert path.read_bytes() == before  # the previous file is left as it was


def test_label_ids_at_or_above_2_63_save_and_load(tmp_path):
    # a list of such ids becomes numpy.ulonglong, which torch refused
    X = np.random.RandomState(0).rand(40, 3).astype(np.float32)
    labels = np.array([2**63 + 5, 2**64 - 1], dtype=np.ulonglong)
    y = labels[np.arange(40) % 2]
    model = MACHClassifier(**TINY).fit(X, y)
    loaded = roundtrip(model, tmp_path)
    np.testing.assert_array_equal(loaded.classes_, labels)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_weights_outside_the_saved_dtype_are_refused_by_save(string_model):
    # float16 overflowed to inf, and load refused the file save wrote
    model = copy.deepcopy(string_model)
    with torch.no_grad():
        model.networks_[1].input_weight[0, 0] = 1e6
    file = io.BytesIO()
    with pytest.raises(ValueError, match="network 1's input_weight as torch.float16"):
        model.save(file, weights_dtype="float16")
    assert file.getvalue() == b""
    model.save(file, weights_dtype="bfloat16")  # a wider exponent holds it
    weight = load_bytes(file.getvalue()).networks_[1].input_weight[0, 0]
    assert weight == torch.tensor(1e6).to(torch.bfloat16).float()
    # a NaN set by hand is no range problem: said so, whatever the dtype
    with torch.no_grad():
        model.networks_[0].input_bias[0] = float("nan")
    with pytest.raises(ValueError, match="network 0's input_bias: it holds NaN"):
        model.save(io.BytesIO())


@pytest.mark.parametrize(
    "seed, stored",
    [(None, None), (12345, None), (np.int64(-1), None), ("fit's", "fit's")],
)
def test_label_hasher_seed_is_stored_where_it_draws_the_tables(
    string_model, seed, stored
):
    # a seed changed after fit was written as is, and load refused the
    # file; a numpy integer broke the JSON header
    model = copy.deepcopy(string_model)
    fitted = model.label_hasher_.random_state
    if seed == "fit's":
        seed = stored = np.int64(fitted)
    model.label_hasher_.set_params(random_state=seed)
    file = io.BytesIO()
    model.save(file)
    loaded = load_bytes(file.getvalue()).label_hasher_
    assert loaded.random_state == stored
    assert stored is None or type(loaded.random_state) is int
    np.testing.assert_array_equal(loaded.buckets_, string_model.label_hasher_.buckets_)


def test_hashed_feature_map_is_stored(tmp_path):
    rng = np.random.RandomState(0)
    X = sp.random(
        200, 5000, density=0.01, format="csr", random_state=0, dtype=np.float32
    )
    y = rng.randint(0, 5, 200)
    model = MACHClassifier(**dict(TINY, n_hashed_features=64)).fit(X, y)
    loaded = roundtrip(model, tmp_path)
    for net, back in zip(model.networks_, loaded.networks_):
        assert back.input_weight.shape == (64, 16)
        np.testing.assert_array_equal(
            net.feature_rows.numpy(), back.feature_rows.numpy()
        )
    assert_same_model(model, loaded, X)
    # the hashed table is there: the feature map is what is missing
    buffer = io.BytesIO()
    model.save(buffer)
    raw = edited(buffer.getvalue(), lambda m, t: t.pop("networks.0.feature_rows"))
    message = "networks.0.feature_rows is missing: no feature map for 5000 features"
    assert message in str(_refusal(raw))
    # 4 bytes a feature (int64 took 8, in memory and in files), and files
    # holding int64 maps (written before) load the same model
    _, tensors = parse(buffer.getvalue())
    for r, net in enumerate(model.networks_):
        assert net.feature_rows.dtype == torch.int32
        assert tensors[f"networks.{r}.feature_rows"].dtype == torch.int32

    def widen(manifest, tensors):
        for r in range(model.n_repetitions):
            key = f"networks.{r}.feature_rows"
            tensors[key] = tensors[key].to(torch.int64)

    older = load_bytes(edited(buffer.getvalue(), widen))
    assert_same_model(model, older, X)
    for net in older.networks_:
        assert net.feature_rows.dtype == torch.int32
    # an int64 row out of int32's range is refused, not wrapped into range
    rows = tensors["networks.0.feature_rows"].to(torch.int64)
    rows[0] += 2**32
    raw = replaced(buffer.getvalue(), "networks.0.feature_rows", rows)
    assert "differ from the network's hashing" in str(_refusal(raw))


@pytest.mark.parametrize("module", [None, hashed_network])
def test_feature_maps_are_checked_block_by_block(module, monkeypatch):
    # load compares a map with its hashing a block of features at a time
    # (a map-heavy model loads in about its own size): every block counts,
    # the last and partial one included, for the default networks (hashed
    # from their seeds) and a custom module's (its own maps)
    from sklearn_mach import _classifier

    monkeypatch.setattr(_classifier, "_MAP_CHECK_BLOCK", 7)
    X = sp.random(60, 40, density=0.2, format="csr", random_state=0)
    y = np.arange(60) % 3
    params = dict(TINY, n_hashed_features=5, module=module)
    model = MACHClassifier(**params).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    trusted = [] if module is None else [module]
    assert_same_model(model, load_bytes(raw.getvalue(), trusted=trusted), X)
    key = "networks.1.feature_rows"
    rows = parse(raw.getvalue())[1][key]
    assert rows.shape == (40,)
    for at in (0, 6, 7, 20, 34, 35, 39):
        for bad in ((rows + 1) % 5, rows.to(torch.int64) + 2**32):
            crafted = rows.clone() if bad.dtype == rows.dtype else rows.long()
            crafted[at] = bad[at]
            file = replaced(raw.getvalue(), key, crafted)
            with pytest.raises(ValueError, match=f"{key} differ from the network's"):
                load_bytes(file, trusted=trusted)


def test_float16_weights(tmp_path):
    X, y = make_classification(
        n_samples=300, n_features=200, n_informative=20, n_classes=5, random_state=0
    )
    X = X.astype(np.float32)
    model = MACHClassifier(**dict(TINY, hidden_layer_sizes=(64,))).fit(X, y)
    full, half = tmp_path / "full.skmach", tmp_path / "half.skmach"
    model.save(full)
    model.save(half, weights_dtype="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    _, tensors = parse(half.read_bytes())
    assert tensors["networks.0.input_weight"].dtype == torch.float16
    loaded = MACHClassifier.load(half)
    assert (
        loaded.networks_[0].input_weight.dtype == torch.float32
    )  # predicts in float32
    np.testing.assert_allclose(
        loaded.predict_proba(X), model.predict_proba(X), atol=2e-3
    )
    assert np.mean(loaded.predict(X) == model.predict(X)) > 0.98
    with pytest.raises(ValueError, match="weights_dtype"):
        model.save(tmp_path / "x.skmach", weights_dtype="int8")
    # a model fitted on float64 data computes in float64, also from a float16 file
    wide = MACHClassifier(**TINY).fit(X.astype(np.float64), y)
    wide.save(half, weights_dtype="float16")
    assert MACHClassifier.load(half).networks_[0].input_weight.dtype == torch.float64


@pytest.mark.parametrize(
    "params",
    [
        # what GridSearchCV(param_grid={"n_buckets": 2 ** np.arange(3, 5)})
        # sets: numpy integers, stored in the resolved values as such
        dict(n_buckets=np.int64(8), batch_size=np.int64(32), lr=np.float32(0.01)),
        dict(max_epochs=True, n_hashed_features=np.int64(8)),  # True is an int: 1
    ],
)
def test_numpy_and_bool_parameters_save_and_load(data, params, tmp_path):
    clf = MACHClassifier(**dict(TINY, **params)).fit(*data)
    clf.save(tmp_path / "model.skmach")
    loaded = MACHClassifier.load(tmp_path / "model.skmach")
    np.testing.assert_array_equal(
        loaded.predict_proba(data[0]), clf.predict_proba(data[0])
    )
    for name in ("n_buckets_", "batch_size_", "max_epochs_", "lr_"):
        assert type(getattr(loaded, name)) is type(getattr(clf, name))


def test_partial_fit_after_load(data, string_model, tmp_path):
    X, y = data
    loaded = roundtrip(string_model, tmp_path)
    before = [p.clone() for p in loaded.networks_[0].parameters()]
    loaded.partial_fit(X, y)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, loaded.networks_[0].parameters())
    )
    again = roundtrip(string_model, tmp_path).partial_fit(X, y)  # reproducible
    np.testing.assert_array_equal(again.predict_proba(X), loaded.predict_proba(X))


@pytest.mark.parametrize("stream", [False, True])
def test_load_gives_the_stored_weights_without_drawing_others(
    data, tmp_path, monkeypatch, stream
):
    # load built every default network with random weights, then copied the
    # stored ones over them: the draws' time, and one network's weights
    # twice in memory.  The networks take the tensors read from the file
    # (into torch's memory from a file; from a stream, the bytes read) and
    # train on from them as the saved model does.
    X, y = data
    model = MACHClassifier(**dict(TINY, n_hashed_features=7)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    drawn = []

    def recording(draw):
        def record(tensor, *args, **kwargs):
            drawn.append(tensor.device.type)
            return draw(tensor, *args, **kwargs)

        return record

    for name in ("uniform_", "kaiming_uniform_"):
        monkeypatch.setattr(
            torch.nn.init, name, recording(getattr(torch.nn.init, name))
        )

    class Stream(io.BytesIO):  # not seekable: read as a stream
        seekable = property()

    loaded = MACHClassifier.load((Stream if stream else io.BytesIO)(raw.getvalue()))
    monkeypatch.undo()
    assert drawn and set(drawn) == {"meta"}
    for ours, theirs in zip(loaded.networks_, model.networks_):
        mine = ours.state_dict()
        assert all(t.device.type == "cpu" for t in mine.values())
        for key, value in theirs.state_dict().items():
            assert torch.equal(mine[key], value), key
    assert_same_model(model, loaded, X)
    continued = copy.deepcopy(model).partial_fit(X, y)
    loaded.partial_fit(X, y)
    for a, b in zip(continued.networks_, loaded.networks_):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)


def test_custom_hashed_networks_with_int64_maps(data, tmp_path):
    # a custom module building hashed MACHNetworks: its models from before
    # the maps were int32 (int64 maps in files and in memory, as unpickled)
    # were refused by load, and by partial_fit and save as "changed"
    # parameters
    X, y = data
    model = MACHClassifier(**dict(TINY, module=hashed_network)).fit(X, y)
    assert all(net.feature_rows.dtype == torch.int32 for net in model.networks_)
    old = copy.deepcopy(model)
    for net in old.networks_:
        net.feature_rows = net.feature_rows.to(torch.int64)
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))
    raw = io.BytesIO()
    old.save(raw)  # its int64 maps
    _, tensors = parse(raw.getvalue())
    assert tensors["networks.0.feature_rows"].dtype == torch.int64
    loaded = load_bytes(raw.getvalue(), trusted=[hashed_network])
    assert_same_model(model, loaded, X)
    continued = copy.deepcopy(model).partial_fit(X, y)
    for other in (old, loaded):
        other.partial_fit(X, y)
        np.testing.assert_array_equal(
            other.predict_proba(X), continued.predict_proba(X)
        )
    # still checked against the module's own map, in the file's dtype
    rows = tensors["networks.0.feature_rows"].clone()
    for bad in (rows + 2**32, rows.flip(0)):
        crafted = replaced(raw.getvalue(), "networks.0.feature_rows", bad)
        message = str(_refusal_trusted(crafted, [hashed_network]))
        assert "differ from the network's hashing" in message


def test_feature_maps_of_layers_are_checked_and_other_buffers_keep_their_dtype(
    data,
):
    # a MACHNetwork held as a layer: a file's map for it loaded unchecked
    # (other rows, or rows past its table read at predict); an int64 file
    # value for another module's int32 buffer named feature_rows loaded,
    # wrapped into int32
    X, y = data
    model = MACHClassifier(**dict(TINY, module=HashedWrapper)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    key = "networks.0.net.feature_rows"
    rows = parse(raw.getvalue())[1][key]
    assert rows.dtype == torch.int32
    widened = replaced(raw.getvalue(), key, rows.to(torch.int64))
    assert_same_model(model, load_bytes(widened, trusted=[HashedWrapper]), X)
    for bad in ((rows + 1) % 5, rows + 5, rows.to(torch.int64) + 2**32):
        crafted = replaced(raw.getvalue(), key, bad)
        message = str(_refusal_trusted(crafted, [HashedWrapper]))
        assert f"{key} differ from the network's hashing" in message
    model = MACHClassifier(**dict(TINY, module=Int32Rows)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    assert_same_model(model, load_bytes(raw.getvalue(), trusted=[Int32Rows]), X)
    rows = parse(raw.getvalue())[1]["networks.0.feature_rows"]
    crafted = replaced(raw.getvalue(), "networks.0.feature_rows", rows.long() + 2**32)
    message = str(_refusal_trusted(crafted, [Int32Rows]))
    assert "feature_rows has dtype torch.int64, expected torch.int32" in message


def test_feature_maps_of_shared_layers_and_unsaved_maps(data):
    # a layer registered under two names was checked under the first only,
    # and its int64 maps (models from before int32 maps) were refused under
    # the second, by load and as "changed" parameters by partial_fit; a map
    # kept out of the state dict gave load a KeyError
    X, y = data
    model = MACHClassifier(**dict(TINY, module=TiedHashed)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    tensors = parse(raw.getvalue())[1]
    for key in ("networks.0.net.feature_rows", "networks.0.again.feature_rows"):
        rows = tensors[key]
        crafted = replaced(raw.getvalue(), key, (rows + 1) % 5)
        message = str(_refusal_trusted(crafted, [TiedHashed]))
        assert f"{key} differ from the network's hashing" in message
        widened = replaced(raw.getvalue(), key, rows.long())
        assert_same_model(model, load_bytes(widened, trusted=[TiedHashed]), X)
    old = copy.deepcopy(model)
    for net in old.networks_:
        net.net.feature_rows = net.net.feature_rows.long()
    continued = copy.deepcopy(model).partial_fit(X, y)
    old.partial_fit(X, y)
    np.testing.assert_array_equal(old.predict_proba(X), continued.predict_proba(X))
    model = MACHClassifier(**dict(TINY, module=UnsavedMap)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    assert not any("feature_rows" in key for key in parse(raw.getvalue())[1])
    assert_same_model(model, load_bytes(raw.getvalue(), trusted=[UnsavedMap]), X)


@pytest.mark.parametrize(
    "module, keys",
    [
        (RenamedMap, ["inner.feature_rows"]),
        (AliasedMap, ["net.feature_rows", "other.rows"]),
        (DetachedMap, ["net.feature_rows"]),  # by name: not the same tensor
    ],
)
def test_feature_maps_found_by_tensor_or_name(data, module, keys):
    # a map that a state-dict hook saves under another name, or that
    # another buffer aliases, went unchecked (crafted rows loaded) and its
    # int64 form, from models before int32 maps, was refused; matched by
    # the tensor alone, one a hook copies was
    X, y = data
    model = MACHClassifier(**dict(TINY, module=module)).fit(X, y)
    raw = io.BytesIO()
    model.save(raw)
    tensors = parse(raw.getvalue())[1]
    for key in (f"networks.0.{key}" for key in keys):
        rows = tensors[key]
        widened = replaced(raw.getvalue(), key, rows.long())
        assert_same_model(model, load_bytes(widened, trusted=[module]), X)
        crafted = replaced(raw.getvalue(), key, torch.zeros_like(rows))
        message = str(_refusal_trusted(crafted, [module]))
        assert f"{key} differ from the network's hashing" in message
    old = copy.deepcopy(model)
    for net in old.networks_:
        net.net.feature_rows = net.net.feature_rows.long()
        if module is AliasedMap:
            net.other.rows = net.net.feature_rows
    old.partial_fit(X, y)
    np.testing.assert_array_equal(
        old.predict_proba(X), copy.deepcopy(model).partial_fit(X, y).predict_proba(X)
    )


@pytest.mark.parametrize("module", [None, TinyMLP, hashed_network])
def test_load_under_another_default_device(data, tmp_path, module):
    # torch.set_default_device("cuda") (here the meta device stands in for
    # it) made the tensors read from a file, then the networks built from
    # them, tensors of that device: a file read into one failed in .numpy(),
    # and a custom module was built there (meta networks, or NotImplementedError)
    X, y = data
    params = dict(TINY, n_hashed_features=7) if module is None else TINY
    model = MACHClassifier(**params, module=module).fit(X, y)
    path = tmp_path / "model.skmach"
    model.save(path)
    with torch.device("meta"):
        loaded = MACHClassifier.load(path, trusted=[module] if module else None)
    for net in loaded.networks_:
        assert {t.device.type for t in net.state_dict().values()} == {"cpu"}
    assert_same_model(model, loaded, X)


def test_partial_fit_after_load_keeps_sparse_gradients(tmp_path):
    # fit chose sparse input gradients for wide sparse data; a loaded model
    # used to train its input tables with dense ones (another Adam update)
    from .test_training import wide_sparse

    X, y = wide_sparse()
    # device="cpu": bitwise equal fits (CUDA's atomic adds round differently)
    model = MACHClassifier(**dict(TINY, batch_size=64), device="cpu").fit(X, y)
    assert all(net.sparse_gradient for net in model.networks_)
    loaded = roundtrip(model, tmp_path)
    assert all(net.sparse_gradient for net in loaded.networks_)
    raw = io.BytesIO()
    model.save(raw)
    for bad in ([True], [1, 1], "yes"):
        with pytest.raises(ValueError, match="malformed sparse_gradient"):
            load_bytes(
                edited(
                    raw.getvalue(),
                    lambda m, t, bad=bad: m["state"].update(sparse_gradient=bad),
                )
            )
    continued = copy.deepcopy(model).partial_fit(X, y)
    loaded.partial_fit(X, y)
    for a, b in zip(continued.networks_, loaded.networks_):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)


def test_model_from_another_device_loads_here(data, string_model, tmp_path):
    X, _ = data
    model = copy.deepcopy(string_model).set_params(device="cuda")
    path = tmp_path / "m.skmach"
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = MACHClassifier.load(path)
    if not torch.cuda.is_available():
        assert any("using the CPU" in str(w.message) for w in caught)
    assert loaded.device == "cuda"
    assert all(p.device.type == "cpu" for n in loaded.networks_ for p in n.parameters())
    # both on the CPU: a GPU's kernels round differently
    on_cpu = copy.deepcopy(string_model).set_params(device="cpu")
    np.testing.assert_array_equal(
        loaded.set_params(device="cpu").predict_proba(X), on_cpu.predict_proba(X)
    )


def test_file_is_one_safetensors_file(string_model, model_bytes, tmp_path):
    manifest, tensors = parse(model_bytes)
    assert (
        manifest["format"] == "sklearn-mach"
        and manifest["format_version"] == FORMAT_VERSION
    )
    assert manifest["estimator"] == "MACHClassifier"
    assert manifest["sklearn_mach_version"] == sklearn_mach.__version__
    assert {k.split(".")[0] for k in tensors} == {
        "networks",
        "classes",
        "label_hasher",
        "seeds",
        "histories",
    }
    assert "networks.1.input_weight" in tensors
    path = tmp_path / "m.skmach"
    path.write_bytes(b"old content")
    string_model.save(str(path))  # replaces atomically, same bytes every time
    assert path.read_bytes() == model_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["m.skmach"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symlinks and FIFOs")
def test_save_writes_through_links_and_into_fifos(string_model, model_bytes, tmp_path):
    # save replaced whatever was at the path with a new regular file: a link
    # (its target kept the old bytes), a FIFO (its reader got nothing), a
    # device such as /dev/null (as root); open(path, "wb") writes to them
    target = tmp_path / "real.skmach"
    target.write_bytes(b"old content")
    link = tmp_path / "latest.skmach"
    link.symlink_to(target)
    string_model.save(link)
    assert link.is_symlink() and target.read_bytes() == model_bytes
    dangling = tmp_path / "next.skmach"
    dangling.symlink_to(tmp_path / "made.skmach")
    string_model.save(str(dangling))
    assert dangling.is_symlink()
    assert (tmp_path / "made.skmach").read_bytes() == model_bytes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(
        target=lambda: received.append(fifo.read_bytes()), daemon=True
    )
    reader.start()
    string_model.save(fifo)
    reader.join(timeout=60)
    assert received == [model_bytes]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo",
        "latest.skmach",
        "made.skmach",
        "next.skmach",
        "real.skmach",
    ]


@pytest.mark.skipif(os.name != "posix", reason="POSIX hard links and owners")
def test_save_keeps_hard_links_owners_and_groups(string_model, model_bytes, tmp_path):
    # the atomic replacement made a new file: another hard link kept the old
    # model, and a shared file took the saver's owner and group (its owner
    # could lose access to it); such files are written in place, as open()
    # writes them
    path, other = tmp_path / "m.skmach", tmp_path / "also.skmach"
    path.write_bytes(b"old content")
    os.link(path, other)
    string_model.save(path)
    assert other.read_bytes() == model_bytes
    assert os.stat(path).st_ino == os.stat(other).st_ino
    if os.geteuid() != 0:
        return
    shared = tmp_path / "shared.skmach"  # root saving a file of nobody's
    shared.write_bytes(b"old content")
    os.chown(shared, 65534, 100)
    os.chmod(shared, 0o660)
    string_model.save(shared)
    assert shared.read_bytes() == model_bytes
    info = os.stat(shared)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 100, 0o660)
    own = tmp_path / "own.skmach"  # root's own file of another group
    own.write_bytes(b"old content")
    os.chown(own, 0, 100)
    before = os.stat(own).st_ino
    string_model.save(own)
    assert own.read_bytes() == model_bytes
    assert os.stat(own).st_gid == 100 and os.stat(own).st_ino != before  # replaced


@pytest.mark.skipif(not hasattr(os, "setxattr"), reason="Linux extended attributes")
def test_save_keeps_extended_attributes(string_model, model_bytes, tmp_path):
    # the atomic replacement dropped a file's extended attributes, its access
    # control list among them (who may write it); such files are written in
    # place
    path = tmp_path / "m.skmach"
    path.write_bytes(b"old content")
    try:
        os.setxattr(path, "user.origin", b"tests")
    except OSError:
        pytest.skip("this filesystem takes no user attributes")
    before = os.stat(path).st_ino
    string_model.save(path)
    assert path.read_bytes() == model_bytes
    assert os.getxattr(path, "user.origin") == b"tests"
    assert os.stat(path).st_ino == before


def test_save_keeps_what_open_keeps_of_a_mode(monkeypatch):
    # a writer other than root loses set-user-ID (and set-group-ID where
    # the group may execute) as the kernel drops them on a write
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    assert _persistence._mode_after_write(0o104755) == 0o755
    assert _persistence._mode_after_write(0o102775) == 0o775
    assert _persistence._mode_after_write(0o102765) == 0o2765  # no group x
    assert _persistence._mode_after_write(0o100640) == 0o640
    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert _persistence._mode_after_write(0o104755) == 0o4755


def test_save_writes_in_place_where_no_new_file_can_be_made(
    string_model, model_bytes, tmp_path, monkeypatch
):
    # a folder the user cannot write: open() names the path, not a
    # temporary file's (and writes a writable file there)
    def refused(directory, mode):
        raise PermissionError(13, "Permission denied", directory + "/.tmp-x")

    monkeypatch.setattr(_persistence, "_new_file", refused)
    path = tmp_path / "m.skmach"
    string_model.save(path)
    assert path.read_bytes() == model_bytes


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_save_gives_new_files_open_s_permissions(string_model, tmp_path):
    # new files were always 0o644, whatever the umask (open() gives 0o600
    # under umask 0o077); an existing file's permissions are kept
    path = tmp_path / "m.skmach"
    previous = os.umask(0o077)
    try:
        string_model.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        os.umask(0o022)
        string_model.save(tmp_path / "other.skmach")
        assert stat.S_IMODE(os.stat(tmp_path / "other.skmach").st_mode) == 0o644
        os.chmod(path, 0o640)
        string_model.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        # owner-only while written over an existing file (0o644 here would
        # let others read a private model's replacement as it is written)
        os.chmod(path, 0o600)
        modes = []
        write = _persistence._write

        def watched(f, header, order):
            modes.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode))
            write(f, header, order)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_persistence, "_write", watched)
            string_model.save(path)
        assert modes == [0o600] and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(previous)


def test_load_never_unpickles_nor_draws_random_numbers(
    string_model, data, model_bytes, monkeypatch
):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    rng_state = torch.random.get_rng_state()
    loaded = load_bytes(model_bytes)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    monkeypatch.undo()
    assert_same_model(string_model, loaded, data[0])


def test_joblib_still_works(string_model, data, tmp_path):
    joblib.dump(string_model, tmp_path / "m.joblib")
    assert_same_model(string_model, joblib.load(tmp_path / "m.joblib"), data[0])


def test_memory_mapped_models_predict_and_save_without_torch_warnings(
    string_model, data, tmp_path
):
    # joblib.load(mmap_mode="r") gives read-only arrays, which torch warns
    # about (once a process: run in a fresh one)
    joblib.dump(string_model, tmp_path / "m.joblib")
    code = (
        "import warnings, joblib, numpy as np\n"
        "warnings.simplefilter('error')\n"
        f"m = joblib.load({str(tmp_path / 'm.joblib')!r}, mmap_mode='r')\n"
        "assert not m.label_hasher_.buckets_.flags.writeable\n"
        "X = np.random.RandomState(0).rand(5, 10)\n"
        "m.predict_top_k(X, 2); m.predict(X)\n"
        f"m.save({str(tmp_path / 'm.skmach')!r})\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_model(string_model, MACHClassifier.load(tmp_path / "m.skmach"), data[0])


def test_saving_and_loading_need_no_safetensors_package(string_model, tmp_path):
    # the format is safetensors', the code sklearn-mach's own: the package is
    # a test dependency only
    joblib.dump(string_model, tmp_path / "m.joblib")
    code = (
        "import sys, joblib, numpy as np\n"
        "sys.modules['safetensors'] = None  # any import of it fails\n"
        f"m = joblib.load({str(tmp_path / 'm.joblib')!r})\n"
        f"m.save({str(tmp_path / 'm.skmach')!r})\n"
        "from sklearn_mach import MACHClassifier\n"
        f"n = MACHClassifier.load({str(tmp_path / 'm.skmach')!r})\n"
        "X = np.random.RandomState(0).rand(5, 10)\n"
        "assert (m.predict_proba(X) == n.predict_proba(X)).all()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_version_mismatch_warns(string_model, data, model_bytes):
    def older(manifest, tensors):
        manifest["sklearn_mach_version"] = "0.0.1"
        del manifest["params"]["verbose"]  # a parameter that version lacked

    with pytest.warns(UserWarning, match=r"0\.0\.1.*'verbose'.*defaults") as record:
        loaded = load_bytes(edited(model_bytes, older))
    assert record[0].filename == __file__  # load_bytes' call of load
    assert_same_model(string_model, loaded, data[0])


def test_file_text_in_messages_is_short_and_printable(model_bytes, no_side_effects):
    # a file's strings reached the version warning and error messages whole
    # and raw: a megabyte of text, terminal escapes that rewrite lines
    evil = "\x1b[2K\r\x1b[1AModel verified OK\x1b]52;c;cm0=\x07" + "x" * 10**6

    def clean(text):
        assert len(text) < 2000, len(text)
        assert text.isprintable(), text[:200]
        assert "\\x1b[2K\\r" in text  # escaped, still recognisable

    def newer(manifest, tensors):
        manifest["sklearn_mach_version"] = evil

    with pytest.warns(UserWarning, match="written by sklearn-mach") as record:
        load_bytes(edited(model_bytes, newer))
    clean(str(record[0].message))
    for edit in (
        lambda m, t: m.update(estimator=evil),
        lambda m, t: m["params"].update(device=evil),
        lambda m, t: m["params"].update({evil: 1}),
        lambda m, t: m["params"].update(module={"class": evil}),
        lambda m, t: m.update(format_version=evil),
    ):
        with pytest.raises(ValueError) as info:
            load_bytes(edited(model_bytes, edit))
        clean(str(info.value))
    forged = edited(
        model_bytes, lambda m, t: m["params"].update(module={"class": [evil]})
    )
    with pytest.raises(ValueError) as info:
        get_untrusted_types(io.BytesIO(forged))
    clean(str(info.value))


def test_other_format_versions_are_named(model_bytes, tmp_path):
    raw = edited(model_bytes, lambda m, t: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        load_bytes(raw)
    import zipfile

    old = io.BytesIO()
    with zipfile.ZipFile(old, "w") as zf:  # the version-1 layout was a zip archive
        zf.writestr(
            "manifest.json", json.dumps({"format": "sklearn-mach", "format_version": 1})
        )
    with pytest.raises(ValueError, match="format version 1"):
        load_bytes(old.getvalue())


def test_unfitted_and_unstorable(data, string_model, tmp_path):
    with pytest.raises(NotFittedError):
        MACHClassifier().save(io.BytesIO())
    path = tmp_path / "bad.skmach"

    class LocalNet(TinyMLP):
        pass

    for module in (
        lambda n_features, n_outputs: TinyMLP(n_features, n_outputs),
        LocalNet,
    ):
        model = MACHClassifier(**dict(TINY, module=module, max_epochs=1)).fit(*data)
        with pytest.raises(TypeError, match="importable"):
            model.save(path)
        assert not path.exists()
    model = copy.copy(string_model)
    model.classes_ = np.array([("a", 1), ("b", 2)] * 2 + [("c", 3)], dtype=object)
    with pytest.raises(TypeError, match="strings or all numbers"):
        model.save(path)
    assert not path.exists()


# --------------------------------------------------------------------------
# hostile files: each a clear ValueError and no side effect
# --------------------------------------------------------------------------


@pytest.fixture
def no_side_effects(tmp_path, monkeypatch):
    """Marker paths that a hostile load must not create, and the module not imported."""
    marker = tmp_path / "imported"
    monkeypatch.setenv("SKLEARN_MACH_HOSTILE_MARKER", str(marker))
    sys.modules.pop(HOSTILE, None)
    victim = tmp_path / "victim"
    yield victim
    assert HOSTILE not in sys.modules
    assert not marker.exists()
    assert not victim.exists()


def _set_param(name, value):
    return lambda m, t: m["params"].__setitem__(name, value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("module", {"class": "os:makedirs"}),  # a function
        ("module", {"class": f"{HOSTILE}:make_dir"}),
        (
            "module",
            {"class": "torch.nn.modules.linear:Linear"},
        ),  # a class outside the list
        ("optimizer", {"class": "collections:OrderedDict"}),
        (
            "optimizer",
            {"class": "sklearn_mach._network:MACHNetwork"},
        ),  # trusted, wrong kind
        (
            "module",
            {"class": "no_such_package_xyz.sub:Net"},
        ),  # a module that does not exist
        ("module", {"class": f"{HOSTILE}:Net"}),  # exists, not allowed
        ("random_state", {"class": "os:system"}),  # a reference where none belongs
        ("device", {"device": "tpu:9"}),
        ("random_state", {"RandomState": [[1, 2], 0, 0, 0.0]}),
    ],
)
def test_untrusted_references_and_values(model_bytes, no_side_effects, name, value):
    raw = edited(model_bytes, _set_param(name, value))
    with pytest.raises(ValueError):
        load_bytes(raw)
    assert "no_such_package_xyz" not in sys.modules
    listed = [value["class"]] if name in ("module", "optimizer") else []
    assert get_untrusted_types(io.BytesIO(raw)) == listed


def test_trusting_one_class_does_not_trust_another(model_bytes, no_side_effects):
    raw = edited(model_bytes, _set_param("module", {"class": f"{HOSTILE}:Net"}))
    with pytest.raises(ValueError, match="not trusted"):
        load_bytes(raw, trusted=[TinyMLP])


@pytest.mark.parametrize(
    "name, value",
    [
        ("n_buckets", "8"),
        ("n_buckets", -3),
        ("n_repetitions", 2.5),
        ("hidden_layer_sizes", "big"),
        ("lr", -1.0),
        ("aggregation", "median"),
        ("max_epochs", {"tuple": [1]}),
        ("verbose", [1]),
    ],
)
def test_parameters_of_the_wrong_type(model_bytes, no_side_effects, name, value):
    with pytest.raises(ValueError, match=name):
        load_bytes(edited(model_bytes, _set_param(name, value)))


@pytest.mark.parametrize(
    "name, make",
    [
        ("networks.0.input_weight", lambda t: t[:, :4]),
        ("networks.0.input_weight", lambda t: t.to(torch.int32)),
        ("networks.1.layers.1.bias", lambda t: torch.cat([t, t])),
        ("label_hasher.hash_tables", lambda t: t[:1]),
        ("label_hasher.hash_tables", lambda t: t.to(torch.int64)),
        ("seeds", lambda t: t.to(torch.float32)),
        ("classes.offsets", lambda t: t * 1000),
        ("classes.bytes", lambda t: torch.full_like(t, 0xFF)),  # not UTF-8
    ],
)
def test_tensors_of_the_wrong_shape_or_dtype(model_bytes, no_side_effects, name, make):
    raw = edited(
        model_bytes, lambda m, t: t.__setitem__(name, make(t[name]).contiguous())
    )
    with pytest.raises(ValueError):
        load_bytes(raw)


@pytest.mark.parametrize("value", [-1, 2**31 - 1, 2**40])
def test_seeds_out_of_fits_range(model_bytes, no_side_effects, value):
    # a seed fit never draws loaded where the features are not hashed and
    # was refused as a failure to build "the network's layers" since
    # MACHNetwork checks feature_seed
    def set_seed(m, t):
        t["seeds"] = t["seeds"].clone()
        t["seeds"][0] = value

    with pytest.raises(ValueError, match=r"seeds out of the range fit draws them in"):
        load_bytes(edited(model_bytes, set_seed))


def test_string_offsets_going_back_and_forth(model_bytes, no_side_effects):
    # uint16 offsets 0, N, 0, N, ...: np.diff wrapped round and passed them,
    # and every other item copied the same N bytes again (573 MB traced
    # from a 112 kB file)
    n = 60_000

    def back_and_forth(m, t):
        t["histories.bytes"] = torch.full((n,), ord(" "), dtype=torch.uint8)
        offsets = np.zeros(20_001, dtype=np.uint16)
        offsets[1::2] = n
        t["histories.offsets"] = torch.from_numpy(offsets)

    raw = edited(model_bytes, back_and_forth)
    error, peak = traced_peak(lambda: _refusal(raw))
    assert "Invalid string offsets of histories" in str(error)
    assert peak < 32 * 2**20


def test_multilabel_classes_other_than_column_numbers(no_side_effects):
    # fit's multilabel classes_ are the indicator's column numbers; a file
    # naming others loaded, and predict_top_k then named classes that
    # predict's columns are not
    X, Y = make_multilabel_classification(
        n_samples=100, n_features=6, n_classes=5, random_state=0
    )
    buffer = io.BytesIO()
    MACHClassifier(**TINY).fit(X, Y).save(buffer)

    def relabel(values):
        def edit(m, t):
            for key in [k for k in t if k.startswith("classes")]:
                del t[key]
            m["state"]["classes"] = _persistence.pack_array(values, "classes", t)

        return edit

    for values in (np.array([10, 20, 30, 40, 50]), np.array(list("abcde"))):
        with pytest.raises(ValueError, match="multilabel classes"):
            load_bytes(edited(buffer.getvalue(), relabel(values)))
    load_bytes(edited(buffer.getvalue(), relabel(np.arange(5))))


def test_string_bytes_of_another_shape(model_bytes, no_side_effects):
    # an (n, 0) tensor has len() n but no bytes: the offsets' bound passed
    # and the strings loaded empty
    def empty_rows(m, t):
        t["classes.bytes"] = torch.zeros(
            (len(t["classes.bytes"]), 0), dtype=torch.uint8
        )

    with pytest.raises(ValueError, match="Invalid string offsets of classes"):
        load_bytes(edited(model_bytes, empty_rows))


def test_seeds_of_another_dtype_are_named(model_bytes, no_side_effects):
    def narrow(m, t):
        t["seeds"] = t["seeds"].to(torch.int32)

    with pytest.raises(ValueError, match=r"seeds of shape \(2,\) and dtype int32"):
        load_bytes(edited(model_bytes, narrow))


def test_trusting_a_local_class_says_what_trusted_takes(model_bytes):
    class Local(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match="trusted takes") as error:
        load_bytes(model_bytes, trusted=[Local])
    assert "Cannot save" not in str(error.value)


def test_stray_tensors_of_a_named_module_are_listed_briefly(
    model_bytes, no_side_effects
):
    # a file naming its module is checked against one built network's state;
    # the refusal printed every stored name (1.9 MB for 180,000 of them)
    def named_module_and_strays(m, t):
        m["params"]["module"] = {"class": "sklearn_mach._network:MACHNetwork"}
        for i in range(2000):
            t[f"networks.0.x{i}"] = torch.zeros(0)

    with pytest.raises(ValueError, match="unexpected") as error:
        load_bytes(edited(model_bytes, named_module_and_strays))
    assert len(str(error.value)) < 500


def test_load_lets_each_networks_tensors_go_once_copied(model_bytes, monkeypatch):
    # the file's tensors, the file's bytes and the built networks were all
    # held to the end of load: 3.4 times the model at its peak
    # (benchmarks/results/load_memory.md)
    held, tensors = [], {}
    set_state, load_network = MACHClassifier._set_state, MACHClassifier._load_network

    def spy_set_state(self, state, stored):
        tensors["all"] = stored
        return set_state(self, state, stored)

    def spy_load_network(self, *args, **kwargs):
        held.append(sorted(k for k in tensors["all"] if k.startswith("networks.")))
        return load_network(self, *args, **kwargs)

    monkeypatch.setattr(MACHClassifier, "_set_state", spy_set_state)
    monkeypatch.setattr(MACHClassifier, "_load_network", spy_load_network)
    load_bytes(model_bytes)
    per_network = len(held[0]) // 2
    assert [len(names) for names in held] == [2 * per_network, per_network]
    assert all(name.startswith("networks.1.") for name in held[1])
    assert not any(k.startswith("networks.") for k in tensors["all"])


def test_missing_and_extra_tensors(model_bytes, no_side_effects):
    for edit in (
        lambda m, t: t.pop("networks.1.input_bias"),
        lambda m, t: t.__setitem__("networks.2.input_bias", torch.zeros(16)),
        lambda m, t: t.__setitem__("networks.0.extra", torch.zeros(1)),
    ):
        with pytest.raises(ValueError):
            load_bytes(edited(model_bytes, edit))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m, t: m["state"].__setitem__("n_features_in", 10**9),
        lambda m, t: m["params"].__setitem__("hidden_layer_sizes", [10**9]),
        lambda m, t: m["state"]["resolved"].__setitem__("n_hashed_features_", 10**12),
        lambda m, t: m["state"]["resolved"].__setitem__("n_buckets_", 10**9),
        lambda m, t: m["params"].__setitem__("n_buckets", 10**9),
        lambda m, t: m["params"].__setitem__("n_repetitions", 10**9),
    ],
)
def test_huge_claims_allocate_nothing(model_bytes, no_side_effects, edit):
    # Each would need gigabytes if believed; each is refused against the
    # tensors actually in the file before anything that size is allocated.
    with pytest.raises(ValueError):
        load_bytes(edited(model_bytes, edit))


def test_manifest_claiming_a_billion_classes(model_bytes, no_side_effects):
    manifest, tensors = parse(model_bytes)
    raw = craft(manifest, tensors)
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    header["classes.offsets"]["shape"] = [10**9]  # the data is a few bytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    forged = struct.pack("<Q", len(text)) + text + raw[8 + size :]
    with pytest.raises(ValueError, match="corrupt"):
        load_bytes(forged)


def _refusal(raw):
    """The ``ValueError`` that loading ``raw`` raises."""
    with pytest.raises(ValueError) as error:
        load_bytes(raw)
    return error.value


def _with_repetitions(manifest, tensors, n_repetitions):
    """Make a tiny model claim ``n_repetitions`` copies of its first network."""
    manifest["params"]["n_repetitions"] = n_repetitions
    store_histories(manifest, tensors, [[] for _ in range(n_repetitions)])
    manifest["state"]["sparse_gradient"] = [False] * n_repetitions
    tensors["seeds"] = torch.arange(n_repetitions, dtype=torch.int64)
    manifest["state"]["label_hasher_random_state"] = None  # not these tables' seed
    tensors["label_hasher.hash_tables"] = tensors["label_hasher.hash_tables"][
        :1
    ].repeat(n_repetitions, 1, 1)
    prefix = "networks.0."
    first = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    for key in [k for k in tensors if k.startswith("networks.")]:
        del tensors[key]
    for r in range(n_repetitions):
        tensors.update({f"networks.{r}.{k}": v.clone() for k, v in first.items()})


def test_claims_the_stored_data_cannot_back(model_bytes, no_side_effects):
    # Three ways a file of a few kB or MB used to make load allocate GBs.
    def wide_strings(m, t):  # 5 labels of 3 bytes as 200 MB each
        m["state"]["classes"]["dtype"] = "<U50000000"

    raw = edited(model_bytes, wide_strings)  # the same strings, as Python objects
    classes, peak = traced_peak(lambda: load_bytes(raw).classes_)
    assert classes.dtype == object
    assert list(classes) == ["ant", "bee", "cat", "dog", "eel"]
    assert peak < 64 * 2**20

    def empty_rows(m, t):  # 2e7 rows of width 0: numbers hashed on the heap
        m["state"]["n_features_in"] = 2 * 10**7
        m["state"]["resolved"]["n_hashed_features_"] = 8
        for r in range(2):
            t[f"networks.{r}.feature_rows"] = torch.zeros((2 * 10**7, 0))

    def many_classes(m, t):  # 2^21 classes, 128 repetitions: a 1 GiB table
        _with_repetitions(m, t, 128)
        t["classes"] = torch.arange(2**21, dtype=torch.int32)
        m["state"]["classes"] = {"dtype": "<i4"}
        m["state"]["y_dtype"] = "<i4"

    for edit, message in [
        (empty_rows, "feature_rows has shape (20000000, 0): not a feature map"),
        (many_classes, "bucket table"),
    ]:
        raw = edited(model_bytes, edit)
        error, peak = traced_peak(lambda raw=raw: _refusal(raw))
        assert message in str(error)
        assert peak < 64 * 2**20, (edit.__name__, peak)
    # the same 128 repetitions with the model's own 5 classes load
    raw = edited(model_bytes, lambda m, t: _with_repetitions(m, t, 128))
    assert len(load_bytes(raw).networks_) == 128


def _set_weight(name, value):
    def edit(m, t):
        t[name] = t[name].clone()
        t[name].view(-1)[0] = value

    return edit


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(model_bytes, no_side_effects, value):
    # they loaded: predict_proba gave NaN rows, predict classes_[0] everywhere
    for name in ("networks.1.input_weight", "networks.0.layers.1.bias"):
        raw = edited(model_bytes, _set_weight(name, value))
        with pytest.raises(ValueError, match=f"{name} has non-finite values"):
            load_bytes(raw)


@pytest.mark.parametrize("module", [None, TinyMLP])
def test_weights_beyond_the_model_s_dtype_are_refused(data, module):
    # stored as float64 for a float32 model, 1e300 loaded as inf: predict_proba
    # gave NaN rows, predict classes_[0] everywhere (and save refused the model)
    model = MACHClassifier(**dict(TINY, module=module)).fit(*data)
    buffer = io.BytesIO()
    model.save(buffer, weights_dtype="float64")
    name = next(key for key in parse(buffer.getvalue())[1] if key.endswith("bias"))
    trusted = [] if module is None else [module]
    for value, refused in [(1e300, True), (3e38, False)]:
        raw = edited(buffer.getvalue(), _set_weight(name, value))
        if refused:
            with pytest.raises(ValueError, match=f"{name} has non-finite values"):
                load_bytes(raw, trusted=trusted)
        else:  # within float32's range
            loaded = load_bytes(raw, trusted=trusted)
            assert np.isfinite(loaded.predict_proba(data[0])).all()


def _int_label_bytes(data, labels):
    X, y = data
    model = MACHClassifier(**TINY).fit(X, labels)
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "dtype, stored",
    [
        ("|i1", None),  # stored as int64: 260 wrapped to 4
        ("<f16", None),  # longdouble: loaded, then not saved again
        (">i8", None),  # another byte order than any file holds
        ("<M8", torch.int64),  # a datetime without a unit: repr(classes_) failed
        ("<i8", torch.int32),  # a narrower tensor than the dtype
    ],
)
def test_label_dtypes_must_be_the_stored_ones(data, no_side_effects, dtype, stored):
    codes = np.unique(data[1], return_inverse=True)[1].astype(np.int64) * 65
    raw = _int_label_bytes(data, codes)

    def edit(m, t):
        m["state"]["classes"]["dtype"] = dtype
        if stored is not None:
            t["classes"] = t["classes"].to(stored)

    with pytest.raises(ValueError, match="classes"):
        load_bytes(edited(raw, edit))


@pytest.mark.parametrize("dtype", [">i8", ">f8", ">u4", "<M8[D]", ">m8[s]"])
def test_labels_of_any_byte_order_and_unit_round_trip(data, dtype, tmp_path):
    # a model fitted on big-endian labels could not be saved
    # (torch.from_numpy refuses a non-native byte order)
    X, y = data
    codes = np.unique(y, return_inverse=True)[1]
    labels = (codes * 3 + 1).astype(dtype)
    model = MACHClassifier(**TINY).fit(X, labels)
    loaded = roundtrip(model, tmp_path)
    assert loaded.classes_.dtype == model.classes_.dtype.newbyteorder("=")
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unsavable_label_dtype_is_named(data, tmp_path):
    X, y = data
    codes = np.unique(y, return_inverse=True)[1]
    model = MACHClassifier(**TINY).fit(X, codes.astype(np.longdouble))
    with pytest.raises(TypeError, match="Cannot save classes of dtype float128"):
        model.save(tmp_path / "model.skmach")
    assert not (tmp_path / "model.skmach").exists()


def test_a_trusted_module_that_fails_to_build_raises_value_error(
    data, no_side_effects, tmp_path
):
    # a module that cannot be built on the meta device is built for real
    # with the file's sizes: torch's RuntimeError escaped load
    from .persistence_modules import EagerMLP

    X, y = data
    model = MACHClassifier(**dict(TINY, module=EagerMLP)).fit(X, y)
    assert_same_model(model, roundtrip(model, tmp_path, trusted=[EagerMLP]), X)
    buffer = io.BytesIO()
    model.save(buffer)
    raw = edited(
        buffer.getvalue(),
        # torch.eye(2**31 - 1): "Storage size calculation overflowed"
        lambda m, t: m["state"].__setitem__("n_features_in", 2**31 - 1),
    )
    with pytest.raises(ValueError, match="Building the module of network 0 failed"):
        load_bytes(raw, trusted=[EagerMLP])


@pytest.mark.parametrize(
    "value", [{"class": ["a:B"]}, {"class": {"a": 1}}, {"class": 5}, {"class": None}]
)
def test_get_untrusted_types_refuses_malformed_references(model_bytes, value):
    # an unhashable name raised TypeError; 5 and None came back as '5', 'None'
    raw = edited(model_bytes, _set_param("module", value))
    with pytest.raises(ValueError, match="Malformed value of parameter 'module'"):
        get_untrusted_types(io.BytesIO(raw))
    with pytest.raises(ValueError, match="module"):
        load_bytes(raw)


@pytest.mark.parametrize(
    "names",
    [
        [f"junk{i}" for i in range(1000)],
        [f"networks.0.junk{i}" for i in range(1000)],  # not the default network's
        ["networks.2.input_bias"],  # a third network of two
        ["networks.01.input_bias"],
        ["networks.0.layers.3.weight"],  # a layer past the one hidden layer
    ],
)
def test_unexpected_tensor_names_are_refused_before_any_tensor_is_read(
    model_bytes, no_side_effects, monkeypatch, names
):
    # safetensors built every tensor first: 290,000 empty ones named in a
    # 16 MiB header took 412 MB and 7 s before the names were checked; no
    # tensor is read now before they are
    def add(m, t):
        t.update({name: torch.zeros(0) for name in names})

    raw = edited(model_bytes, add)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read")

    monkeypatch.setattr(_persistence, "_read_tensors", refuse)
    with pytest.raises(ValueError, match=f"unexpected tensors .*{names[0]}"):
        load_bytes(raw)


def test_a_custom_module_s_tensor_names_are_its_own(data, tmp_path):
    # any name under networks.<r>. may belong to a trusted module: checked
    # against the built module, after reading
    model = MACHClassifier(**dict(TINY, module=TinyMLP)).fit(*data)
    buffer = io.BytesIO()
    model.save(buffer)
    raw = edited(
        buffer.getvalue(), lambda m, t: t.update({"networks.0.junk": torch.zeros(0)})
    )
    with pytest.raises(ValueError, match="junk"):
        load_bytes(raw, trusted=[TinyMLP])


def test_labels_of_uneven_length_round_trip(tmp_path):
    # np.unique gives every label the longest one's width: 20,000 labels
    # with one of 1,000 characters take 80 MB as <U1000.  Past 8 times the
    # stored text they load as Python strings, the same labels.
    names = np.array([f"pkg{i}" for i in range(19_999)] + ["x" * 1000])
    X = np.random.RandomState(0).rand(40, 5).astype(np.float32)
    clf = MACHClassifier(**dict(TINY, n_repetitions=1, max_epochs=1))
    clf.partial_fit(X, names[:40], classes=names)
    assert clf.classes_.dtype == "<U1000"
    loaded = roundtrip(clf, tmp_path)
    assert loaded.classes_.dtype == object
    np.testing.assert_array_equal(loaded.classes_.astype(str), clf.classes_)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_save_refuses_what_load_refuses(string_model, model_bytes, monkeypatch):
    # One bound on the class-to-bucket table for both (here tightened to
    # nothing): save does not write a file that load would refuse.
    monkeypatch.setattr(sklearn_mach._persistence, "_TABLE_FACTOR", 0)
    monkeypatch.setattr(sklearn_mach._persistence, "_TABLE_SLACK", 0)
    buffer = io.BytesIO()
    with pytest.raises(ValueError, match="bucket table"):
        string_model.save(buffer)
    assert buffer.getvalue() == b""
    with pytest.raises(ValueError, match="bucket table"):
        load_bytes(model_bytes)


def test_classes_must_be_distinct_and_sorted(model_bytes, no_side_effects):
    pack = sklearn_mach._persistence.pack_array
    for labels in (
        ["ant", "ant", "bee", "cat", "dog"],
        ["bee", "ant", "cat", "dog", "eel"],
    ):

        def edit(m, t, labels=labels):
            m["state"]["classes"] = pack(np.array(labels), "classes", t)

        raw = edited(model_bytes, edit)
        with pytest.raises(ValueError, match="distinct and sorted"):
            load_bytes(raw)


def test_deeply_nested_manifest(model_bytes, no_side_effects):
    manifest, tensors = parse(model_bytes)
    text = json.dumps(manifest).replace('"verbose": 0', '"verbose": ' + "[" * 10**5)
    raw = safetensors.torch.save(tensors, metadata={"sklearn_mach": text})
    for read in (load_bytes, lambda raw: get_untrusted_types(io.BytesIO(raw))):
        with pytest.raises(ValueError, match="not a sklearn-mach model file"):
            read(raw)


def test_multilabel_y_dtype_must_be_numeric(tmp_path):
    X, Y = make_multilabel_classification(60, 8, n_classes=4, random_state=0)
    buffer = io.BytesIO()
    MACHClassifier(**TINY).fit(X, Y).save(buffer)
    raw = edited(
        buffer.getvalue(), lambda m, t: m["state"].__setitem__("y_dtype", "<U99999999")
    )
    with pytest.raises(ValueError, match="invalid y_dtype"):
        load_bytes(raw)
    # a sparse target's dtype must be one scipy.sparse holds: these loaded,
    # and every predict then failed
    buffer = io.BytesIO()
    MACHClassifier(**TINY).fit(X, sp.csr_matrix(Y)).save(buffer)
    for dtype in ("<f2", ">i8", ">f4"):
        raw = edited(
            buffer.getvalue(),
            lambda m, t, dtype=dtype: m["state"].__setitem__("y_dtype", dtype),
        )
        with pytest.raises(ValueError, match="invalid y_dtype"):
            load_bytes(raw)
    assert load_bytes(buffer.getvalue()).predict(X[:3]).shape == (3, 4)


@pytest.mark.parametrize(
    "names",
    [
        np.array([f"f{i}".encode() for i in range(10)]),
        np.arange(10),
        np.arange(10).astype("M8[D]"),
    ],
)
def test_feature_names_must_be_strings(model_bytes, no_side_effects, names):
    # they loaded, and save then refused the loaded model
    def store(m, t):
        m["state"]["feature_names_in"] = _persistence.pack_array(
            names, "feature_names_in", t
        )

    assert "feature_names_in must be strings" in str(
        _refusal(edited(model_bytes, store))
    )


def test_huge_header(model_bytes, no_side_effects):
    with pytest.raises(ValueError, match="header"):
        load_bytes(struct.pack("<Q", 2**40) + model_bytes[8:])
    padded = b"{" + b" " * (MAX_HEADER_BYTES + 10) + b"}"
    with pytest.raises(ValueError, match="header"):
        load_bytes(struct.pack("<Q", len(padded)) + padded)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(model_bytes, no_side_effects, tmp_path, cut):
    path = tmp_path / "cut.skmach"
    path.write_bytes(model_bytes[: int(len(model_bytes) * cut)])
    with pytest.raises(ValueError, match="not a sklearn-mach model file|corrupt"):
        MACHClassifier.load(path)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"hello",
        np.random.default_rng(0).bytes(4096),
        b'{"format": "sklearn-mach"}',
        safetensors.torch.save({"a": torch.zeros(2)}),  # no manifest
        safetensors.torch.save(
            {"a": torch.zeros(2)}, metadata={"sklearn_mach": "[1, 2]"}
        ),
    ],
    ids=[
        "empty",
        "text",
        "random-bytes",
        "json",
        "safetensors-without-manifest",
        "manifest-not-an-object",
    ],
)
def test_files_that_are_not_models(raw, no_side_effects):
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        load_bytes(raw)


def test_not_an_estimator_of_this_class(model_bytes, no_side_effects):
    raw = edited(model_bytes, lambda m, t: m.update(estimator="os.system"))
    with pytest.raises(ValueError, match="os.system"):
        load_bytes(raw)


_MUTATIONS = [
    None,
    -1,
    0,
    10**12,
    1.5,
    True,
    "x",
    [],
    {},
    [1],
    {"class": "os:system"},
    {"tuple": "x"},
    "DELETE",
]


def _paths(obj, prefix=()):
    """Every (path, value) of a JSON document."""
    yield prefix, obj
    items = (
        obj.items()
        if isinstance(obj, dict)
        else enumerate(obj)
        if isinstance(obj, list)
        else ()
    )
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def test_fuzzed_manifests_load_identically_or_raise_value_error(
    string_model, data, model_bytes
):
    # Every field of the manifest, replaced by values of other types (or
    # removed): each load gives the same model or a ValueError, nothing else.
    X, _ = data
    manifest, tensors = parse(model_bytes)
    expected = string_model.predict_proba(X)
    rng = np.random.default_rng(0)
    paths = [p for p, _ in _paths(manifest) if p]
    outcomes = {"identical": 0, "ValueError": 0}
    for path in paths:
        for mutation in rng.choice(len(_MUTATIONS), size=4, replace=False):
            mutated = copy.deepcopy(manifest)
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            if _MUTATIONS[mutation] == "DELETE":
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(_MUTATIONS[mutation])
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loaded = load_bytes(craft(mutated, tensors))
            except ValueError:
                outcomes["ValueError"] += 1
                continue
            # up to rounding: a flipped sparse_gradient flag (still a valid
            # manifest) computes the input layer with another CUDA kernel
            np.testing.assert_allclose(
                loaded.predict_proba(X),
                expected,
                rtol=1e-5,
                atol=1e-6,
                err_msg=str(path),
            )
            outcomes["identical"] += 1
    assert outcomes["ValueError"] > 50 and outcomes["identical"] > 5


def test_a_file_cannot_redirect_the_feature_map(data, no_side_effects):
    # feature_rows follow from the seed; a file's own map loaded and then
    # read out of bounds (an IndexError, a CUDA device assert) or, through
    # negative or in-range rows, silently another table or network's rows
    model = MACHClassifier(**dict(TINY, n_hashed_features=4)).fit(*data)
    raw = io.BytesIO()
    model.save(raw)
    for rows in ([4] * 10, [-1] * 10, [-4] * 10, [3, 2, 1, 0, 3, 2, 1, 0, 3, 2]):
        crafted = replaced(
            raw.getvalue(),
            "networks.0.feature_rows",
            torch.tensor(rows, dtype=torch.int64),
        )
        assert "differ from the network's hashing" in str(_refusal(crafted))
    loaded = load_bytes(raw.getvalue())  # the file's own map loads
    np.testing.assert_array_equal(loaded.predict(data[0]), model.predict(data[0]))


def test_custom_module_with_its_own_feature_rows_round_trips(data, tmp_path):
    # the feature-map check is the default network's: a custom module's
    # buffer of that name is its own state
    from .persistence_modules import CountingNet

    model = MACHClassifier(**dict(TINY, module=CountingNet)).fit(*data)
    assert model.networks_[0].feature_rows[0] > 0
    model.save(tmp_path / "m.skmach")
    loaded = MACHClassifier.load(tmp_path / "m.skmach", trusted=[CountingNet])
    assert torch.equal(
        loaded.networks_[0].feature_rows, model.networks_[0].feature_rows
    )
    np.testing.assert_array_equal(loaded.predict(data[0]), model.predict(data[0]))


def test_label_dtype_round_trips(data, tmp_path):
    # fit keeps the training array's dtype (np.unique): wider than its
    # longest label in a split that lacks the longest one, or big-endian
    X, y = data
    for labels in (
        np.array(["ant", "bee", "cat", "dog", "eel", "hippopotamus"])[
            np.searchsorted(np.unique(y), y)
        ],
        y.astype(">U3"),
    ):
        model = MACHClassifier(**TINY).fit(X, labels)
        assert model.classes_.dtype == labels.dtype
        loaded = roundtrip(model, tmp_path)
        assert loaded.classes_.dtype == labels.dtype
        assert loaded.predict(X).dtype == model.predict(X).dtype


def test_declared_label_width_is_not_copied_into_predictions(data, model_bytes):
    # "<U3000000" for 3-letter labels (57 MiB, under the object fallback)
    # was copied into every predicted label: gigabytes for 300 rows
    raw = edited(
        model_bytes, lambda m, t: m["state"]["classes"].update(dtype="<U3000000")
    )
    loaded = load_bytes(raw)
    assert loaded.classes_.dtype == np.dtype("<U3")
    assert loaded.predict(data[0][:300]).dtype == np.dtype("<U3")


@pytest.mark.parametrize("spec", [("<U1", "U"), ("<U2", "U"), ("|S2", "S")])
def test_declared_label_width_below_the_labels_is_refused(model_bytes, spec):
    # "<U1" for 3-letter labels cut every label to its first letter: a
    # model whose classes_ and predictions were not the file's labels
    dtype, strings = spec
    raw = edited(
        model_bytes,
        lambda m, t: m["state"]["classes"].update(dtype=dtype, strings=strings),
    )
    with pytest.raises(ValueError, match="narrower than its longest stored label"):
        load_bytes(raw)


def test_claims_refused_before_they_allocate(model_bytes, no_side_effects):
    def byte_rows(m, t):  # 1 byte per claimed feature: every feature hashed
        m["state"]["n_features_in"] = 2 * 10**6
        m["state"]["resolved"]["n_hashed_features_"] = 8
        for r in range(2):
            t[f"networks.{r}.feature_rows"] = torch.zeros(2 * 10**6, dtype=torch.uint8)

    def seeds_only(m, t):  # repetitions backed by 8 bytes of seed each
        m["params"]["n_repetitions"] = 10**6
        t["seeds"] = torch.zeros(10**6, dtype=torch.int64)

    for edit, message in [
        (
            byte_rows,
            "feature_rows has dtype torch.uint8, expected torch.int32 or torch.int64",
        ),
        (seeds_only, "layer tensors, but the file stores 14 tensors"),
    ]:
        error, peak = traced_peak(lambda edit=edit: _refusal(edited(model_bytes, edit)))
        assert message in str(error)
        assert peak < 32 * 2**20, (edit.__name__, peak)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m, t: t.__setitem__("junk", torch.zeros(1)), "unexpected tensors"),
        (
            lambda m, t: t.__setitem__("networks.01.input_bias", torch.zeros(16)),
            "unexpected tensors",
        ),
        (
            lambda m, t: m["params"].__setitem__("hidden_layer_sizes", [-16]),
            "hidden_layer_sizes must be positive",
        ),
        (
            lambda m, t: m["params"].__setitem__("hidden_layer_sizes", [10**20]),
            "hidden_layer_sizes must be positive",
        ),
        (lambda m, t: m["state"].__setitem__("sparse_y", True), "sparse_y"),
        (  # the table is there, in a dtype a weight cannot have
            lambda m, t: t.__setitem__(
                "networks.0.input_weight", t["networks.0.input_weight"].short()
            ),
            "networks.0.input_weight has dtype torch.int16, expected torch.float",
        ),
        (
            lambda m, t: t.__setitem__(
                "networks.0.input_weight", t["networks.0.input_weight"][:5].clone()
            ),
            ": not an input table for 10 features",
        ),
        (
            lambda m, t: t.__delitem__("networks.1.input_weight"),
            "networks.1.input_weight is missing: no input table for 10 features",
        ),
        (
            lambda m, t: m["state"].__setitem__("label_hasher_random_state", 1),
            "label_hasher_random_state 1 does not draw the stored hash tables",
        ),
        (
            lambda m, t: m["state"].__setitem__("label_hasher_random_state", 2**32),
            "invalid label_hasher_random_state",
        ),
        (
            lambda m, t: m["state"].__setitem__("label_hasher_random_state", True),
            "invalid label_hasher_random_state",
        ),
        (lambda m, t: m["state"].__setitem__("n_updates", 10**100), "n_updates"),
        (
            lambda m, t: store_histories(m, t, [[{"dur": [[1.0]]}], []]),
            "malformed histories",
        ),
        (
            lambda m, t: store_histories(m, t, [[]]),
            "malformed histories: expected 2 JSON texts",
        ),
        (
            lambda m, t: m["state"].__setitem__("histories", [[], []]),
            "malformed histories: [[], []]",
        ),
        (
            lambda m, t: store_histories(m, t, [[], "[{]"]),
            "Expecting property name",
        ),
        (
            lambda m, t: m["state"].__setitem__("validation_scores", [float("nan")]),
            "validation_scores",
        ),
        (
            lambda m, t: m["params"].__setitem__(
                "module", {"tuple": [{"class": f"{HOSTILE}:Net"}]}
            ),
            "Malformed value of parameter 'module'",
        ),
    ],
)
def test_inconsistent_state_is_refused(model_bytes, no_side_effects, edit, message):
    # each of these loaded before and failed later (predict, partial_fit,
    # pickling) with a raw error, or (a class inside a tuple) was a name
    # get_untrusted_types did not list
    raw = edited(model_bytes, edit)
    assert message in str(_refusal(raw))
    assert get_untrusted_types(io.BytesIO(raw)) == []


def test_sparse_adam_is_not_trusted_by_default(model_bytes, no_side_effects):
    # it cannot train the networks' dense layers: a file naming it could
    # only fail in partial_fit
    name = "torch.optim.sparse_adam:SparseAdam"
    raw = edited(model_bytes, _set_param("optimizer", {"class": name}))
    assert "not trusted" in str(_refusal(raw))
    assert get_untrusted_types(io.BytesIO(raw)) == [name]


def test_load_does_not_sort_the_classes(tmp_path, many_classes, sorted_sizes):
    # load checked that the stored classes are distinct and sorted with
    # np.unique: 2.5 s of a 4.7 s load at K = 3e6.  One pass suffices.
    K = 50_000
    clf, _ = many_classes(K)
    clf.save(tmp_path / "m.mach")
    sorted_sizes.clear()
    loaded = MACHClassifier.load(tmp_path / "m.mach")
    assert max(sorted_sizes, default=0) < K
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)


def test_a_trusted_optimizer_is_no_module(model_bytes, no_side_effects):
    # trusted as an optimizer (here by default), an optimizer class named as
    # the module is refused before it is called as one
    name = "torch.optim.sgd:SGD"
    raw = edited(model_bytes, _set_param("module", {"class": name}))
    assert "not trusted" in str(_refusal(raw))
    assert f"{name!r} is not a valid module" in str(
        _refusal_trusted(raw, [torch.optim.SGD])
    )


def _refusal_trusted(raw, trusted):
    with pytest.raises(ValueError) as error:
        load_bytes(raw, trusted=trusted)
    return error.value


@pytest.mark.parametrize(
    "keys, pos, has_gauss, gauss",
    [
        (624, 625, 0, 0.0),  # numpy drew from past the key array
        (624, -1, 0, 0.0),
        (624, 10**8, 0, 0.0),  # fit segfaulted
        (623, 0, 0, 0.0),
        (624, 0, 2, 0.0),
        (624, 0, 1, float("nan")),
    ],
)
def test_random_state_outside_mt19937_is_refused(
    model_bytes, no_side_effects, keys, pos, has_gauss, gauss
):
    # numpy's set_state takes any pos; drawing then reads key[pos]
    key = np.random.RandomState(0).get_state()[1][:keys].tolist()
    raw = edited(
        model_bytes,
        lambda m, t: m["params"].__setitem__(
            "random_state", {"RandomState": [key, pos, has_gauss, gauss]}
        ),
    )
    assert "Invalid RandomState for 'random_state'" in str(_refusal(raw))


@pytest.mark.parametrize(
    "keys",
    [[0] * 624, ["7"] * 624, [1.9] * 624, [True] * 624, [2**32] * 624],
    ids=["zeros", "strings", "floats", "bools", "too-large"],
)
def test_random_state_keys_are_what_get_state_gives(model_bytes, no_side_effects, keys):
    # all-zero keys loaded, and standard_normal() then never returned;
    # strings, floats and bools were converted silently
    raw = edited(
        model_bytes,
        lambda m, t: m["params"].__setitem__(
            "random_state", {"RandomState": [keys, 624, 0, 0.0]}
        ),
    )
    assert "Invalid RandomState for 'random_state'" in str(_refusal(raw))


def test_layers_the_file_cannot_hold_are_refused_before_building(
    model_bytes, no_side_effects
):
    # 50,000 one-wide layers in a 163 kB file: every layer built on the meta
    # device and listed by name first (15 s; 1.4 GB at 200,000 layers)
    raw = edited(
        model_bytes,
        lambda m, t: m["params"].__setitem__("hidden_layer_sizes", [1] * 50_000),
    )
    error, peak = traced_peak(lambda: _refusal(raw))
    assert "hidden_layer_sizes has 50000 layers and n_repetitions=2" in str(error)
    assert peak < 64 * 2**20


def test_default_network_sizes_the_meta_device_refuses_are_not_built(
    model_bytes, no_side_effects, monkeypatch
):
    # (2**31 - 1)**2 weights overflow even on the meta device; load then
    # built the network for real: 16 GB written from a 13 kB file
    import sklearn_mach._classifier as classifier

    build = classifier.build_module

    def meta_only(*args, **kwargs):
        if torch.empty(0).device.type != "meta":
            raise AssertionError("built for real")
        return build(*args, **kwargs)

    monkeypatch.setattr(classifier, "build_module", meta_only)
    raw = edited(
        model_bytes,
        lambda m, t: m["params"].__setitem__(
            "hidden_layer_sizes", [1, 2**31 - 1, 2**31 - 1]
        ),
    )
    message = str(_refusal(raw))
    assert "network's layers cannot be built" in message
    assert "built for real" not in message


class _Endless(io.RawIOBase):
    """A binary stream of zeros (or of ``head`` first) that never ends; it
    fails the test once read past ``limit`` bytes."""

    def __init__(self, head=b"", limit=2**26):
        self.head, self.limit, self.served = head, limit, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.served > self.limit:
            raise AssertionError(f"{self.served} bytes read")
        n = len(buffer)
        start = self.served
        chunk = (self.head[start : start + n]).ljust(n, b"\0")
        buffer[:n] = chunk
        self.served += n
        return n


def test_load_reads_no_more_than_the_header_claims(model_bytes, tmp_path):
    # load and get_untrusted_types read the whole path or stream first: a
    # link to /dev/zero filled the memory, a FIFO hung
    for function in (MACHClassifier.load, get_untrusted_types):
        with pytest.raises(ValueError, match="not a sklearn-mach model file"):
            function(_Endless())
        # a model file's bytes, then more (a socket kept open): only what
        # its header reaches; a stream is not read past it
        stream = _Endless(model_bytes)
        if function is get_untrusted_types:
            assert function(stream) == []
            (size,) = struct.unpack("<Q", model_bytes[:8])
            assert stream.served <= 8 + size
        else:
            assert function(stream).n_features_in_ == 10
            assert stream.served == len(model_bytes)
    link = tmp_path / "zero.skmach"
    link.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        MACHClassifier.load(link)
    # an ordinary file and a non-seekable stream of it still load
    path = tmp_path / "m.skmach"
    path.write_bytes(model_bytes)
    assert MACHClassifier.load(path).n_features_in_ == 10
    assert MACHClassifier.load(_Pipe(model_bytes)).n_features_in_ == 10
    assert get_untrusted_types(_Pipe(model_bytes)) == []


def _load_from_an_open_pipe(data, wrap):
    """Load ``wrap(the read end)`` of a pipe holding ``data`` whose writer
    stays open; whether the load blocked (30 s), and the loaded model."""
    import threading

    read_end, write_end = os.pipe()
    os.write(write_end, data)
    loaded = []
    with wrap(read_end) as f:
        worker = threading.Thread(target=lambda: loaded.append(MACHClassifier.load(f)))
        worker.start()
        worker.join(30)
        blocked = worker.is_alive()
        os.close(write_end)  # unblocks a blocked read
        worker.join()
    return blocked, loaded[0]


def test_load_from_a_pipe_its_writer_keeps_open(model_bytes):
    # load read one byte past the model, to refuse longer files: from a
    # pipe whose writer stays open, that read never returned
    blocked, model = _load_from_an_open_pipe(
        model_bytes, lambda fd: os.fdopen(fd, "rb")
    )
    assert not blocked and model.n_features_in_ == 10


def test_gzip_over_a_pipe_its_writer_keeps_open(model_bytes):
    # GzipFile.seekable() is True whatever it wraps: the byte read past the
    # model made gzip wait for the pipe's next member
    import gzip

    blocked, model = _load_from_an_open_pipe(
        gzip.compress(model_bytes),
        lambda fd: gzip.GzipFile(fileobj=os.fdopen(fd, "rb", buffering=0)),
    )
    assert not blocked and model.n_features_in_ == 10


class _CountingBytesIO(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.served = 0

    def read(self, *args):
        data = super().read(*args)
        self.served += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.served += n
        return n


@pytest.mark.parametrize("compression", ["gzip", "bz2", "lzma"])
def test_compressed_file_objects_are_decompressed_once(data, compression):
    # sizing the read by a seek to the end decompressed them four times
    import importlib

    module = importlib.import_module(compression)
    model = MACHClassifier(**dict(TINY, hidden_layer_sizes=(2048,), max_epochs=1))
    buffer = io.BytesIO()
    model.fit(*data).save(buffer)
    raw = _CountingBytesIO(module.compress(buffer.getvalue()))
    assert len(raw.getvalue()) > 2**18
    with module.open(raw, "rb") as f:
        assert MACHClassifier.load(f).n_features_in_ == 10
    assert raw.served < 1.5 * len(raw.getvalue())


@pytest.mark.parametrize("compression", ["gzip", "bz2", "lzma"])
def test_compressed_files_on_disk_load(model_bytes, tmp_path, compression):
    # their fileno() is the compressed file's: fstat sized the read by the
    # compressed size, and the model came back truncated
    import importlib

    module = importlib.import_module(compression)
    path = tmp_path / "model.skmach.z"
    path.write_bytes(module.compress(model_bytes))
    assert path.stat().st_size < len(model_bytes)  # the truncation it caused
    with module.open(path, "rb") as f:
        assert MACHClassifier.load(f).n_features_in_ == 10


@pytest.mark.parametrize("compression", ["gzip", "bz2", "lzma"])
def test_damaged_compressed_file_objects_are_value_errors(model_bytes, compression):
    # the byte past the model makes them check their ending: a cut one
    # raised EOFError, gzip's a bad CRC BadGzipFile
    import importlib

    module = importlib.import_module(compression)
    packed = module.compress(model_bytes)
    damaged = [packed[:-4], packed[: len(packed) // 2]]
    if compression == "gzip":
        crc = bytearray(packed)
        crc[-8] ^= 0xFF
        damaged.append(bytes(crc))
    for raw in damaged:
        with module.open(io.BytesIO(raw), "rb") as f:
            with pytest.raises(ValueError, match="damaged or truncated data"):
                MACHClassifier.load(f)
        if raw is damaged[0]:  # cut in its ending: the header reads
            with module.open(io.BytesIO(raw), "rb") as f:
                assert get_untrusted_types(f) == []
    for call in (MACHClassifier.load, get_untrusted_types):
        with module.open(io.BytesIO(b"not compressed" * 10), "rb") as f:
            with pytest.raises(ValueError, match="The model file: damaged or trunc"):
                call(f)


def test_damaged_wrapped_streams_are_value_errors(model_bytes):
    # a buffered reader over a gzip stream, a tar.gz member, a zip member
    import gzip
    import tarfile
    import zipfile

    cut = gzip.compress(model_bytes)[:-6]
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        info = tarfile.TarInfo("model.skmach")
        info.size = len(model_bytes)
        archive.addfile(info, io.BytesIO(model_bytes))
    half = tarfile.open(fileobj=io.BytesIO(tar.getvalue()[: len(tar.getvalue()) // 2]))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.skmach", model_bytes)
    damaged = bytearray(zipped.getvalue())
    # the first deflate block's type bits set to 11, a reserved type (a
    # flipped byte further in could decompress to a wrong header instead)
    damaged[damaged.find(b"model.skmach") + len(b"model.skmach")] |= 0b110
    for open_stream in (
        lambda: io.BufferedReader(gzip.GzipFile(fileobj=io.BytesIO(cut))),
        lambda: half.extractfile(half.next()),  # its first header only
        lambda: zipfile.ZipFile(io.BytesIO(bytes(damaged))).open("model.skmach"),
    ):
        with pytest.raises(ValueError, match="damaged or truncated data"):
            MACHClassifier.load(open_stream())

    # the caller's own stream's EOFError (a dropped connection) passes
    with pytest.raises(EOFError, match="connection closed by peer"):
        MACHClassifier.load(io.BufferedReader(DroppedStream()))


def _resident_peak(call):
    """``call()``'s result and the peak resident memory above the memory in
    use before it, in bytes (Linux: ``/proc/self/clear_refs``), counting
    torch's allocations, which tracemalloc does not see."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs")

    def kib(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    before = kib("VmRSS")
    result = call()
    return result, 1024 * (kib("VmHWM") - before)


@pytest.fixture(scope="module")
def wide_model():
    # four 36 MB input tables: each allocation is its own mapping, so the
    # resident peak counts it (no reuse of freed heap pages)
    rng = np.random.default_rng(0)
    X = sp.random(64, 18_000, density=0.001, format="csr", random_state=rng)
    y = rng.integers(0, 3, 64)
    model = MACHClassifier(
        n_buckets=4,
        n_repetitions=4,
        hidden_layer_sizes=(512,),
        n_hashed_features=None,
        max_epochs=1,
        random_state=0,
    )
    return model.fit(X.astype(np.float32), y), X.astype(np.float32)


def test_save_and_load_hold_one_copy_of_the_model(wide_model, tmp_path):
    # save built the whole file in memory (2.1x the model), load held the
    # file's bytes and the tensors (2.0x): now tensors are written and read
    # one at a time, and each network's are freed once it holds them
    model, X = wide_model
    size = sum(p.numel() * 4 for net in model.networks_ for p in net.parameters())
    path = tmp_path / "wide.skmach"
    _, peak = _resident_peak(lambda: model.save(path))
    assert peak < 0.25 * size
    for opener in (
        lambda: path,
        lambda: open(path, "rb"),
        lambda: io.BytesIO(path.read_bytes()),  # held before the measure
        lambda: _Pipe(path.read_bytes(), chunk=2**20),
    ):
        source = opener()
        loaded, peak = _resident_peak(lambda f=source: MACHClassifier.load(f))
        # the tensors read, and one network built from them
        assert peak < 1.5 * size
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        del loaded


@pytest.mark.parametrize("weights_dtype", [None, "float64", "float16", "bfloat16"])
def test_files_are_the_bytes_safetensors_writes(string_model, weights_dtype):
    buffer = io.BytesIO()
    string_model.save(buffer, weights_dtype=weights_dtype)
    raw = buffer.getvalue()
    (size,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8 : 8 + size])["__metadata__"]
    assert raw == safetensors.torch.save(safetensors.torch.load(raw), metadata)


def _safetensors_file(tensors):
    manifest = {"format": "sklearn-mach", "format_version": FORMAT_VERSION}
    return safetensors.torch.save(
        tensors, metadata={"sklearn_mach": json.dumps(manifest)}
    )


def _read_with_sklearn_mach(raw, stream):
    f = _Pipe(raw) if stream else io.BytesIO(raw)
    header, _, _, left = _persistence._read_header(f, "x")
    return _persistence._read_tensors(f, header, left)


def _outcome(read, raw, errors=ValueError):
    try:
        return read(raw)
    except errors:
        return None


def test_tensors_read_as_safetensors_reads_them():
    # the reader replaced safetensors' own: every file it takes, safetensors
    # takes and reads the same; every file safetensors refuses, it refuses
    # (and booleans stored as bytes other than 0 and 1, which torch reads
    # as neither True nor False)
    rng = np.random.default_rng(0)
    tensors = {
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "b": torch.tensor([1, -2, 3], dtype=torch.int64),
        "c": torch.tensor([0.5, -1.5], dtype=torch.bfloat16),
        "d": torch.tensor([True, False, True]),
        "e": torch.zeros((0, 4), dtype=torch.float16),
        "f": torch.tensor(7, dtype=torch.uint8),
    }
    raw = _safetensors_file(tensors)
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    names = sorted(tensors)
    n_checked = {"taken": 0, "refused": 0}

    def edit(header):
        name = names[rng.integers(len(names))]
        entry = header[name]
        kind = rng.integers(8)
        if kind >= 6:  # the same bytes read as another dtype or shape
            same = {"F32": "I32", "I32": "F32", "I64": "F64", "F64": "I64",
                    "BF16": "F16", "F16": "BF16", "BOOL": "U8", "U8": "I8",
                    "I8": "U8"}  # fmt: skip
            if kind == 6:
                entry["dtype"] = same.get(entry["dtype"], entry["dtype"])
            else:
                n = math.prod(entry["shape"])
                entry["shape"] = [[n], [n, 1], [1, n], [n, 1, 1]][rng.integers(4)]
        elif kind == 0:
            entry["dtype"] = ["F32", "I64", "BF16", "BOOL", "U8", "F64", "I8",
                              "X", 3, None][rng.integers(10)]  # fmt: skip
        elif kind == 1:
            entry["shape"] = [[], [1], [2, 3], [3, 2], [0], [6], [-1], [1.0],
                              [2**63], [0, 2**70], "6"][rng.integers(11)]  # fmt: skip
        elif kind == 2:
            entry["data_offsets"][rng.integers(2)] += int(rng.integers(-9, 10))
        elif kind == 3:
            entry.pop(["dtype", "shape", "data_offsets"][rng.integers(3)])
        elif kind == 4:
            header[f"extra{rng.integers(3)}"] = dict(entry)
        else:
            entry["data_offsets"] = [int(v) for v in rng.integers(0, 80, 2)]

    for _ in range(400):
        forged = json.loads(json.dumps(header))
        for _ in range(rng.integers(1, 3)):
            edit(forged)
        text = json.dumps(forged).encode()
        data = raw[8 + size :]
        cut = max(0, rng.integers(-3, 3))
        data = data if cut == 0 else data[:-1] if cut == 1 else data + b"\0"
        candidate = struct.pack("<Q", len(text)) + text + data
        theirs = _outcome(safetensors.torch.load, candidate, Exception)
        for stream in (False, True):
            expected = theirs
            if stream and cut == 2:
                # a stream that cannot seek is not read past the data's end
                # (a pipe's writer may keep it open): the byte more is unread
                expected = _outcome(safetensors.torch.load, candidate[:-1], Exception)
            if expected is not None and any(
                t.dtype == torch.bool and t.numel() and t.view(torch.uint8).max() > 1
                for t in expected.values()
            ):
                expected = None  # booleans stored as other bytes than 0 and 1
            ours = _outcome(
                lambda r, s=stream: _read_with_sklearn_mach(r, s), candidate
            )
            case = json.dumps([forged, int(cut), stream])
            assert (ours is None) == (expected is None), case
            if ours is not None:
                assert ours.keys() == expected.keys()
                for key in ours:
                    assert ours[key].dtype == expected[key].dtype
                    assert ours[key].shape == expected[key].shape
                    assert torch.equal(  # NaN read as another dtype's bytes
                        ours[key].reshape(-1).view(torch.uint8),
                        expected[key].reshape(-1).view(torch.uint8),
                    )
        n_checked["taken" if theirs is not None else "refused"] += 1
    # both kinds of file were tried
    assert min(n_checked.values()) > 20, n_checked


def _with_header(raw, text):
    (size,) = struct.unpack("<Q", raw[:8])
    return struct.pack("<Q", len(text)) + text + raw[8 + size :]


def _header_text(raw):
    (size,) = struct.unpack("<Q", raw[:8])
    return raw[8 : 8 + size].rstrip(b" ")


@pytest.mark.parametrize(
    "forge",
    [
        lambda text: text.decode().encode("utf-16"),
        lambda text: b"\xef\xbb\xbf" + text,  # a UTF-8 byte-order mark
        lambda text: text.replace(b'"data_offsets":[0,', b'"data_offsets":[-0,', 1),
        lambda text: text[:-1] + b',"__metadata__":' + json.dumps(  # twice
            json.loads(text)["__metadata__"]).encode() + b"}",
        lambda text: text.replace(b'__metadata__":{', b'__metadata__":{"x":"\\ud800",'),
    ],
    ids=["utf-16", "bom", "minus-zero", "duplicate-key", "lone-surrogate"],
)  # fmt: skip
def test_headers_safetensors_refuses_are_refused(model_bytes, forge):
    # Python's json guesses UTF-16, skips nothing, takes -0, keeps the last
    # of two keys and lone surrogates: the header was read by safetensors
    # too, which refuses them all, and is now read alone
    raw = _with_header(model_bytes, forge(_header_text(model_bytes)))
    with pytest.raises(Exception):  # noqa: B017 (safetensors' own error type)
        safetensors.torch.load(raw)
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        load_bytes(raw)


def test_a_shape_of_many_huge_dimensions_is_refused_at_once(model_bytes):
    # math.prod of 160,000 dimensions of 2**62 - 1 took 45 s (quadratic in
    # the number of dimensions; 20 minutes in a 16 MiB header): the product
    # stops past 2**64 bytes, as safetensors' checked multiplication does
    header = json.loads(_header_text(model_bytes))
    header["seeds"]["shape"] = [2**62 - 1] * 20_000
    raw = _with_header(model_bytes, json.dumps(header).encode())
    with pytest.raises(ValueError, match=r"'seeds' has a shape of 2\*\*64 values"):
        load_bytes(raw)
    # values counted first, then bytes, as safetensors does: 2**63.3 bytes
    # of float16 but a zero at the end takes none
    tensors = {"h": torch.zeros(0, dtype=torch.float16)}
    raw = _safetensors_file(tensors)
    header = json.loads(_header_text(raw))
    header["h"]["shape"] = [2**32, 429496729, 6, 0]
    raw = _with_header(raw, json.dumps(header).encode())
    assert safetensors.torch.load(raw)["h"].shape == (2**32, 429496729, 6, 0)
    assert _read_with_sklearn_mach(raw, stream=False)["h"].shape == (
        2**32, 429496729, 6, 0
    )  # fmt: skip


def test_names_in_utf_8_as_safetensors_writes_them(data):
    # json.dumps escaped non-ASCII names (\\u00e9): other bytes than
    # safetensors', and a lone surrogate was written, then refused by load
    from .persistence_modules import NamedBuffers, SurrogateBuffer

    model = MACHClassifier(**dict(TINY, module=NamedBuffers)).fit(*data)
    buffer = io.BytesIO()
    model.save(buffer)
    raw = buffer.getvalue()
    assert "température".encode() in raw
    (size,) = struct.unpack("<Q", raw[:8])
    metadata = json.loads(raw[8 : 8 + size])["__metadata__"]
    assert raw == safetensors.torch.save(safetensors.torch.load(raw), metadata)
    buffer.seek(0)
    assert_same_model(
        model, MACHClassifier.load(buffer, trusted=[NamedBuffers]), data[0]
    )
    model = MACHClassifier(**dict(TINY, module=SurrogateBuffer)).fit(*data)
    with pytest.raises(ValueError, match="not valid Unicode"):
        model.save(io.BytesIO())
    # in labels and feature names: a bare UnicodeEncodeError naming neither
    X, y = data
    model = MACHClassifier(**TINY).fit(X, np.where(y == "ant", "a\ud800", y))
    with pytest.raises(ValueError, match="Cannot save classes: .* not valid Unicode"):
        model.save(io.BytesIO())
    pd = pytest.importorskip("pandas")
    columns = ["x\ud800"] + [f"x{i}" for i in range(1, X.shape[1])]
    # an object Index: pandas' pyarrow strings cannot hold a lone surrogate
    columns = pd.Index(columns, dtype=object)
    model = MACHClassifier(**TINY).fit(pd.DataFrame(X, columns=columns), y)
    with pytest.raises(ValueError, match="Cannot save feature_names_in: .* Unicode"):
        model.save(io.BytesIO())


def _custom_round_trip(module, data):
    """A model of trusted ``module`` fitted on ``data``, saved and loaded:
    the loaded model, checked to predict as the saved one."""
    model = MACHClassifier(**dict(TINY, module=module)).fit(*data)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = MACHClassifier.load(buffer, trusted=[module])
    assert_same_model(model, loaded, data[0])
    return loaded


def test_an_empty_buffer_of_any_torch_size_saves_and_loads(data):
    # a dimension of 2**62 beside a 0: save wrote it, load refused it
    from .persistence_modules import HugeEmptyBuffer

    loaded = _custom_round_trip(HugeEmptyBuffer, data)
    assert loaded.networks_[0].placeholder.shape == (2**62, 0)


def test_long_shapes_are_named_briefly(model_bytes):
    # a header of 100,001 dimensions gave a message as long
    header = json.loads(_header_text(model_bytes))
    header["seeds"]["shape"] = [1] * 100_000 + [2]
    with pytest.raises(ValueError, match="seeds of shape") as error:
        load_bytes(_with_header(model_bytes, json.dumps(header).encode()))
    assert len(str(error.value)) < 500


def test_custom_buffers_of_any_stride_save(data):
    # one element every 4th: torch calls it contiguous, with stride 4, and
    # refused to view its bytes
    from .persistence_modules import StridedBuffers

    _custom_round_trip(StridedBuffers, data)


def test_tensors_are_written_and_read_little_endian(string_model, data, monkeypatch):
    # the byte swap of a big-endian machine, run here through its switch:
    # each multi-byte number's bytes reversed on the way out and back in
    plain = io.BytesIO()
    string_model.save(plain)
    with monkeypatch.context() as m:
        m.setattr(_persistence, "_SWAP_BYTES", True)
        swapped = io.BytesIO()
        string_model.save(swapped)
        swapped.seek(0)
        loaded = MACHClassifier.load(swapped)
    assert_same_model(string_model, loaded, data[0])
    ours, theirs = parse(plain.getvalue())[1], parse(swapped.getvalue())[1]
    for name, tensor in ours.items():
        width = tensor.element_size()
        expected = tensor.reshape(-1).view(torch.uint8).view(-1, width).flip(1)
        got = theirs[name].reshape(-1).view(torch.uint8).view(-1, width)
        assert torch.equal(got, expected), name


def test_save_writes_all_through_short_writes_and_to_bytes_only_writers(
    string_model, model_bytes
):
    # a raw file object may write part of what it is given
    class Short(io.RawIOBase):
        def __init__(self):
            self.out = bytearray()

        def writable(self):
            return True

        def write(self, buffer):
            part = bytes(buffer[:1000])
            self.out += part
            return len(part)

    f = Short()
    string_model.save(f)
    assert bytes(f.out) == model_bytes

    class BytesOnly:  # not an io object: its write may take bytes only
        def __init__(self):
            self.out = b""

        def write(self, data):
            self.out += data  # bytes + memoryview is a TypeError

    f = BytesOnly()
    string_model.save(f)
    assert f.out == model_bytes

    class SaysTrue(BytesOnly):  # success as True, not a count of 1 byte
        def write(self, data):
            super().write(data)
            return True

    f = SaysTrue()
    string_model.save(f)
    assert f.out == model_bytes

    class Half(BytesOnly):  # half of each part, its count as a numpy number
        def __init__(self, as_count):
            super().__init__()
            self.as_count = as_count

        def write(self, data):
            n = max(1, len(data) // 2)
            super().write(data[:n])
            return self.as_count(n)

    for as_count in (np.int64, np.array):  # a 0-d array: io's writers read it
        f = Half(as_count)
        string_model.save(f)
        assert f.out == model_bytes

    class SaysMore(BytesOnly):  # more than it was given: cut after a part
        def write(self, data):
            part = data[:1000]
            super().write(part)
            return len(data) + 1

    with pytest.raises(OSError, match="wrote .* bytes of"):
        string_model.save(SaysMore())

    class SaysHalf(BytesOnly):  # not a count
        def write(self, data):
            super().write(data)
            return 0.5

    with pytest.raises(TypeError, match="returned 0.5, not a number of bytes"):
        string_model.save(SaysHalf())


def test_save_to_a_full_non_blocking_raw_file_raises(string_model):
    # a raw file's write returns None when it would block: nothing written,
    # which was taken for all of it (a silently cut file)
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            return None

    with pytest.raises(BlockingIOError, match="non-blocking and would block"):
        string_model.save(Full())


def test_file_objects_that_cannot_seek_load(model_bytes, tmp_path):
    # a fileno() and tell() but no seek: AttributeError or UnsupportedOperation
    path = tmp_path / "m.skmach"
    path.write_bytes(model_bytes)

    class NoSeek:
        def __init__(self, f):
            self.read, self.tell, self.fileno = f.read, f.tell, f.fileno

    with open(path, "rb") as f:
        assert MACHClassifier.load(NoSeek(f)).n_features_in_ == 10
    # nor is a SpooledTemporaryFile rolled over to disk (fileno() does that)
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=10 * len(model_bytes)) as f:
        f.write(model_bytes)
        f.seek(0)
        assert MACHClassifier.load(f).n_features_in_ == 10
        assert not f._rolled


def test_trailing_bytes_are_refused_from_whatever_can_seek(model_bytes, tmp_path):
    # streams were read to exactly the model's end: a NamedTemporaryFile
    # (a file on disk) or a gzip file with a byte more loaded
    import gzip
    import tempfile

    longer = model_bytes + b"\0"
    named = tempfile.NamedTemporaryFile()
    spooled = tempfile.SpooledTemporaryFile()
    for f in (named, spooled):
        f.write(longer)
        f.seek(0)
    zipped = gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(longer)))
    for f in (named, spooled, zipped):
        with f, pytest.raises(ValueError, match="corrupt or truncated"):
            MACHClassifier.load(f)


def test_a_header_claim_allocates_no_more_than_the_file(tmp_path):
    # a 20-byte file claiming a 16 MiB header: 16 MiB read buffer first
    path = tmp_path / "small.skmach"
    path.write_bytes(struct.pack("<Q", 16 * 2**20) + b"{" + b" " * 11)
    with open(path, "rb") as f:
        error, peak = traced_peak(lambda: _refusal_of(f))
    assert "not a sklearn-mach model file" in str(error)
    assert peak < 2**20


def _refusal_of(f):
    with pytest.raises(ValueError) as error:
        MACHClassifier.load(f)
    return error.value


class _SeekReturnsNone(io.BytesIO):
    """A file object whose ``seek`` returns ``None`` (paramiko's SFTPFile)."""

    def seek(self, *args):
        super().seek(*args)


def test_file_objects_whose_seek_returns_none(model_bytes):
    # a TypeError (None - int) from sizing the read
    assert MACHClassifier.load(_SeekReturnsNone(model_bytes)).n_features_in_ == 10


class _Pipe(io.RawIOBase):
    """``data`` as a stream that cannot seek, served ``chunk`` bytes a read."""

    def __init__(self, data, chunk=1000):
        self.data, self.at, self.chunk = data, 0, chunk

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.chunk, len(self.data) - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n
