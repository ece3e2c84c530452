"""Smoke tests of the benchmark scripts (tiny synthetic data, on the CPU or a GPU)."""

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_gpu(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_gpu

    return bench_gpu


def test_bench_gpu_runs_on_a_subset(bench_gpu, tmp_path, capsys):
    output = tmp_path / "results" / "gpu.md"  # a folder made first
    bench_gpu.main(
        [
            "--dataset",
            "synthetic-200",
            "--max-train",
            "1500",
            "--max-test",
            "300",
            "--repetitions",
            "1",
            "2",
            "--n-buckets",
            "32",
            "--output",
            str(output),
        ]
    )
    text = output.read_text()
    for row in ("MACH R=1", "MACH R=2", "full network, 200 outputs", "queries/s"):
        assert row in text
    assert "top-1" in capsys.readouterr().out
    assert sys.modules["bench_gpu"] is bench_gpu


def test_bench_gpu_gives_back_the_tf32_setting(bench_gpu, monkeypatch):
    # its rows set torch's global tf32 switch; a fit that failed left it
    # changed for the rest of the process (a test worker's later tests)
    def fails(*args, **kwargs):
        raise RuntimeError("a failed fit")

    monkeypatch.setattr(bench_gpu, "timed_fit", fails)
    shipped = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with pytest.raises(RuntimeError, match="a failed fit"):
            bench_gpu.main(
                ["--dataset", "synthetic-50", "--max-train", "200"]
                + ["--max-test", "50", "--repetitions", "1"]
            )
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = shipped


def test_bench_gpu_names_an_epoch_lost_in_the_noise(bench_gpu, monkeypatch, capsys):
    # an epoch is a 3-epoch fit less a 1-epoch one, halved: on a tiny subset
    # the difference can be negative, and was printed as a negative epoch
    seconds = {1: 2.0, 3: 1.8}  # R=1: the 3-epoch fit ran faster
    monkeypatch.setattr(
        bench_gpu,
        "timed_fit",
        lambda make, X, y, device, epochs: (None, seconds[epochs], float("nan")),
    )
    bench_gpu.main(
        ["--dataset", "synthetic-50", "--max-train", "200", "--max-test", "50"]
        + ["--repetitions", "1", "2", "--skip-full", "--skip-defaults"]
    )
    out = capsys.readouterr().out
    assert "| MACH R=1 | fp32 | 2.00 | n/a (3 epochs took 1.80 s) |" in out
    assert "-0.10" not in out and "| MACH R=2 |" in out


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--no-profile", "--grouped", "--defaults"],
        ["--no-profile", "--n-jobs", "2", "--backend", "threading"],
        ["--no-profile", "--torch-loss"],
        ["--no-profile", "--linear", "onednn"],
        ["--no-profile", "--linear", "blas"],
    ],
)
def test_profile_cpu_runs_on_a_subset(options, monkeypatch, capsys):
    from sklearn_mach import _classifier, _network, _training

    if "onednn" in options and _network._LINEAR_OP is None:
        pytest.skip("this torch has no oneDNN linear")
    shipped_products = _network._ONEDNN_LINEAR

    shipped = _network.BucketLoss._CUT_DEVICES
    # a copy, restored after the test even if profile_cpu leaks a change
    grouped_devices = set(_training._GROUPED_DEVICES)
    monkeypatch.setattr(_training, "_GROUPED_DEVICES", set(grouped_devices))
    paths = []  # the `grouped` argument of each fit's grouping

    def spy(n_repetitions, grouped, *args, **kwargs):
        paths.append(grouped)
        return group_repetitions(n_repetitions, grouped, *args, **kwargs)

    group_repetitions = _classifier.group_repetitions
    monkeypatch.setattr(_classifier, "group_repetitions", spy)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_cpu

    profile_cpu.main(
        ["--dataset", "synthetic-100", "--rows", "2000", "--top", "5", *options]
    )
    out = capsys.readouterr().out
    assert "ms per network step" in out and "2,000 rows" in out
    if not options:
        assert out.count("| `") == 5 and "| all operators |" in out
    else:
        assert "| operator |" not in out
    # both fits (warm-up and timed) on the path asked for (or forced by
    # SKLEARN_MACH_TEST_GROUPED), and the grouped devices restored after
    assert paths == ["--grouped" in options or "cpu" in grouped_devices] * 2
    assert _training._GROUPED_DEVICES == grouped_devices
    if "--grouped" in options:
        assert "(grouped)" in out
    if "--n-jobs" in options:
        assert "'n_jobs': 2" in out
    if "--torch-loss" in options:
        assert "(F.cross_entropy)" in out
        assert _network.BucketLoss._CUT_DEVICES is shipped  # restored after the fit
    if "--linear" in options:
        kind = {"onednn": "oneDNN", "blas": "BLAS"}[options[-1]]
        assert f"({kind} products)" in out
    assert _network._ONEDNN_LINEAR is shipped_products


