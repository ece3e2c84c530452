"""Pickle-free saving and loading of fitted MACHClassifier models."""

import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.exceptions import NotFittedError

import sklearn_mach
from sklearn_mach import MACHClassifier
from sklearn_mach._persistence import FORMAT_VERSION, load_model, save_model

from .persistence_modules import TinyMLP, make_tiny_mlp

TINY = dict(
    n_buckets=8, n_repetitions=2, hidden_layer_sizes=(16,), max_epochs=3,
    random_state=0,
)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=200, n_features=10, n_informative=6, n_classes=5,
        n_clusters_per_class=1, random_state=0,
    )
    labels = np.array(["ant", "bee", "cat", "dog", "eel"])
    return X.astype(np.float32), labels[y]


@pytest.fixture(scope="module")
def string_model(data):
    X, y = data
    return MACHClassifier(**TINY).fit(X, y)


@pytest.fixture(scope="module")
def multilabel_data():
    X, Y = make_multilabel_classification(
        n_samples=200, n_features=10, n_classes=6, random_state=0
    )
    return X.astype(np.float32), Y


@pytest.fixture(scope="module")
def model_bytes(string_model):
    buffer = io.BytesIO()
    save_model(string_model, buffer)
    return buffer.getvalue()


def assert_same_predictions(a, b, X, k=3):
    pa, pb = a.predict(X), b.predict(X)
    if sp.issparse(pa):
        assert sp.issparse(pb)
        assert pa.dtype == pb.dtype
        assert (pa != pb).nnz == 0
    else:
        assert pa.dtype == pb.dtype
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    la, sa = a.predict_top_k(X, k=k)
    lb, sb = b.predict_top_k(X, k=k)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(sa, sb)


def assert_same_state(a, b):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert a.classes_.dtype == b.classes_.dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.n_features_in_ == b.n_features_in_
    assert a._multilabel == b._multilabel
    assert a._y_dtype == b._y_dtype
    assert a._sparse_y == b._sparse_y
    assert a.label_hasher_.get_params() == b.label_hasher_.get_params()
    np.testing.assert_array_equal(
        a.label_hasher_.hash_params_, b.label_hasher_.hash_params_
    )
    np.testing.assert_array_equal(a.label_hasher_.buckets_, b.label_hasher_.buckets_)
    assert a.label_hasher_.buckets_.dtype == b.label_hasher_.buckets_.dtype
    assert a.label_hasher_.n_features_in_ == b.label_hasher_.n_features_in_
    assert a.label_hasher_._n_features_out == b.label_hasher_._n_features_out
    assert len(a.networks_) == len(b.networks_)
    for na, nb in zip(a.networks_, b.networks_):
        assert type(na) is type(nb)
        assert not nb.training
        sa, sb = na.state_dict(), nb.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert sa[key].dtype == sb[key].dtype
            assert torch.equal(sa[key], sb[key])
    assert [list(h) for h in a.histories_] == [list(h) for h in b.histories_]


def roundtrip(model, tmp_path):
    path = tmp_path / "model.skmach"
    save_model(model, path)
    return load_model(path), path


def rewrite(raw, manifest_update=None, drop=(), drop_keys=()):
    """A copy of a model file with its manifest edited or entries removed."""
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name in drop:
                continue
            data = src.read(name)
            if name == "manifest.json":
                manifest = json.loads(data)
                manifest.update(manifest_update or {})
                for key in drop_keys:
                    del manifest[key]
                data = json.dumps(manifest).encode()
            dst.writestr(name, data)
    return out.getvalue()


def test_roundtrip_string_labels(string_model, data, tmp_path):
    X, _ = data
    loaded, _ = roundtrip(string_model, tmp_path)
    assert loaded.classes_.dtype.kind == "U"
    assert_same_state(string_model, loaded)
    assert_same_predictions(string_model, loaded, X)
    assert set(loaded.predict(X)) <= set(string_model.classes_)
    # histories come back as skorch History objects, losses included
    losses = string_model.histories_[0][:, "train_loss"]
    assert loaded.histories_[0][:, "train_loss"] == losses


def test_roundtrip_file_object_and_overwrite(string_model, data, model_bytes, tmp_path):
    X, _ = data
    loaded = load_model(io.BytesIO(model_bytes))
    assert_same_predictions(string_model, loaded, X)
    path = tmp_path / "m.skmach"
    path.write_bytes(b"old content")
    save_model(string_model, str(path))  # replaces atomically
    assert path.read_bytes() == model_bytes  # deterministic bytes
    assert [p.name for p in tmp_path.iterdir()] == ["m.skmach"]  # no temp left


