"""Decoding speed on the CPU against scikit-learn's ``working_memory``.

    python benchmarks/bench_decode_blocks.py > benchmarks/results/decode_blocks.md
    python benchmarks/bench_decode_blocks.py --classes 2000 --queries 500 --rounds 1

Fits ``MACHClassifier(n_buckets=2048, hidden_layer_sizes=(32,))`` (R=8, one
epoch) on ``--classes`` random sparse rows, one per class, then times the
exact ``predict_top_k(k=5)`` on ``--queries`` random rows and
``predict_proba`` on ``--queries // 2 ``, under ``working_memory`` of 16 and
1024 MiB (scikit-learn's default), with the CPU's class-score blocks
capped as shipped (``_decoding._CPU_SCORE_BLOCK_BYTES``) and uncapped (the
code before the cap: blocks as large as ``working_memory`` allows).  The
rounds alternate the four settings; the results are the same in all of
them (checked).
"""

import argparse
import contextlib
import platform
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=15_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import common

    from sklearn_mach import MACHClassifier, __version__, _decoding

    K = args.classes
    X = sp.random(
        K, 1000, density=0.005, format="csr", dtype=np.float32, random_state=0
    )
    clf = MACHClassifier(
        device="cpu",  # the CPU's score blocks, whatever the machine
        n_buckets=2048,
        hidden_layer_sizes=(32,),
        max_epochs=1,
        random_state=0,
    ).fit(X, np.arange(K))
    queries = sp.random(
        args.queries,
        1000,
        density=0.005,
        format="csr",
        dtype=np.float32,
        random_state=1,
    )
    clf.predict_top_k(queries[:10])  # warm-up
    shipped = _decoding._CPU_SCORE_BLOCK_BYTES
    print(
        f"sklearn_mach {__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or 'cpu'}.\n\n"
        f"K={K:,}, B=2048, R=8; exact top-5 of {args.queries:,} queries, "
        f"predict_proba of {args.queries // 2:,}; seconds per call, each round.\n"
    )
    settings = [(wm, cap) for wm in (16, 1024) for cap in (shipped, float("inf"))]
    times = {s: ([], []) for s in settings}
    reference = None
    for _ in range(args.rounds):
        for wm, cap in settings:
            with (
                common.switched(_decoding, "_CPU_SCORE_BLOCK_BYTES", cap),
                sklearn.config_context(working_memory=wm),
            ):
                top, t_top = common.timed(clf.predict_top_k, queries, k=5)
                proba, t_proba = common.timed(
                    clf.predict_proba, queries[: args.queries // 2]
                )
            if reference is None:
                reference = (top, proba)
            assert all(np.array_equal(a, b) for a, b in zip(top, reference[0]))
            assert np.array_equal(proba, reference[1])
            times[wm, cap][0].append(t_top)
            times[wm, cap][1].append(t_proba)
    print("| working_memory | score blocks | top-5 s | predict_proba s |")
    print("|---|---|---|---|")
    for (wm, cap), (top, proba) in times.items():
        label = "capped" if cap == shipped else "uncapped (before)"
        print(
            f"| {wm} MiB | {label} | "
            f"{', '.join(f'{t:.2f}' for t in top)} (mean {np.mean(top):.2f}) | "
            f"{', '.join(f'{t:.2f}' for t in proba)} (mean {np.mean(proba):.2f}) |"
        )
    print("\nThe same labels, scores and probabilities in every setting.")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
