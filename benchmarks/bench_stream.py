"""Streaming: does a ``partial_fit`` call cost the same after thousands of calls?

    python benchmarks/bench_stream.py
    python benchmarks/bench_stream.py --calls 60 --block 20 --rows 1024 --chunks 20 \
        --classes 10000 --buckets 1024 --hidden 256 --features 100000 --long 60

Fits ``MACHClassifier`` by ``--calls`` calls of ``partial_fit``, each on
the next chunk of ``--rows`` rows of ``make_extreme_classification``
(``--features`` sparse features, ``--classes`` classes, power 0.5; the
chunks cycle through ``--chunks`` distinct ones), with ``--repetitions``
networks of one hidden layer of ``--hidden`` units (its input table
capped at 32,768 rows by ``n_hashed_features="auto"``), and prints the mean milliseconds per call of
each block of ``--block`` calls.  A stream's call should cost the same
whatever came before it.  Then it times ``save`` and ``load`` of the
streamed model and gives the file's size and the size of its header
(``load`` reads a header of at most ``MAX_HEADER_BYTES``), and does the
same with ``histories_`` lengthened to ``--long`` epochs per network
(the stream's epochs repeated and numbered on, as a stream of that many
calls records them), without training that long.
"""

import argparse
import io
import struct
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--features", type=int, default=10_000)
    parser.add_argument("--repetitions", type=int, default=8)
    parser.add_argument("--long", type=int, default=30_000)
    args = parser.parse_args(argv)

    import torch
    from skorch.history import History

    import sklearn_mach
    from sklearn_mach import MACHClassifier
    from sklearn_mach._persistence import MAX_HEADER_BYTES
    from sklearn_mach.datasets import make_extreme_classification

    X, y = make_extreme_classification(
        n_samples=args.rows * args.chunks,
        n_classes=args.classes,
        n_features=args.features,
        power=0.5,
        random_state=0,
    )
    print(
        f"sklearn_mach {sklearn_mach.__version__} from "
        f"`{sklearn_mach.__path__[0]}`; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads.\n\n"
        f"{args.calls:,} partial_fit calls of {args.rows} rows each "
        f"({args.chunks} distinct chunks, cycled), K={args.classes:,}, "
        f"R={args.repetitions}, B={args.buckets}, hidden_layer_sizes=({args.hidden},), "
        f"{args.features:,} sparse features.\n"
    )
    clf = MACHClassifier(
        device="cpu",  # its results are the CPU's, whatever the machine
        n_buckets=args.buckets,
        n_repetitions=args.repetitions,
        hidden_layer_sizes=(args.hidden,),
        random_state=0,
    )
    classes = np.arange(args.classes)
    print("| calls | ms per call |\n|---|---|")
    start = time.perf_counter()
    for call in range(args.calls):
        chunk = slice(
            (call % args.chunks) * args.rows, (call % args.chunks + 1) * args.rows
        )
        clf.partial_fit(X[chunk], y[chunk], classes=classes)
        if (call + 1) % args.block == 0:
            now = time.perf_counter()
            first = call + 2 - args.block
            print(
                f"| {first:,}-{call + 1:,} | {(now - start) / args.block * 1e3:.1f} |"
            )
            start = time.perf_counter()

    print()
    for epochs in (args.calls, args.long):
        if epochs != args.calls:
            clf.histories_ = [
                History(dict(h[i % len(h)], epoch=i + 1) for i in range(epochs))
                for h in clf.histories_
            ]
        f = io.BytesIO()
        start = time.perf_counter()
        clf.save(f)
        saved = time.perf_counter() - start
        data = f.getvalue()
        (header,) = struct.unpack("<Q", data[:8])
        f.seek(0)
        start = time.perf_counter()
        loaded = MACHClassifier.load(f)
        loaded_s = time.perf_counter() - start
        assert [h[:, "epoch"] for h in loaded.histories_] == [
            list(range(1, epochs + 1))
        ] * args.repetitions
        print(
            f"{epochs:,} epochs in each of histories_: save {saved:.2f} s, "
            f"load {loaded_s:.2f} s, a file of {len(data):,} bytes, its header "
            f"{header:,} (load reads at most {MAX_HEADER_BYTES:,})."
        )


if __name__ == "__main__":
    main()
