"""Near-duplicate decontamination: time per row flat from 100k to 1M rows per cell.

Data: ``--template-share`` (default 90 %) of the prompts are one ~2 kB template
followed by a short row-specific question (so they are all near duplicates of
one another: the worst case for LSH, one huge bucket in every band); the rest
are unique ~300-character texts. Users are drawn from 20,000 ids, 20 % of them
in test.

Measured: the split planner of ``reward_dataset`` (``SplitPlanner.add`` over
32k-row batches + ``finish``: text extraction, normalization, exact dedup,
vectorized MinHash, capped LSH, verification), with data generation excluded.
Baseline, in the same run: the previous implementation (datasketch MinHash,
one signature per text in Python, ``MinHashLSH`` without caps) on ``--baseline-rows``
rows of the same data.

    python3 benchmarks/near_dup_bench.py                 # 100k and 1M, baseline 20k
    python3 benchmarks/near_dup_bench.py --sizes 20000 100000 --baseline-rows 5000
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

import pyarrow as pa

from materializer_assets.lib.dataset.near_duplicates import NearDuplicateConfig, _lsh_params
from materializer_assets.lib.dataset.splits import SplitConfig, SplitPlanner, group_split
from materializer_assets.lib.dataset.text import digest, iter_row_texts

BATCH = 32_768
WORDS = ["".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2 + i % 9)) for i in range(5000)]


def template(size: int = 2048) -> str:
    rng = random.Random(42)
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < size:
        out.append(rng.choice(WORDS))
    return "You are a helpful assistant for ACME. Context:\n" + " ".join(out)


TEMPLATE = template()


def batches(rows: int, share: float, seed: int = 0):
    rng = random.Random(seed)
    made = 0
    while made < rows:
        n = min(BATCH, rows - made)
        prompts = []
        for i in range(n):
            tail = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
            if rng.random() < share:
                prompts.append(f"{TEMPLATE}\nQuestion {made + i}: {tail}?")
            else:
                prompts.append(" ".join(rng.choice(WORDS) for _ in range(50)) + f" {tail} {made + i}")
        yield pa.RecordBatch.from_pydict(
            {
                "trace_id": [f"t{made + i}" for i in range(n)],
                "observation_id": pa.nulls(n, pa.string()),
                "timestamp": pa.array([made + i for i in range(n)], pa.timestamp("us", "UTC")),
                "user_id": [f"u{rng.randrange(20_000)}" for _ in range(n)],
                "prompt": prompts,
                "response": [f"answer {made + i}" for i in range(n)],
            }
        )
        made += n


def run_new(rows: int, share: float, config: SplitConfig) -> tuple[float, dict]:
    planner = SplitPlanner(config)
    spent = 0.0
    for batch in batches(rows, share):
        start = time.perf_counter()
        planner.add(batch)
        spent += time.perf_counter() - start
    start = time.perf_counter()
    plan = planner.finish()
    spent += time.perf_counter() - start
    return spent, plan.stats.as_metadata()



# --- The previous implementation (datasketch, one text at a time), kept here as the baseline. ---
# datasketch is a test/benchmark dependency only: the package's MinHash is lib/dataset/lsh.py.
from typing import Hashable  # noqa: E402

import numpy as np  # noqa: E402
import xxhash  # noqa: E402
from datasketch import MinHash, MinHashLSH  # noqa: E402


class MinHasher:
    """Seeded MinHash signatures of normalized texts, cached by text."""

    def __init__(self, config: NearDuplicateConfig) -> None:
        self.config = config
        self._template = MinHash(num_perm=config.num_perm, seed=config.seed)
        self._cache: dict[bytes, MinHash | None] = {}

    def shingles(self, text: str) -> set[bytes]:
        data = text[: self.config.max_chars].encode("utf-8", "surrogatepass")
        k = self.config.shingle_size
        if len(data) <= k:
            return {data} if data else set()
        return {data[i : i + k] for i in range(len(data) - k + 1)}

    def cached(self, key: bytes) -> MinHash | None:
        """The signature computed earlier for the text whose :func:`~.text.digest` is ``key``."""
        return self._cache[key]

    def signature(self, text: str) -> MinHash | None:
        """The MinHash of a normalized text, or None for an empty text."""
        key = digest(text)
        if key in self._cache:
            return self._cache[key]
        shingles = self.shingles(text)
        if not shingles:
            signature = None
        else:
            signature = MinHash(
                num_perm=self.config.num_perm,
                hashfunc=xxhash.xxh32_intdigest,
                permutations=self._template.permutations,
                scheme=self._template.scheme,
            )
            signature.update_batch(shingles)
        self._cache[key] = signature
        return signature


def similarity(a: MinHash, b: MinHash) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a.hashvalues == b.hashvalues)) / len(a.hashvalues)


class NearDuplicateIndex:
    """Signatures indexed by LSH; :meth:`matches` returns the verified near duplicates."""

    def __init__(self, config: NearDuplicateConfig) -> None:
        self.config = config
        self._lsh = MinHashLSH(num_perm=config.num_perm, params=_lsh_params(config.threshold, config.num_perm))
        self._signatures: dict[Hashable, MinHash] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def add(self, key: Hashable, signature: MinHash | None) -> None:
        if signature is None or key in self._signatures:
            return
        self._lsh.insert(key, signature)
        self._signatures[key] = signature

    def matches(self, signature: MinHash | None) -> list[Hashable]:
        """Keys whose signature is at least ``threshold`` similar, in sorted order."""
        if signature is None or not self._signatures:
            return []
        found = [
            key
            for key in self._lsh.query(signature)
            if similarity(signature, self._signatures[key]) >= self.config.threshold
        ]
        return sorted(found)


def run_old(rows: int, share: float, config: SplitConfig) -> tuple[float, int]:
    """The previous implementation's near-duplicate step (datasketch), with the same text extraction."""
    near = config.near_duplicates
    hasher = MinHasher(near)
    spent, entries = 0.0, []
    for batch in batches(rows, share):
        start = time.perf_counter()
        users = batch.column("user_id").to_pylist()
        for user, texts in zip(users, iter_row_texts(batch)):
            text = texts.dialogue_near[: near.max_chars]
            hasher.signature(text)
            entries.append((group_split(f"user_id:{user}", config) == "test", digest(text)))
        spent += time.perf_counter() - start
    start = time.perf_counter()
    index = NearDuplicateIndex(near)
    for is_test, key in entries:
        if not is_test:
            index.add(key, hasher.cached(key))
    excluded = sum(1 for is_test, key in entries if is_test and index.matches(hasher.cached(key)))
    spent += time.perf_counter() - start
    return spent, excluded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--template-share", type=float, default=0.9)
    args = parser.parse_args()
    config = SplitConfig(test_fraction=0.2, near_duplicates=NearDuplicateConfig())
    print(f"near-duplicate measure: {config.near_duplicates.spec()}, LSH {config.near_duplicates.lsh_params()}")
    print(f"template: {len(TEMPLATE)} chars, shared by {args.template_share:.0%} of prompts")
    if args.baseline_rows:
        old, excluded = run_old(args.baseline_rows, args.template_share, config)
        print(f"baseline (datasketch, old) {args.baseline_rows:>9,} rows: {old:8.2f} s  {old / args.baseline_rows * 1e6:8.1f} µs/row  (test rows excluded: {excluded:,})")
        new, meta = run_new(args.baseline_rows, args.template_share, config)
        print(f"new (vectorized LSH)       {args.baseline_rows:>9,} rows: {new:8.2f} s  {new / args.baseline_rows * 1e6:8.1f} µs/row  (test rows excluded: {meta['rows_excluded_near_duplicate']:,})  speed-up ×{old / new:.1f}")
    per_row = []
    for rows in args.sizes:
        spent, meta = run_new(rows, args.template_share, config)
        per_row.append(spent / rows)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"new (vectorized LSH)       {rows:>9,} rows: {spent:8.2f} s  {spent / rows * 1e6:8.1f} µs/row  "
            f"train {meta['rows_train']:,} test {meta['rows_test']:,} excluded near-dup {meta['rows_excluded_near_duplicate']:,}  "
            f"peak RSS so far {rss:,.0f} MB"
        )
    if len(per_row) >= 2:
        ratio = per_row[-1] / per_row[0]
        verdict = "flat (within ±20 %)" if 0.8 <= ratio <= 1.2 else "NOT flat"
        print(f"time per row {args.sizes[-1]:,} / {args.sizes[0]:,}: {ratio:.2f} → {verdict}")


if __name__ == "__main__":
    main()
