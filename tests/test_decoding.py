"""Decoding: aggregation, exact and candidate top-k, the threshold algorithm."""

import warnings

import numpy as np
import pytest
import torch

import sklearn_mach._decoding as decoding
from sklearn_mach._decoding import (
    Decoder,
    aggregate,
    certified_top_k,
    top_k_exact,
    top_k_of_candidates,
)
from sklearn_mach._hashing import bucket_members


def _problem(n_rows=50, B=64, R=2, K=2000, seed=0, dtype=np.float32):
    rng = np.random.RandomState(seed)
    buckets = rng.randint(0, B, size=(R, K))
    outputs = [
        rng.dirichlet(np.full(B, 0.3), size=n_rows).astype(dtype) for _ in range(R)
    ]
    return buckets, outputs


def _dense(outputs, buckets, aggregation, B):
    return aggregate(
        [torch.from_numpy(o) for o in outputs],
        torch.from_numpy(buckets),
        aggregation,
        B,
    ).numpy()


def _many_classes_model(K, n_rows, rng, B=64, R=2, **params):
    """A linear MACH model of ``K`` classes, one ``partial_fit`` on
    ``n_rows`` random rows of 8 features (most classes unseen)."""
    from sklearn_mach import MACHClassifier

    return MACHClassifier(
        n_buckets=B, n_repetitions=R, hidden_layer_sizes=(), **params
    ).partial_fit(
        rng.randn(n_rows, 8).astype(np.float32),
        rng.randint(0, K, n_rows),
        classes=np.arange(K),
    )


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
def test_aggregate_formulas(aggregation):
    buckets, outputs = _problem(n_rows=4, B=8, R=3, K=20)
    if aggregation == "logit_sum":
        outputs = [np.log(o) for o in outputs]
    total = sum(o[:, b] for o, b in zip(outputs, buckets))
    expected = {
        "mean": total / 3,
        "unbiased": (total / 3 - 1 / 8) * 8 / 7,
        "logit_sum": total,
    }[aggregation]
    np.testing.assert_allclose(
        _dense(outputs, buckets, aggregation, 8), expected, rtol=1e-5
    )