def test_object_labels_and_feature_names(data, tmp_path):
    X, y = data
    y_obj = np.array([str(v).upper() for v in y], dtype=object)  # e.g. from pandas
    model = MACHClassifier(**TINY).fit(X, y_obj)
    assert model.classes_.dtype == object
    model.feature_names_in_ = np.array([f"f{i}" for i in range(10)], dtype=object)
    loaded, _ = roundtrip(model, tmp_path)
    assert loaded.classes_.dtype == object
    assert [type(c) for c in loaded.classes_] == [type(c) for c in model.classes_]
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    del model.feature_names_in_, loaded.feature_names_in_
    assert_same_predictions(model, loaded, X)


@pytest.mark.parametrize("sparse_y", [False, True])
def test_roundtrip_multilabel(multilabel_data, sparse_y, tmp_path):
    X, Y = multilabel_data
    if sparse_y:
        Y = sp.csr_matrix(Y)
    model = MACHClassifier(**TINY).fit(X, Y)
    loaded, _ = roundtrip(model, tmp_path)
    assert loaded._multilabel and loaded._sparse_y == sparse_y
    assert_same_state(model, loaded)
    assert_same_predictions(model, loaded, X)
    assert_same_predictions(model, loaded, sp.csr_matrix(X))


@pytest.mark.parametrize("module", [TinyMLP, make_tiny_mlp])
def test_roundtrip_custom_module_and_params(data, module, tmp_path):
    X, y = data
    params = dict(TINY, hidden_layer_sizes=[16], random_state=np.random.RandomState(3))
    model = MACHClassifier(
        **params, module=module, optimizer=torch.optim.SGD, device=torch.device("cpu")
    ).fit(X, y)
    loaded, _ = roundtrip(model, tmp_path)
    assert loaded.module is module
    assert loaded.optimizer is torch.optim.SGD
    assert loaded.hidden_layer_sizes == [16]
    assert loaded.device == torch.device("cpu")
    assert isinstance(loaded.random_state, np.random.RandomState)
    a, b = model.random_state.get_state(), loaded.random_state.get_state()
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0] == b[0] and a[2:] == b[2:]
    loaded.random_state = model.random_state
    assert_same_state(model, loaded)
    assert isinstance(loaded.networks_[0], TinyMLP)
    assert_same_predictions(model, loaded, X)


def test_linear_default_network(data, tmp_path):
    X, y = data
    model = MACHClassifier(**dict(TINY, hidden_layer_sizes=())).fit(X, y)
    loaded, _ = roundtrip(model, tmp_path)
    assert_same_predictions(model, loaded, X)


def test_load_never_unpickles(string_model, data, model_bytes, monkeypatch):
    X, _ = data

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    rng_state = torch.random.get_rng_state()
    loaded = load_model(io.BytesIO(model_bytes))
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # RNG untouched
    monkeypatch.undo()
    assert_same_predictions(string_model, loaded, X)


def test_file_holds_only_json_npy_safetensors(model_bytes):
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        names = zf.namelist()
        assert names[0] == "manifest.json"
        assert set(names) == {
            "manifest.json", "classes.json", "label_hasher/hash_params.npy",
            "networks/0.safetensors", "networks/1.safetensors", "histories.json",
        }
        for name in names:
            data = zf.read(name)
            assert not data.startswith(b"\x80")  # no pickle protocol header
            if name.endswith(".json"):
                json.loads(data)
            elif name.endswith(".npy"):
                assert data.startswith(b"\x93NUMPY")
            else:
                header = int.from_bytes(data[:8], "little")
                json.loads(data[8 : 8 + header])
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "sklearn-mach"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["sklearn_mach_version"] == sklearn_mach.__version__
    kwargs = manifest["networks"][0]["kwargs"]
    assert isinstance(kwargs.pop("feature_seed"), int)
    assert kwargs == {
        "n_features": 10, "n_outputs": 8, "hidden_layer_sizes": [16],
        "sparse_gradient": False, "n_hashed_features": None,
    }


def test_version_mismatch_warns(string_model, data, model_bytes):
    X, _ = data
    raw = rewrite(model_bytes, {"sklearn_mach_version": "0.0.1"})
    with pytest.warns(UserWarning, match=r"0\.0\.1.*" + sklearn_mach.__version__):
        loaded = load_model(io.BytesIO(raw))
    assert_same_predictions(string_model, loaded, X)


def test_newer_format_version_refused(model_bytes):
    raw = rewrite(model_bytes, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="newer"):
        load_model(io.BytesIO(raw))


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.1])
def test_truncated_file(model_bytes, tmp_path, cut):
    path = tmp_path / "cut.skmach"
    path.write_bytes(model_bytes[: int(len(model_bytes) * cut)])
    with pytest.raises(ValueError, match="not a sklearn-mach model file|corrupt"):
        load_model(path)


