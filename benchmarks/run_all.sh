#!/usr/bin/env bash
# The runs behind benchmarks/results/ and the docs' Benchmarks page, in order,
# on an otherwise idle machine (2 cores; about two hours). Each writes its
# own table; napkinxc and omikuji come from `pip install -e ".[benchmark]"`.
set -euo pipefail
cd "$(dirname "$0")"
export SKLEARN_MACH_DATA="${SKLEARN_MACH_DATA:-$(cd ../.. && pwd)/shared/data}"

# README command (1): MACHClassifier() against the full network, small K
python bench_accuracy.py --datasets bibtex delicious --output results/accuracy.md

# dataset x method, small K, with the peers
python bench_scale.py --datasets bibtex delicious --methods mach full ovr-lr napkinxc omikuji \
    --timeout 1800 --output results/scale_real.md

# pypi-maskedword, all 1.12M training rows, defaults against the peers
python bench_scale.py --datasets pypi-maskedword --methods mach full napkinxc omikuji \
    --max-test 20000 --timeout 5400 --output results/scale_pypi.md

# synthetic K = 10^4 and 10^5 (200k training rows), defaults against the peers
python bench_scale.py --datasets synthetic-K --k-sweep 10000 100000 --max-train 200000 \
    --n-features 20000 --methods mach full napkinxc omikuji --timeout 3600 \
    --output results/scale_1e5.md

# CPU epoch target (issue 8): where a step goes, and one group against one
# network at a time (results/profile_cpu_after.md, results/cpu_grouping.md);
# results/epoch_cpu_pair.md runs 0.1's bench_scale.py beside this one.
python profile_cpu.py --rows 300000 > results/profile_cpu_after.md
for run in 1 2; do
    python profile_cpu.py --rows 0 --no-profile
    python profile_cpu.py --rows 0 --no-profile --grouped
    python profile_cpu.py --rows 300000 --no-profile --defaults
    python profile_cpu.py --rows 300000 --no-profile --defaults --grouped
done
python bench_scale.py --datasets pypi-maskedword --methods mach-tuned \
    --tuned '{"n_buckets": 512, "n_repetitions": 4, "n_hashed_features": 4096, "batch_size": 256, "lr": 0.01, "aggregation": "mean"}' \
    --max-epochs 1 --max-test 20000 --no-candidates --output /tmp/epoch_cpu_now.md