def test_profile_cpu_refuses_linear_with_worker_processes(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_cpu

    with pytest.raises(SystemExit):
        profile_cpu.main(["--linear", "blas", "--n-jobs", "2", "--backend", "loky"])
    assert "--linear applies in this process only" in capsys.readouterr().err


def test_bench_linear_cpu_runs(monkeypatch, capsys):
    from sklearn_mach import _network

    if _network._LINEAR_OP is None:
        pytest.skip("this torch has no oneDNN linear")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_linear_cpu

    bench_linear_cpu.main(["--shapes", "8x4x16", "--rounds", "2", "--repeats", "3"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 8x4x16")]
    assert [r.split(" | ")[1] for r in rows] == ["BLAS (torch.mm)", "oneDNN"]
    # float32 products of 4 terms: within a few units in the last place
    assert all(float(r.split(" | ")[-1].rstrip(" |")) < 1e-5 for r in rows)


def test_bench_sketch_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_sketch

    bench_sketch.main(["--classes", "50", "5000", "--rows", "100", "--rounds", "1"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r[:3] in ("| 5", "| 50")]
    # 5 labels a row: the entries, whatever K
    assert [r.split(" | ")[:2] for r in rows] == [["| 50", "100"], ["| 5,000", "100"]]
    assert [r.split(" | ")[-1].rstrip(" |") for r in rows] == ["entries", "entries"]
    bench_sketch.main(
        ["--classes", "50", "--rows", "100", "--labels", "40", "--buckets", "8"]
    )
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 50")]
    # 40 labels a row in 8 buckets, 4,000 non-zeros for 50 classes: the product
    assert rows[0].endswith("| product |")


def test_bench_decode_memory_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_decode_memory

    bench_decode_memory.main(
        ["--classes", "3000", "--repetitions", "2", "--buckets", "64", "--rows", "100"]
    )
    out = capsys.readouterr().out
    assert "K=3,000 (int labels), R=2, B=64" in out
    steps = ("partial_fit", "partial_fit again, 256 rows", "predict, 50 rows")
    for step in steps + ("dense top-5 alone, 50 rows", "save", "load"):
        assert f"| {step} |" in out


def test_bench_large_k_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_large_k

    output = tmp_path / "large_k.md"
    bench_large_k.main(
        ["--cases", "3000,64,5,20", "3000,64,1000,20,1", "--output", str(output)]
    )
    rows = [r for r in output.read_text().splitlines() if r.startswith("| 3000 |")]
    assert len(rows) == 2 and not any("failed" in r for r in rows), rows
    assert rows[1].startswith("| 3000 | 64 | 1000 | 20 | 1 |")


def test_bench_load_memory_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_load_memory

    bench_load_memory.main(["--features", "2000", "--repetitions", "2"])
    out = capsys.readouterr().out
    assert "R=2, 2,000 features; model" in out
    assert "| save |" in out and "| load |" in out
    bench_load_memory.main(
        [
            "--features",
            "2000",
            "--repetitions",
            "2",
            "--hashed-features",
            "64",
            "--fresh-process",
        ]
    )
    out = capsys.readouterr().out
    assert "| load, fresh process |" in out
    # 2 maps of 2,000 int32 rows
    assert "hashed into 64 rows: feature maps 0 MiB (torch.int32)" in out


def test_bench_pruning_runs_on_a_subset(monkeypatch, capsys):
    from sklearn_mach import _decoding

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    shipped = _decoding._PRUNING_FACTOR
    import bench_pruning

    bench_pruning.main(
        ["--classes", "3000", "--rows", "3000", "--queries", "100"]
        + ["--buckets", "64", "--repetitions", "2", "--epochs", "1", "--rounds", "1"]
    )
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| factor 4 (shipped)",
        "| factor 4, no row given up",
        "| factor 16",
        "| factor 64",
        "| dense",
    ]
    assert all(" | yes | " in r for r in rows[1:])  # exact: the same top-5
    assert _decoding._PRUNING_FACTOR == shipped == 4 and _decoding._GIVE_UP


def test_bench_subnormal_runs_on_a_subset(monkeypatch, capsys):
    from sklearn_mach._optim import LazyAdam

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    shipped = LazyAdam._FLUSH_DEVICES
    import bench_subnormal

    bench_subnormal.main(
        ["--dataset", "synthetic-100", "--rows", "2000", "--rounds", "1"]
    )
    out = capsys.readouterr().out
    assert "| `x * 0.9` |" in out and "2,000 rows of synthetic-100" in out
    assert out.count("| on (shipped) |") == out.count("| off |") == 2
    assert out.count(" | yes |") == 4  # every fit has the flushed fit's weights
    assert LazyAdam._FLUSH_DEVICES is shipped  # the "off" runs restore it


def test_bench_loss_runs_on_a_subset(monkeypatch, capsys):
    from sklearn_mach import _network

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    shipped = _network.BucketLoss._CUT_DEVICES
    import bench_loss

    bench_loss.main(["--dataset", "synthetic-100", "--rows", "2000", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "| 2,000 | 1 | shipped | 256, 256, 0.01 |" in out
    assert "| 2,000 | 1 | torch | 256, 256, 0.01 |" in out
    assert _network.BucketLoss._CUT_DEVICES is shipped  # "torch" fits restore it
    # the swap reaches the loss: its autograd graph holds torch's NLL
    monkeypatch.setattr(_network.BucketLoss, "_CUT_DEVICES", {"cpu"})
    for loss, node in [("torch", "NllLossBackward"), ("shipped", "_CrossEntropy")]:
        with bench_loss.training_loss(loss):
            value = _network.BucketLoss()(
                torch.zeros(2, 3, requires_grad=True),
                torch.tensor([[0, 1]]),
                torch.ones(2),
            )
        names, todo = set(), [value.grad_fn]
        while todo:
            fn = todo.pop()
            names.add(type(fn).__name__)
            todo.extend(f for f, _ in fn.next_functions if f is not None)
        assert any(name.startswith(node) for name in names), names


def test_floor_cpu_runs_on_a_subset(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import floor_cpu

    args = ["--dataset", "synthetic-100", "--rows", "2000", "--rounds", "1"]
    floor_cpu.main(args)
    out = capsys.readouterr().out
    for run in ("fit", "library step", "hand-written step", "matrix products only"):
        assert f"| {run} |" in out
    assert "equal fit's: yes" in out and "(within rtol 0.001)" in out
    # the agreement is checked, not assumed: the sums' order differs
    with pytest.raises(SystemExit, match="does not compute the library's update"):
        floor_cpu.main(args + ["--rtol", "0"])


def test_bench_table_gradient_runs_on_a_subset(monkeypatch, capsys):
    from sklearn_mach import MACHNetwork

    shipped = MACHNetwork._ROW_SUM_DEVICES
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_table_gradient

    bench_table_gradient.main(
        ["--dataset", "synthetic-100", "--rows", "2000", "--rounds", "2"]
    )
    out = capsys.readouterr().out
    for way in ("one row per non-zero", "summed by row"):
        assert f"| {way} |" in out
    assert "(within rtol 0.001)" in out
    assert MACHNetwork._ROW_SUM_DEVICES is shipped


def test_bench_float16_runs_on_a_subset(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_float16

    # the documented command named a folder missing where it ran: the
    # hour-long run failed at its last line
    output = tmp_path / "results" / "float16.md"
    bench_float16.main(
        ["--dataset", "synthetic-50", "--max-train", "600", "--max-test", "200"]
        + ["--n-features", "300", "--output", str(output)]
    )
    text = output.read_text()
    assert "600 rows of synthetic-50" in text and "200 test queries" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[:3:2] for row in rows] == [
        [f"| {dtype}", aggregation]
        for dtype in ("float32", "float16", "bfloat16")
        for aggregation in ("logit_sum", "mean")
    ]
    # float32 is the reference: nothing changed against itself
    assert rows[0].endswith("| 0 | 0 |") and rows[1].endswith("| 0 | 0 |")
    sizes = [float(row.split(" | ")[1]) for row in rows]
    assert sizes[2] < 0.6 * sizes[0] and sizes[4] < 0.6 * sizes[0]


def test_bench_text_dtype_runs_on_a_subset(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_text_dtype
    import common

    if not (common.DATA_DIR / "pypi-maskedword" / "texts_train.txt").is_file():
        pytest.skip(f"no pypi-maskedword texts under {common.DATA_DIR}")
    bench_text_dtype.main(["--rows", "300", "--test", "50", "--epochs", "1"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 1 |")]
    # each X dtype trains networks of its own dtype, float64 twice the size
    assert [r.split(" | ")[1:5:3] for r in rows] == [
        ["float64", "torch.float64"],
        ["float32", "torch.float32"],
    ]
    sizes = [float(r.split(" | ")[5]) for r in rows]
    assert sizes[0] == pytest.approx(2 * sizes[1], abs=0.002)  # printed to 3 places


def test_bench_accuracy_runs_on_a_subset(monkeypatch, tmp_path, capsys):
    # README command (1)'s script, on 600 bibtex rows and one epoch
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_accuracy

    if not (bench_accuracy.DATA_DIR / "bibtex").is_dir():
        pytest.skip(f"no bibtex under {bench_accuracy.DATA_DIR}")
    output = tmp_path / "accuracy.md"
    bench_accuracy.main(
        [
            "--datasets",
            "bibtex",
            "--max-train",
            "600",
            "--max-epochs",
            "1",
            "--output",
            str(output),
        ]
    )
    text = output.read_text()
    for row in ("MACH B=", "mean (same model)", "full network K=159"):
        assert row in text
    assert "| P@1 | P@3 | P@5 |" in text
    assert "bench_accuracy.py --datasets bibtex --max-train 600 --max-epochs 1" in text


def test_profile_gpu_runs_on_a_subset(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_gpu

    profile_gpu.main(
        ["--dataset", "synthetic-200", "--rows", "1500", "--profile-rows", "1100"]
        + ["--repetitions", "1", "2"]
    )
    out = capsys.readouterr().out
    assert "1,500 rows" in out and "| 1 |" in out and "| 2 |" in out
    assert "| R | epoch s (wall) |" in out  # all R networks, not network 0's dur
    assert "### cProfile, R=2" in out and "### torch.profiler, R=2" in out
    assert "R=1:" not in out  # one network: no profile


def test_bench_scale_runs_on_a_subset(monkeypatch, tmp_path):
    # the script behind the peers' tables: children per (dataset, method)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_scale

    output = tmp_path / "scale.md"
    bench_scale.main(
        ["bench_scale.py", "--datasets", "synthetic-200", "--methods", "mach", "full"]
        + ["--max-train", "1500", "--max-test", "300", "--max-epochs", "1"]
        + ["--n-features", "2000", "--no-candidates", "--output", str(output)]
    )
    rows = [r for r in output.read_text().splitlines() if r.startswith("| synth")]
    assert [r.split(" | ")[4] for r in rows[:2]] == ["mach", "full"]
    assert all(r.endswith("| ok |") for r in rows[:2])


def test_sweep_defaults_runs_resumes_and_renders(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import json

    import sweep_defaults

    output = tmp_path / "sweep.jsonl"
    args = ["--dataset", "synthetic-200", "--max-train", "1500", "--max-test"]
    args += ["300", "--epochs", "2", "--eval-repetitions", "1", "2", "--output"]
    args += [str(output), "--base"]
    args += ['{"n_buckets": 32, "n_repetitions": 2, "hidden_layer_sizes": [16]}']
    args += ["--grid", "{}", '{"lr": 0.003}']
    sweep_defaults.main(args)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    # 2 configurations x 2 epochs x R in (1, 2) x 2 aggregations
    assert len(lines) == 16
    assert {row["epoch"] for row in lines} == {1, 2}
    sweep_defaults.main(args)  # resumed: both configurations are done
    assert len(output.read_text().splitlines()) == 16
    capsys.readouterr()
    sweep_defaults.main(["--render", str(output)])
    table = capsys.readouterr().out
    # last epoch: 2 configurations x R in (1, 2); every epoch at R=2: 2 x 2
    assert table.count("| hidden_layer_sizes=[16]") == 8
    sweep_defaults.main(["--render-scale", str(output)])
    assert "mach-sweep" in capsys.readouterr().out


# torch's own compile machinery imports deprecated torch.jit decorators
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_compile_floor_cpu_runs_on_a_subset(monkeypatch, tmp_path, capsys):
    import shutil

    from torch._inductor import config as inductor_config

    compilers = inductor_config.cpp.cxx
    if isinstance(compilers, str):
        compilers = [compilers]
    if not any(shutil.which(c) for c in compilers if c):
        pytest.skip(f"no C++ compiler for inductor among {compilers}")
    # a fresh cache: the compile is cold and leaves nothing in the user's cache
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import compile_floor_cpu

    args = ["--dataset", "synthetic-100", "--rows", "3000", "--rounds", "1"]
    compile_floor_cpu.main(args)
    out = capsys.readouterr().out
    assert "3,000 rows of synthetic-100: its 11 full batches (of 12)" in out
    assert "a cold compile" in out and "0 hits, 4 misses" in out
    for step in ("hand-written step, eager", "compiled step (inductor)"):
        assert f"| {step} |" in out
    # the four pieces, compiled once each: the table's rows are dynamic
    assert out.count("4 graphs compiled (0 recompilations, 0 graph breaks)") == 2
    assert "(within rtol 0.001)" in out
    assert any((tmp_path / "inductor").iterdir())
    assert "pieces compiled for the sizes they see" in out
    # the agreement is checked, not assumed: the sums' order differs (here
    # with the pieces compiled for any sizes)
    with pytest.raises(SystemExit, match="does not compute the hand-written"):
        compile_floor_cpu.main(args + ["--rtol", "0", "--dynamic"])
    out = capsys.readouterr().out
    assert "not empty: warm" in out
    assert "pieces compiled for any sizes (dynamic=True)" in out


def test_bench_stream_runs_on_a_subset(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_stream

    bench_stream.main(
        ["--calls", "6", "--block", "3", "--rows", "16", "--chunks", "2"]
        + ["--classes", "40", "--buckets", "8", "--repetitions", "2", "--long", "10"]
    )
    out = capsys.readouterr().out
    assert "6 partial_fit calls of 16 rows each" in out
    blocks = [r.split(" | ")[0] for r in out.splitlines() if r[:3] in ("| 1", "| 4")]
    assert blocks == ["| 1-3", "| 4-6"]
    assert "6 epochs in each of histories_: save" in out
    assert "10 epochs in each of histories_: save" in out


@pytest.mark.parametrize("multilabel", [False, True])
def test_sweep_scores_as_the_library_ranks(monkeypatch, multilabel):
    # The sweep took log(sigmoid) for multilabel logit_sum, where the
    # library sums raw logits: another ranking than predict_top_k's.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import numpy as np
    import scipy.sparse as sp
    import sweep_defaults

    from sklearn_mach import MACHClassifier

    rng = np.random.RandomState(0)
    X = sp.random(600, 50, density=0.2, format="csr", random_state=0, dtype=np.float32)
    y = rng.rand(600, 40) < 0.08 if multilabel else rng.randint(0, 40, 600)
    for aggregation in ("mean", "logit_sum"):
        clf = MACHClassifier(
            n_buckets=16,
            n_repetitions=3,
            hidden_layer_sizes=(16,),
            max_epochs=3,
            aggregation=aggregation,
            random_state=0,
        ).fit(X, y)
        logits = sweep_defaults.bucket_logits(clf.networks_, X)
        buckets = clf.label_hasher_.buckets_
        total = sum(
            sweep_defaults._bucket_scores(z, aggregation, multilabel)[:, b].numpy()
            for z, b in zip(logits, buckets)
        )
        # the library's scores: the same sums, "mean" divided by R
        scale = 3 if aggregation == "mean" else 1
        np.testing.assert_allclose(
            clf.decision_function(X) * scale, total, rtol=1e-5, atol=1e-5
        )


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures Linux's VmHWM"
)
def test_bench_load_xc_runs_on_a_subset(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_load_xc

    repository = Path(__file__).resolve().parents[1]
    bench_load_xc.main(
        ["--synthetic", "500", "--rounds", "1", "--other", str(repository)]
    )
    out = capsys.readouterr().out
    assert "500 random rows: 500 lines" in out
    rows = [r for r in out.splitlines() if r.startswith("| 1 |")]
    assert len(rows) == 2 and all(f"(`{repository}`)" in r for r in rows)


def test_bench_decode_blocks_runs(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_decode_blocks

    from sklearn_mach import _decoding

    shipped = _decoding._CPU_SCORE_BLOCK_BYTES
    bench_decode_blocks.main(["--classes", "500", "--queries", "200", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "K=500, B=2048, R=8" in out
    for row in ("| 16 MiB | capped |", "| 1024 MiB | uncapped (before) |"):
        assert row in out
    assert _decoding._CPU_SCORE_BLOCK_BYTES == shipped  # restored