def test_corrupt_entry(model_bytes):
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        info = zf.getinfo("networks/1.safetensors")
    raw = bytearray(model_bytes)
    pos = info.header_offset + 30 + len(info.filename) + 200  # inside the weights
    raw[pos] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(io.BytesIO(bytes(raw)))


def test_random_bytes_and_other_files(tmp_path):
    path = tmp_path / "noise.skmach"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        load_model(path)
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a sklearn-mach model file"):
        load_model(io.BytesIO(other.getvalue()))
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.skmach")


def test_missing_entries_and_keys(model_bytes):
    raw = rewrite(model_bytes, drop=["networks/1.safetensors"])
    with pytest.raises(ValueError, match=r"networks/1\.safetensors"):
        load_model(io.BytesIO(raw))
    raw = rewrite(model_bytes, drop_keys=["classes", "label_hasher"])
    with pytest.raises(ValueError, match=r"classes.*label_hasher"):
        load_model(io.BytesIO(raw))


def test_mismatched_weights(model_bytes):
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["networks"][0]["kwargs"]["hidden_layer_sizes"] = [16, 4]
    raw = rewrite(model_bytes, {"networks": manifest["networks"]})
    with pytest.raises(ValueError, match="missing keys"):
        load_model(io.BytesIO(raw))


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        save_model(MACHClassifier(), io.BytesIO())


def test_unstorable_references_rejected(data, string_model, tmp_path):
    X, y = data
    path = tmp_path / "bad.skmach"

    def lambda_free_factory(n_features, n_outputs):  # local: not importable
        return TinyMLP(n_features, n_outputs)

    class LocalNet(TinyMLP):
        pass

    for module in (lambda n_features, n_outputs: TinyMLP(n_features, n_outputs),
                   lambda_free_factory, LocalNet):
        model = copy.copy(string_model)
        model.module = module
        with pytest.raises(TypeError, match="not importable"):
            save_model(model, path)
        assert not path.exists()
    # really fitted with a lambda: rejected too
    model = MACHClassifier(
        **dict(TINY, max_epochs=1),
        module=lambda n_features, n_outputs: TinyMLP(n_features, n_outputs),
    )
    model.fit(X, y)
    with pytest.raises(TypeError, match="lambda"):
        save_model(model, path)
    assert not path.exists()


def test_unstorable_labels_rejected(string_model, tmp_path):
    model = copy.copy(string_model)
    model.classes_ = np.empty(5, dtype=object)
    model.classes_[:] = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
    with pytest.raises(TypeError, match="class label"):
        save_model(model, tmp_path / "bad.skmach")
    assert not (tmp_path / "bad.skmach").exists()


def test_not_a_classifier():
    with pytest.raises(TypeError, match="MACHClassifier"):
        save_model(object(), io.BytesIO())


def test_estimator_save_and_load_methods(tmp_path):
    from sklearn.datasets import make_classification

    from sklearn_mach import MACHClassifier

    X, y = make_classification(n_samples=200, n_features=10, n_classes=3,
                               n_informative=5, random_state=0)
    clf = MACHClassifier(n_buckets=8, n_repetitions=2, hidden_layer_sizes=(16,),
                         max_epochs=3, random_state=0).fit(X, y)
    clf.save(tmp_path / "model.skmach")
    loaded = MACHClassifier.load(tmp_path / "model.skmach")
    assert isinstance(loaded, MACHClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_round_trip_with_hashed_features(tmp_path):
    from sklearn.datasets import make_classification

    from sklearn_mach import MACHClassifier

    X, y = make_classification(n_samples=200, n_features=30, n_classes=3,
                               n_informative=5, random_state=0)
    clf = MACHClassifier(n_buckets=8, n_repetitions=2, hidden_layer_sizes=(16,),
                         n_hashed_features=7, max_epochs=3, random_state=0).fit(X, y)
    clf.save(tmp_path / "model.skmach")
    loaded = MACHClassifier.load(tmp_path / "model.skmach")
    assert loaded.networks_[1].input_weight.shape == (7, 16)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_hashed_feature_map_is_rebuilt_not_saved(tmp_path):
    # The feature hash is a function of the network's seed: the saved file
    # holds the weights only, and the loaded model hashes features the same way.
    rng = np.random.RandomState(0)
    X = sp.random(200, 5000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    y = rng.randint(0, 5, 200)
    clf = MACHClassifier(
        n_buckets=4, n_repetitions=2, hidden_layer_sizes=(8,), max_epochs=2,
        n_hashed_features=64, random_state=0,
    ).fit(X, y)
    assert all("feature_rows" not in net.state_dict() for net in clf.networks_)
    clf.save(tmp_path / "model.skmach")
    loaded = MACHClassifier.load(tmp_path / "model.skmach")
    for net, back in zip(clf.networks_, loaded.networks_):
        np.testing.assert_array_equal(net.feature_rows.numpy(), back.feature_rows.numpy())
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
