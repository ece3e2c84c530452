"""MACH against a full-output network of the same width on the real datasets.

For each dataset: MACHClassifier with its defaults (decoded as fitted, then
with ``aggregation="mean"``, which refits nothing) and the "full" baseline,
the very same training loop and network with one output per class (softmax
for multiclass data, sigmoid for multilabel), same hidden width, epochs,
batch size, optimizer and learning rate.  Prints one table and writes it to
``benchmarks/results/accuracy.md``.

    python benchmarks/bench_accuracy.py --datasets bibtex delicious
    python benchmarks/bench_accuracy.py --datasets pypi-maskedword --max-train 300000 --max-epochs 3

``--max-train`` / ``--max-epochs`` apply to both methods alike.  Data are read
from ``../shared/data`` beside the checkout (or ``$SKLEARN_MACH_DATA``).
"""

import argparse
import shlex
import sys
from pathlib import Path

import torch
from common import (
    DATA_DIR,
    FullNetwork,
    load_dataset,
    model_bytes,
    precision_from_top,
    targets_of,
    timed,
)

from sklearn_mach import MACHClassifier


def run(name, max_train, max_epochs, seed):
    X_train, Y_train, X_test, Y_test = load_dataset(
        name, max_train=max_train, seed=seed
    )
    mach = MACHClassifier(random_state=seed)
    if max_epochs is not None:
        mach.set_params(max_epochs=max_epochs)
    rows = []
    _, fit_s = timed(mach.fit, X_train, targets_of(Y_train))
    (labels, _), pred_s = timed(mach.predict_top_k, X_test, 5)
    rows.append(
        dict(
            dataset=name,
            method=f"MACH B={mach.n_buckets_} R={mach.n_repetitions} {mach.aggregation}",
            **precision_from_top(Y_test, labels),
            fit_s=fit_s,
            predict_s=pred_s,
            model_mb=model_bytes(mach.networks_) / 1e6,
        )
    )
    # the same fitted networks decoded with the MACH paper's mean of
    # probabilities: aggregation only changes decoding
    mach.set_params(aggregation="mean")
    (labels, _), pred_s = timed(mach.predict_top_k, X_test, 5)
    rows.append(
        dict(
            rows[0],
            method=f"MACH B={mach.n_buckets_} R={mach.n_repetitions} mean (same model)",
            **precision_from_top(Y_test, labels),
            fit_s="—",  # no fit: the same networks
            predict_s=pred_s,
        )
    )
    # the same width, epochs, batch size and learning rate as MACH resolved
    full = FullNetwork(
        hidden_layer_sizes=mach.hidden_layer_sizes,
        max_epochs=mach.n_iter_,
        batch_size=mach.batch_size_,
        lr=mach.lr_,
        seed=seed,
    )
    _, fit_s = timed(full.fit, X_train, Y_train)
    (top, _), pred_s = timed(full.predict_top_k, X_test, 5)
    rows.append(
        dict(
            dataset=name,
            method=f"full network K={Y_train.shape[1]}",
            **precision_from_top(Y_test, top),
            fit_s=fit_s,
            predict_s=pred_s,
            model_mb=model_bytes([full.module_]) / 1e6,
        )
    )
    for row in rows:
        row.update(n_train=X_train.shape[0], epochs=mach.n_iter_)
    return rows


def to_markdown(rows):
    cols = [
        "dataset",
        "method",
        "n_train",
        "epochs",
        "P@1",
        "P@3",
        "P@5",
        "fit_s",
        "predict_s",
        "model_mb",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [
            f"{row[c]:.4f}"
            if c.startswith("P@")
            else f"{row[c]:.1f}"
            if isinstance(row[c], float)
            else str(row[c])
            for c in cols
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["bibtex", "delicious"])
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "accuracy.md")
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not DATA_DIR.is_dir():
        raise SystemExit(f"No datasets under {DATA_DIR}; set SKLEARN_MACH_DATA.")
    rows = []
    for name in args.datasets:
        rows += run(name, args.max_train, args.max_epochs, args.seed)
        print(to_markdown(rows[-3:]).split("\n", 2)[-1], flush=True)
    table = to_markdown(rows)
    print()
    print(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    from sklearn_mach import _network
    from sklearn_mach._device import cpu_vendor

    # P@k reproduce exactly on a like CPU only: float32 products are summed
    # in another order by another CPU's kernels (MKL's, or oneDNN's on AMD)
    command = " ".join(
        shlex.quote(a) for a in ["python", "benchmarks/bench_accuracy.py", *argv]
    )
    out.write_text(
        f"Command (from the repository root): `{command}`\n\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, CPU "
        f"{cpu_vendor() or 'unknown'} (linear products through "
        f"{'oneDNN' if _network._ONEDNN_LINEAR else 'BLAS'})\n\n{table}\n"
    )
    print(f"\nsaved to {out}")


if __name__ == "__main__":
    main()
