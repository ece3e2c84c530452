"""Text features in float64 or float32: what ``TfidfVectorizer``'s default costs.

    python benchmarks/bench_text_dtype.py > benchmarks/results/text_dtype.md
    python benchmarks/bench_text_dtype.py --rows 2000 --test 500 --epochs 1

``make_pipeline(TfidfVectorizer(dtype=...), MACHClassifier(max_epochs=...))``
on ``--rows`` random training texts of pypi-maskedword (``texts_train.txt``,
``y_train.npy``) and ``--test`` random test texts, with the vectorizer's
default float64 and with ``dtype=np.float32``, alternating over
``--rounds``.  :class:`~sklearn_mach.MACHClassifier` trains and predicts in
the dtype of ``X``, so the first trains float64 networks.  Prints, per
round and dtype, the pipeline's fit time, the time of
``predict_top_k(k=5)`` on the vectorised test texts, the networks'
parameter megabytes, and top-1 and top-5 accuracy.
"""

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def texts_and_labels(split, rows, seed):
    import common

    folder = Path(common.DATA_DIR) / "pypi-maskedword"
    texts = (folder / f"texts_{split}.txt").read_text().splitlines()
    y = np.load(folder / f"y_{split}.npy")
    if len(texts) != len(y):
        raise SystemExit(f"{split}: {len(texts)} texts for {len(y)} labels")
    pick = np.sort(np.random.default_rng(seed).permutation(len(y))[:rows])
    return [texts[i] for i in pick], y[pick]


def run(dtype, train, test, epochs, seed):
    import common
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    from sklearn_mach import MACHClassifier

    pipe = make_pipeline(
        TfidfVectorizer(dtype=dtype),
        MACHClassifier(max_epochs=epochs, random_state=seed),
    )
    _, fit = common.timed(pipe.fit, *train)
    X_test = pipe[0].transform(test[0])
    (labels, _), predict = common.timed(pipe[-1].predict_top_k, X_test, 5)
    networks = pipe[-1].networks_
    mb = common.model_bytes(networks)
    hits = labels == test[1][:, None]
    return {
        "fit s": fit,
        "top-5 s": predict,
        "network dtype": str(next(networks[0].parameters()).dtype),
        "MiB": mb / 2**20,
        "top-1": hits[:, 0].mean(),
        "top-5": hits.any(axis=1).mean(),
    }


def main(argv=None):
    import sklearn_mach

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train = texts_and_labels("train", args.rows, args.seed)
    test = texts_and_labels("test", args.test, args.seed)
    print(
        f"sklearn_mach {sklearn_mach.__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {platform.machine()}.\n\n"
        f"pypi-maskedword texts: {len(train[1]):,} training, {len(test[1]):,} test; "
        f"TfidfVectorizer(dtype=...), MACHClassifier(max_epochs={args.epochs}) "
        "(its other parameters at their defaults).\n"
    )
    dtypes = [np.float64, np.float32]
    columns = ["fit s", "top-5 s", "network dtype", "MiB", "top-1", "top-5"]
    print("| round | X dtype | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for round_ in range(args.rounds):
        for dtype in dtypes if round_ % 2 == 0 else dtypes[::-1]:
            result = run(dtype, train, test, args.epochs, args.seed)
            cells = [
                f"{v:.3f}" if isinstance(v, float) else str(v)
                for v in (result[c] for c in columns)
            ]
            print(
                f"| {round_ + 1} | {np.dtype(dtype).name} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