def test_top_k_exact_breaks_ties_as_argmax():
    rng = np.random.RandomState(0)
    for _ in range(100):
        scores = rng.randint(0, 4, size=(7, 30)).astype(np.float32)
        k = rng.randint(1, 30)
        indices, values = top_k_exact(torch.from_numpy(scores), k)
        columns = np.broadcast_to(np.arange(30), scores.shape)
        expected = np.lexsort((columns, -scores), axis=1)[:, :k]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, 1))
        np.testing.assert_array_equal(indices[:, 0], scores.argmax(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_of_candidates(dtype):
    rng = np.random.RandomState(0)
    for _ in range(200):
        n, width, k = 5, rng.randint(1, 25), rng.randint(1, 6)
        candidates = rng.randint(-1, 12, size=(n, width))
        score_of = (rng.randint(-3, 3, size=12) / 2).astype(dtype)
        scores = np.where(
            candidates >= 0, score_of[np.maximum(candidates, 0)], rng.rand(n, width)
        )
        indices, values = top_k_of_candidates(
            candidates, scores.astype(dtype), k, width
        )
        for row in range(n):
            best = sorted(
                set(candidates[row][candidates[row] >= 0]),
                key=lambda c: (-score_of[c], c),
            )[:k]
            assert list(indices[row]) == best + [-1] * (k - len(best))
            np.testing.assert_array_equal(values[row][: len(best)], score_of[best])
            assert np.all(np.isneginf(values[row][len(best) :]))


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
def test_certified_top_k_widens_until_proved(aggregation, monkeypatch):
    # Flat bucket outputs: the best bucket's classes cannot be proved best
    # at once, so the search must take more than one round and stay exact.
    B, K = 64, 2000
    buckets, outputs = _problem(B=B, K=K)
    if aggregation == "logit_sum":
        outputs = [np.log(o) for o in outputs]
    members = [bucket_members(b, B) for b in buckets]
    rounds, dense_rows = [], []
    certify = decoding._certify_round
    monkeypatch.setattr(
        decoding, "_certify_round", lambda *a: rounds.append(a[-3:-2]) or certify(*a)
    )

    def dense_top_k(rows):
        dense_rows.append(len(rows))
        return top_k_exact(
            torch.from_numpy(
                _dense([o[rows] for o in outputs], buckets, aggregation, B)
            ),
            5,
        )

    indices, values = certified_top_k(
        outputs, members, buckets, 5, aggregation, B, dense_top_k
    )
    full = _dense(outputs, buckets, aggregation, B)
    expected_indices, expected_values = top_k_exact(torch.from_numpy(full), 5)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    assert len(rounds) > 1  # widened
    assert sum(dense_rows) < len(full)  # most rows proved without scoring all


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
def test_certified_top_k_gives_up_rows_its_rounds_cannot_prove(
    aggregation, monkeypatch
):
    # Nearly flat outputs (a barely trained model): every round failed, each
    # as dear as all before it, and then every row was scored densely too.
    B, K, R = 2048, 40_000, 8  # rounds at m = 1, 2, ..., 64
    buckets = np.random.RandomState(0).randint(0, B, size=(R, K))
    members = [bucket_members(b, B) for b in buckets]
    rng = np.random.RandomState(1)
    outputs = [
        rng.dirichlet(np.full(B, 500.0), size=40).astype(np.float32) for _ in range(R)
    ]
    for r, out in enumerate(outputs):  # row 0 as a trained model's: class 7
        out[0] = 0.5 / (B - 1)
        out[0, buckets[r, 7]] = 0.5
    if aggregation == "logit_sum":
        outputs = [np.log(o) for o in outputs]
    rounds, dense_rows = [], []
    certify = decoding._certify_round
    monkeypatch.setattr(
        decoding, "_certify_round", lambda *a: rounds.append(a[-3]) or certify(*a)
    )
    full = _dense(outputs, buckets, aggregation, B)

    def dense_top_k(rows):
        dense_rows.extend(rows.tolist())
        return top_k_exact(torch.from_numpy(full[rows]), 5)

    indices, values = certified_top_k(
        outputs, members, buckets, 5, aggregation, B, dense_top_k
    )
    expected_indices, expected_values = top_k_exact(torch.from_numpy(full), 5)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    assert indices[0, 0] == 7
    assert dense_rows == list(range(1, 40))  # the peaked row proved
    assert len(rounds) <= 4  # of 7: the flat rows stop after three


def test_minus_infinite_outputs_decode_without_warnings():
    # -inf - -inf in a row's gap warned "invalid value encountered"
    rng = np.random.RandomState(1)
    R, B, K = 2, 64, 1500
    decoder = Decoder(rng.randint(0, B, size=(R, K)).astype(np.int32), B)
    outputs = [rng.rand(200, B).astype(np.float32) for _ in range(R)]
    outputs[1][20:40] = -np.inf
    tensors = [torch.from_numpy(o) for o in outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indices, values = decoder.top_k(tensors, 5, "mean")
    expected = decoder._dense(tensors, 5, "mean")
    np.testing.assert_array_equal(indices, expected[0])
    np.testing.assert_array_equal(values, expected[1])


def test_rows_without_a_gap_are_not_given_up():
    # no k-th best yet (gap inf) or NaN scores: no pace to judge them by,
    # even where the other rows give a median pace
    gap = np.array([np.inf, np.nan, 5.0, 5.0, 1.0])
    last = np.array([np.inf, 7.0, 5.5, 9.0, 1.5])
    proved = np.zeros(5, dtype=bool)
    hopeless = decoding._hopeless(gap, last, proved, left=3)
    # row 2: 0.5 a round, but the median row's 0.5 too: 5 > 4 * 0.5;
    # row 3: 4 a round; row 4: 1 > 4 * 0.5
    assert hopeless.tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("aggregation", ["mean", "logit_sum"])
def test_certified_top_k_exact_when_bucket_outputs_tie(aggregation):
    # Tied outputs straddling a round's boundary: torch.topk orders ties
    # anew for each k, so a round's best buckets need not extend the last
    # round's.  The search must still score every bucket above its bound.
    B, K, R = 256, 4096, 2
    buckets = np.random.RandomState(0).randint(0, B, size=(R, K))
    members = [bucket_members(b, B) for b in buckets]
    rng = np.random.RandomState(1)
    outputs = []
    for _ in range(R):
        out = rng.rand(400, B).astype(np.float32)
        order = np.argsort(-out, axis=1)
        rank = rng.randint(1, 8, size=400)  # give rank r the output of rank r - 1
        rows = np.arange(400)
        out[rows, order[rows, rank]] = out[rows, order[rows, rank - 1]]
        outputs.append(np.log(out) if aggregation == "logit_sum" else out)
    full = _dense(outputs, buckets, aggregation, B)
    indices, values = certified_top_k(
        outputs,
        members,
        buckets,
        3,
        aggregation,
        B,
        lambda rows: top_k_exact(torch.from_numpy(full[rows]), 3),
    )
    expected_indices, expected_values = top_k_exact(torch.from_numpy(full), 3)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize("m", [1, 4, 64])
def test_decoder_candidates_score_exactly_and_fall_back(m):
    B, K = 64, 2000
    buckets, outputs = _problem(B=B, K=K)
    decoder = Decoder(buckets, B)
    tensors = [torch.from_numpy(o) for o in outputs]
    exact = decoder.top_k(tensors, 5, "mean")
    approx = decoder.top_k(tensors, 5, "mean", n_candidate_buckets=m)
    full = _dense(outputs, buckets, "mean", B)
    # every returned score is the class's exact score
    np.testing.assert_array_equal(np.take_along_axis(full, approx[0], 1), approx[1])
    if m == B:  # every bucket: exactly the exact top-k
        np.testing.assert_array_equal(approx[0], exact[0])
    # a candidate is in one of the m best buckets of some repetition
    tops = [np.argsort(-o, axis=1, kind="stable")[:, :m] for o in outputs]
    for row in range(0, 50, 7):
        for label in approx[0][row]:
            assert any(buckets[r, label] in tops[r][row] for r in range(2))


def test_decoder_members_computed_once_and_not_pickled():
    import pickle

    buckets, _ = _problem(K=300)
    decoder = Decoder(buckets, 64)
    assert decoder.members() is decoder.members()
    assert pickle.loads(pickle.dumps(decoder))._members is None


def test_candidate_decoding_keeps_to_working_memory():
    # n_candidate_buckets scored a whole block of rows at once: about
    # R * m * K / B candidates per row, with their gathers and keys, beyond
    # the working_memory the docstring promises to stay within
    import tracemalloc

    import sklearn

    rng = np.random.RandomState(0)
    clf = _many_classes_model(20_000, 300, rng, random_state=0)
    X = rng.randn(300, 8).astype(np.float32)
    results, peaks = {}, {}
    for working_memory in (16, 1024):
        with sklearn.config_context(working_memory=working_memory):
            tracemalloc.start()
            results[working_memory] = clf.predict_top_k(X, 5, n_candidate_buckets=8)
            peaks[working_memory] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    assert peaks[16] < 16, peaks  # 60 MiB before, a block of 300 rows at once
    for a, b in zip(results[16], results[1024]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("cpu_decoding")
def test_decoding_holds_no_wider_copy_of_the_bucket_table(many_classes):
    # At K = 3e6 and R = 32 the hasher's int32 table is 384 MB; the decoder
    # copied it to int64 (768 MB more, in fit and in predict) and built the
    # members of every bucket as int64 (768 MB more).
    K = 5000
    clf, X = many_classes(K)
    clf.predict_top_k(X[:3], 2)
    decoder = clf._decoder()
    assert decoder.prunes("cpu")  # the threshold algorithm built the members
    assert np.shares_memory(decoder.buckets, clf.label_hasher_.buckets_)
    for indptr, members in decoder.members():
        assert members.dtype == np.int32 and indptr[-1] == K


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
@pytest.mark.parametrize("k", [1, 5, 10, 300])
def test_dense_top_k_by_class_chunks_equals_whole_rows(aggregation, k, monkeypatch):
    # On the CPU the exact top k scores the classes a chunk at a time
    # (whole rows of K scores were 4x slower at K = 3e6); ties between and
    # within chunks must still go to the lower class, and k may exceed a
    # chunk's width.
    B, K = 64, 300
    buckets, outputs = _problem(n_rows=40, B=B, K=K)
    outputs = [np.round(o * 8) / 8 for o in outputs]  # many tied scores
    if aggregation == "logit_sum":
        outputs = [np.log(o + 1) for o in outputs]
    tensors = [torch.from_numpy(o) for o in outputs]
    full = _dense(outputs, buckets, aggregation, B)
    expected = top_k_exact(torch.from_numpy(full), k)
    calls = []
    merge = decoding._merge_chunk
    monkeypatch.setattr(
        decoding,
        "_merge_chunk",
        lambda best, first, s, k: calls.append(s.shape) or merge(best, first, s, k),
    )
    monkeypatch.setattr(decoding, "_CLASS_CHUNK", 7)
    indices, values = Decoder(buckets, B).top_k(tensors, k, aggregation)
    assert {shape[1] for shape in calls} == {7, K % 7}  # chunks were scored
    np.testing.assert_array_equal(indices, expected[0])
    np.testing.assert_array_equal(values, expected[1])


def _cpu_many_classes(K):
    """A linear model of ``K`` classes (mostly unseen), fitted and decoding
    on the CPU whatever the machine, and 30 rows to decode."""
    rng = np.random.RandomState(0)
    clf = _many_classes_model(K, 30, rng, random_state=0, device="cpu")
    return clf, rng.randn(30, 8).astype(np.float32)


def _ranked(clf, X, k):
    """The exact top ``k`` of ``decision_function``: ties to the lower class."""
    full = clf.decision_function(X)
    columns = np.broadcast_to(np.arange(full.shape[1]), full.shape)
    best = np.lexsort((columns, -full), axis=1)[:, :k]
    return clf.classes_[best], np.take_along_axis(full, best, 1).astype(np.float32)


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("k", [1500, 6000])
def test_exact_top_k_skips_rounds_that_cannot_hold_k_candidates(k, monkeypatch):
    # A row is proved only once it has k candidates, and a round that left
    # it fewer gave it no gap, so never gave it up: at K = 2e5 and k = 2e4,
    # eight rounds of ten scored and merged for nothing before the dense
    # scoring.  At K = 20,000 and B = 64 one bucket holds about 312 classes
    # and the last round (m = 8) about K / 4: k = 6000 goes straight to the
    # dense path, k = 1500 starts at the m whose buckets can hold it.
    K = 20_000
    clf, X = _cpu_many_classes(K)
    rounds = []  # per round: its m, and whether every row had k candidates
    certify = decoding._certify_round

    def counted(*args):
        result = certify(*args)
        rounds.append((args[-3], bool((result[1][:, -1] >= 0).all())))
        return result

    monkeypatch.setattr(decoding, "_certify_round", counted)
    labels, scores = clf.predict_top_k(X, k)
    if k > K // 4:
        assert rounds == []
    else:
        assert rounds and all(full for _, full in rounds), rounds
    expected_labels, expected_scores = _ranked(clf, X, k)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(scores, expected_scores)


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("chunk", [1000, 8192])
def test_chunked_top_k_sorts_only_the_k_returned(chunk, monkeypatch):
    # By class chunks, every chunk's best min(k, chunk) were sorted three
    # times (topk, then by class, then by score), and the chunks' lists
    # together once more: up to all K scores a row, at k = 1e5 of K = 1e6.
    # Selected instead, only the k returned are sorted, once.
    import math

    K, k = 20_000, 6000  # chunks of 1000 below k, of 8192 above it
    clf, X = _cpu_many_classes(K)
    expected = _ranked(clf, X, k)
    monkeypatch.setattr(decoding, "_CLASS_CHUNK", chunk)
    monkeypatch.setattr(decoding, "_PRUNING_FACTOR", math.inf)  # dense only
    entries = []  # entries each sort (or sorted topk) orders

    def count(owner, name, size):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            entries.append(size(*args, **kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    for name in ("sort", "argsort"):
        count(np, name, lambda a, *args, **kwargs: np.size(a))
        for owner in (torch, torch.Tensor):
            count(owner, name, lambda t, *args, **kwargs: t.numel())
    count(np, "lexsort", lambda keys, *args, **kwargs: np.size(keys[-1]))

    def topk_sorted(t, k, dim=-1, largest=True, sorted=True, **kwargs):
        return t.numel() // t.shape[dim] * k if sorted else 0

    for owner in (torch, torch.Tensor):
        count(owner, "topk", topk_sorted)
    labels, scores = clf.predict_top_k(X, k)
    assert sum(entries) <= len(X) * k, sum(entries) / (len(X) * k)
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(scores, expected[1])


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("working_memory", [1, 1024])
@pytest.mark.parametrize("k", [6000, 20_000])
def test_large_top_k_holds_about_its_result(k, working_memory, monkeypatch):
    # 100 rows of the top K of K = 10**6 raised numpy's MemoryError at 11
    # GB, for a 1.2 GB result: the rounds' best k so far in float64 and
    # their merges, then every chunk's best k at once and their lexsort,
    # whatever working_memory.  Now the result, its copies into labels,
    # and working_memory.
    import sklearn

    from .tracing import traced_peak

    K = 20_000
    clf, X = _cpu_many_classes(K)
    monkeypatch.setattr(decoding, "_CLASS_CHUNK", 4096)
    # tracemalloc sees numpy's memory, not torch's: the chunks' running
    # best (torch) is checked by its width, k at most, not a chunk's k each
    held = []
    merge = decoding._merge_chunk

    def counted(best, first, scores, k):
        held.append(0 if best is None else best[0].shape[1])
        result = merge(best, first, scores, k)
        held.append(result[0].shape[1])
        return result

    monkeypatch.setattr(decoding, "_merge_chunk", counted)
    with sklearn.config_context(working_memory=working_memory):
        (labels, scores), peak = traced_peak(lambda: clf.predict_top_k(X, k))
    # 2.33 now: predict_top_k's list of decoded indices and scores, their
    # concatenation and the labels taken from it
    assert peak < 3 * (labels.nbytes + scores.nbytes)
    assert held and max(held) <= k, held
    expected_labels, expected_scores = _ranked(clf, X, k)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(scores, expected_scores)


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("multilabel", [False, True])
def test_predictions_by_class_chunks(multilabel, monkeypatch):
    # top-k, predict, decision_function and predict_proba score the classes
    # a chunk at a time on the CPU: the same results as whole rows
    from sklearn_mach import MACHClassifier

    rng = np.random.RandomState(0)
    X = rng.randn(200, 6).astype(np.float32)
    y = rng.rand(200, 40) < 0.05 if multilabel else rng.randint(0, 40, 200)
    clf = MACHClassifier(  # the CPU's decoding: fitted there on any machine
        n_buckets=16, n_repetitions=3, max_epochs=2, random_state=0, device="cpu"
    ).fit(X, y)
    methods = [
        lambda: clf.predict_top_k(X, 4)[0],
        lambda: clf.predict_top_k(X, 4)[1],
        lambda: clf.predict(X),
        lambda: clf.decision_function(X),
        lambda: clf.predict_proba(X),
    ]
    expected = [method() for method in methods]
    chunks = []
    iter_chunks = Decoder._iter_chunks
    monkeypatch.setattr(
        Decoder,
        "_iter_chunks",
        lambda self, *a: chunks.append(1) or iter_chunks(self, *a),
    )
    monkeypatch.setattr(decoding, "_CLASS_CHUNK", 3)
    for method, before in zip(methods, expected):
        chunks.clear()
        np.testing.assert_array_equal(method(), before)
        assert chunks  # the chunked path ran


@pytest.mark.parametrize("chunk", [7, 10**9])
def test_top_k_ranks_nan_first_then_ties_to_the_lower_class(chunk, monkeypatch):
    # NaN scores (from inputs that overflow float32) rank first, as in
    # torch.topk and np.argmax.  Whole rows broke ties among the numbers
    # after them wrongly (the tie count left NaN out), and the chunks'
    # merge ranked NaN last.
    B, K = 8, 40
    buckets, outputs = _problem(n_rows=3, B=B, K=K)
    outputs[0][1, 3] = np.nan  # row 1: the classes of bucket 3 score NaN
    outputs[0][2, :] = np.nan  # row 2: every class
    full = _dense(outputs, buckets, "mean", B)
    n_nan = int(np.isnan(full[1]).sum())
    monkeypatch.setattr(decoding, "_CLASS_CHUNK", chunk)
    tensors = [torch.from_numpy(o) for o in outputs]
    for k in (2, n_nan + 2, K):
        indices, values = Decoder(buckets, B).top_k(tensors, k, "mean")
        for row in range(3):
            ranked = sorted(
                range(K),
                key=lambda c: (not np.isnan(full[row, c]), -full[row, c], c),
            )[:k]
            assert list(indices[row]) == ranked
            np.testing.assert_array_equal(values[row], full[row, ranked])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    "path, k, n_nan",
    [
        ("pruned", 6, 1),
        ("pruned", 80, 3),  # more NaN classes than one bucket holds
        ("chunked", 6, 1),
        ("candidates", 6, 1),  # m = B: every class
        ("few candidates", 6, 1),  # m = 1
    ],
)
def test_every_path_ranks_nan_first_whatever_its_sign(
    dtype, sign, path, k, n_nan, monkeypatch, request
):
    # x86's default NaN (inf - inf, an overflowing input) has its sign bit
    # set.  The candidates' keys ranked it last; the sorted merge (float64
    # scores, and every round of the pruned path) ranked any NaN last, so
    # a pruned row could be "proved" without its NaN classes; so could a
    # row whose NaN buckets topk ordered anew between rounds; the chunks'
    # merge tied +inf with NaN; the best m buckets left NaN ones out.
    B, K = 64, 1500
    buckets, outputs = _problem(n_rows=40, B=B, R=2, K=K, dtype=dtype)
    rng = np.random.RandomState(1)
    for row in range(len(outputs[0])):  # every row: n_nan NaN buckets
        nan = rng.choice(B, n_nan, replace=False)
        outputs[0][row, nan] = np.copysign(np.nan, sign)
    outputs[1][1:3, 9] = np.inf  # rows 1, 2: an infinite one
    full = _dense(outputs, buckets, "mean", B)
    decoder = Decoder(buckets, B)
    tensors = [torch.from_numpy(o) for o in outputs]
    m = None
    if path in ("pruned", "chunked"):  # the CPU's paths, in both test runs
        request.getfixturevalue("cpu_decoding")
    if path == "pruned":
        assert decoder.prunes("cpu")
    elif path == "chunked":
        monkeypatch.setattr(decoding, "_CLASS_CHUNK", 100)
        monkeypatch.setattr(decoding, "pruning_pays", lambda *args, **kw: False)
    else:
        m = B if path == "candidates" else 1
    indices, values = decoder.top_k(tensors, k, "mean", n_candidate_buckets=m)
    for row in range(len(full)):
        ranked = sorted(
            range(K), key=lambda c: (not np.isnan(full[row, c]), -full[row, c], c)
        )[:k]
        if m == 1:  # the best bucket of each repetition: the NaN one in the first
            n_nan_classes = min(k, int(np.isnan(full[row]).sum()))
            assert np.isnan(values[row, :n_nan_classes]).all(), row
            continue
        assert list(indices[row]) == ranked, (row, full[row, ranked])
        np.testing.assert_array_equal(values[row], full[row, ranked])


@pytest.mark.usefixtures("cpu_decoding")
@pytest.mark.parametrize("chunk", [None, 16])
def test_cpu_score_blocks_are_capped_whatever_working_memory(chunk, monkeypatch):
    # under scikit-learn's default 1 GiB working_memory, blocks of (rows, K)
    # scores of 120 MB per repetition made exact top-5 2.3x slower than
    # cache-sized blocks (benchmarks/results/decode_blocks.md); by class
    # chunks (K > _CLASS_CHUNK), blocks of 33 rows at K = 10**6 made
    # multilabel predict hold 1.2 GB of float64 temporaries
    import sklearn

    from sklearn_mach import MACHClassifier

    if chunk is not None:
        monkeypatch.setattr(decoding, "_CLASS_CHUNK", chunk)
    rng = np.random.RandomState(0)
    X = rng.randn(100, 6).astype(np.float32)
    clf = MACHClassifier(  # the CPU's decoding: fitted there on any machine
        n_buckets=16, n_repetitions=3, max_epochs=1, random_state=0, device="cpu"
    ).fit(X, rng.randint(0, 40, 100))
    with sklearn.config_context(working_memory=1024):
        expected = clf.decision_function(X), clf.predict_top_k(X, 4)
        rows = []
        aggregate = decoding.aggregate
        monkeypatch.setattr(
            decoding,
            "aggregate",
            lambda outputs, *a, **k: (
                rows.append(len(outputs[0])) or aggregate(outputs, *a, **k)
            ),
        )
        monkeypatch.setattr(decoding, "_CPU_SCORE_BLOCK_BYTES", 16 * 40 * 7)
        scores = clf.decision_function(X)
        assert rows and max(rows) == 7  # 16 bytes a class and row: 7 rows a block
        # (by chunks, top k sizes its blocks from working_memory: the merge)
        top = clf.predict_top_k(X, 4)
    np.testing.assert_array_equal(scores, expected[0])
    np.testing.assert_array_equal(top[0], expected[1][0])
    np.testing.assert_array_equal(top[1], expected[1][1])


@pytest.mark.parametrize("aggregation", ["mean", "unbiased", "logit_sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_candidates_of_rows_past_the_budget_are_scored_in_slices(
    aggregation, dtype, ties
):
    # A row's candidates (about R * m * K / B) were held at once, whatever
    # working_memory: one row at K = 10**7, m = B, R = 8 raised MemoryError.
    # In slices of a repetition's buckets, the same classes and scores.
    B, K = 32, 3000
    buckets, outputs = _problem(n_rows=8, B=B, R=3, K=K, dtype=dtype)
    buckets[:, buckets[0] == 3] = 4  # bucket 3 of repetition 0 is empty
    if ties:  # many equal bucket outputs: ties broken to the lower class
        outputs = [np.round(o, 1) for o in outputs]
    if aggregation == "logit_sum":
        outputs = [np.log(o + 1e-3).astype(dtype) for o in outputs]
    decoder = Decoder(buckets, B)
    for m in (1, 5, 31):
        for k in (1, 7, 40, K):
            one_pass = decoder._candidate_block(outputs, k, aggregation, m, 2**30)
            for budget in (decoding._CANDIDATE_BYTES * 100, 1):  # 1 bucket a slice
                sliced = decoder._sliced_candidates(outputs, k, aggregation, m, budget)
                np.testing.assert_array_equal(sliced[0], one_pass[0])
                np.testing.assert_array_equal(sliced[1], one_pass[1])


def test_sliced_candidates_of_empty_buckets_only_are_scored_exactly():
    # a row whose selected buckets are all empty: every slice skipped left
    # the running best without columns, and numpy's broadcast error escaped
    buckets = np.array([[0, 1, 2, 3]] * 2)  # 4 classes in buckets 0-3 of 8
    outputs = [
        np.array([[0.1, 0.1, 0.2, 0.1, 0.9, 0.8, 0.0, 0.0]], np.float32)
        for _ in range(2)
    ]
    decoder = Decoder(buckets, 8)
    expected = decoder._candidate_block(outputs, 2, "mean", 2, 2**30)
    sliced = decoder._sliced_candidates(outputs, 2, "mean", 2, 1)
    np.testing.assert_array_equal(sliced[0], expected[0])
    np.testing.assert_array_equal(sliced[1], expected[1])
    np.testing.assert_array_equal(sliced[0], [[2, 0]])  # exact: bucket 2 best


def test_candidates_keep_to_working_memory_even_for_one_row(monkeypatch):
    import tracemalloc

    import sklearn

    B = 64
    rng = np.random.RandomState(0)
    # the CPU's decoding (host memory): fitted there on any machine
    clf = _many_classes_model(40_000, 50, rng, B=B, random_state=0, device="cpu")
    X = rng.randn(4, 8).astype(np.float32)
    with sklearn.config_context(working_memory=1024):
        expected = clf.predict_top_k(X, 5, n_candidate_buckets=48)
        exact = clf.predict_top_k(X, 5)
    with sklearn.config_context(working_memory=1):  # 40,000 candidates: 5 MB a row
        tracemalloc.start()
        top = clf.predict_top_k(X, 5, n_candidate_buckets=48)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        # a large k: each slice's best k merged as found, not held per slice
        tracemalloc.start()
        labels, scores = clf.predict_top_k(X, 30_000, n_candidate_buckets=48)
        large_k_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # every bucket: the exact top k, by the exact path (no candidates)
        monkeypatch.setattr(decoding, "candidate_classes", None)
        every = clf.predict_top_k(X, 5, n_candidate_buckets=B)
    assert peak < 1, peak  # 2.8 MiB before: whole rows of candidates
    # 28 times the result before (39 MiB), k entries per slice held
    assert large_k_peak < 4 * (labels.nbytes + scores.nbytes), large_k_peak
    for a, b, c, d in zip(top, expected, every, exact):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("aggregation", ["mean", "logit_sum"])
def test_predict_proba_holds_one_result_matrix(aggregation):
    # predict_proba's normalisation made two more (n, K) float64 copies: a
    # result the 2 GiB limit allows (250 x 10**6) raised MemoryError
    import tracemalloc

    rng = np.random.RandomState(0)
    clf = _many_classes_model(20_000, 50, rng, aggregation=aggregation)
    X = rng.randn(100, 8).astype(np.float32)
    scores = clf.decision_function(X)
    tracemalloc.start()
    proba = clf.predict_proba(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.2 * proba.nbytes, peak / proba.nbytes
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(proba.argmax(axis=1), scores.argmax(axis=1))


@pytest.mark.parametrize("m", [None, 1, 2])
def test_overflowing_outputs_decode_without_warnings(m):
    # +inf and -inf bucket logits (inputs past float32's range) sum to NaN:
    # silently on the dense (torch) path, with numpy's RuntimeWarning on the
    # candidate and pruned paths, from threads the caller's np.errstate does
    # not reach
    import warnings

    import scipy.sparse as sp

    from sklearn_mach import MACHClassifier

    K, B, R = 40, 8, 2
    X = np.zeros((K, R * B), np.float32)
    X[:, 0] = 1
    Y = sp.csr_matrix((np.ones(K), (np.arange(K), np.arange(K))), shape=(K, K))
    clf = MACHClassifier(
        n_buckets=B, n_repetitions=R, hidden_layer_sizes=(), max_epochs=1,
        random_state=0,
    ).fit(X, Y)  # fmt: skip
    with torch.no_grad():  # network r's logits: its B columns of X, plus a bias
        for r, net in enumerate(clf.networks_):
            weight = torch.zeros_like(net.input_weight)
            weight[r * B + torch.arange(B), torch.arange(B)] = 1
            net.input_weight.copy_(weight)
        clf.networks_[0].input_bias.fill_(3e38)
        clf.networks_[1].input_bias.fill_(-3e38)
    Xt = np.zeros((1, R * B), np.float32)
    Xt[0, 0], Xt[0, B:] = 3e38, -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classes, scores = clf.predict_top_k(Xt, 2, n_candidate_buckets=m)
    assert np.isnan(scores).all()  # NaN ranks first, ties to the lower class
    exact_classes, _ = clf.predict_top_k(Xt, 2)
    np.testing.assert_array_equal(classes, exact_classes)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_overflowing_outputs_give_probabilities_without_warnings(n_classes):
    # every bucket of a repetition at -inf but one no class uses: the binary
    # log-odds subtracted -inf from -inf, and the softmax a row of -inf
    # from itself, with numpy's RuntimeWarning
    import warnings

    from sklearn_mach import MACHClassifier

    B, R = 8, 2
    X = np.zeros((40, R * B), np.float32)
    X[:, 0] = 1
    clf = MACHClassifier(
        n_buckets=B, n_repetitions=R, hidden_layer_sizes=(), max_epochs=1,
        aggregation="logit_sum", random_state=0,
    ).fit(X, np.arange(40) % n_classes)  # fmt: skip
    with torch.no_grad():
        for r, net in enumerate(clf.networks_):
            weight = torch.zeros_like(net.input_weight)
            weight[r * B + torch.arange(B), torch.arange(B)] = 1e38
            net.input_weight.copy_(weight)
            net.input_bias.zero_()
    free = min(set(range(B)) - set(clf.label_hasher_.buckets_[0].tolist()))
    Xt = np.zeros((1, R * B), np.float32)
    Xt[0, :B] = -3.0
    Xt[0, free] = 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("decision_function", "predict_proba", "predict"):
            getattr(clf, method)(Xt)
