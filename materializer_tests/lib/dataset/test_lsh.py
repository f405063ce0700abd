"""The vectorized MinHash/LSH, the signature store and the cross-cell near-duplicate rule of the split planner."""

from __future__ import annotations

import gc
import random
import weakref

import numpy as np
import pyarrow as pa
import pytest

from materializer_assets.lib.dataset.lsh import LshIndex, LshParams, agreement_needed, band_hashes, low_bits, signatures, similarity
from materializer_assets.lib.dataset.near_duplicates import NearDuplicateConfig, SignatureStore
from materializer_assets.lib.dataset.spill import concat_draining
from materializer_assets.lib.dataset.splits import SplitConfig, assign_splits, plan_splits

from .builders import table, trace
from .test_splits import QUESTIONS, UNRELATED, jaccard, splits_of, users

PARAMS = NearDuplicateConfig().lsh_params()


def shingles(text: str, k: int = 5) -> set[bytes]:
    data = text.encode()
    return {data[i : i + k] for i in range(len(data) - k + 1)}


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))) for _ in range(n)]


def test_signatures_are_deterministic_and_estimate_jaccard():
    base = words(400, 1)
    texts = [" ".join(base), " ".join(base[:300] + words(100, 2)), " ".join(words(400, 3)), "", "hey"]
    sig, has = signatures(texts, PARAMS)
    again, _ = signatures(list(reversed(texts)), PARAMS)
    assert (sig == again[::-1]).all() and has.tolist() == [True, True, True, False, True]
    a, b, c = (shingles(t) for t in texts[:3])
    assert abs(similarity(sig[0], sig[1]) - len(a & b) / len(a | b)) < 0.12
    assert similarity(sig[0], sig[2]) < 0.2
    # a text shorter than the shingle is one shingle: equal only to itself
    short, _ = signatures(["hey", "hey", "hex"], PARAMS)
    assert similarity(short[0], short[1]) == 1.0 and similarity(short[0], short[2]) < 0.2


def test_signatures_stay_bit_for_bit_what_persisted_indexes_hold():
    """Cells persist their train signatures and later cells compare against them: an optimization
    of :func:`signatures` must give the same bits (these digests were taken from the first release)."""
    import hashlib

    rng = random.Random(7)
    alphabet = "abcdefghij klmnopé€😀\n"
    texts = ["", "hey", "a", "αβγδεζ"] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 600))) for _ in range(200)]
    expected = {
        LshParams(): "e8dfbf0f028a49250ae3aa6ae35edbca0df07a08dbc753bb5d4218aa0284f20f",
        LshParams(num_perm=16, bands=4, rows=4, shingle_size=8): "d78f0dd5f75be5d3b0b8eac985a4945a8290152928434dc556c2bf187d9bfbce",
    }
    for params, digest in expected.items():
        sig, has = signatures(texts, params)
        assert hashlib.sha256(sig.tobytes() + has.tobytes()).hexdigest() == digest, params
        # and the same through a sliced Arrow array (offsets not starting at zero)
        sliced, _ = signatures(pa.array(["x" * 50, *texts], pa.large_string()).slice(1), params)
        assert (sliced == sig).all()


def test_lsh_finds_the_near_duplicate_and_ignores_the_unrelated():
    texts = [" ".join(words(60, i)) for i in range(200)]
    edited = [t[:-6] + "zzzzzz" for t in texts[:100]] + [" ".join(words(60, 1000 + i)) for i in range(100)]
    ref_sig, _ = signatures(texts, PARAMS)
    q_sig, _ = signatures(edited, PARAMS)
    found = LshIndex(ref_sig, band_hashes(ref_sig, PARAMS), PARAMS).match(q_sig, band_hashes(q_sig, PARAMS), 0.7)
    assert (found[:100] == np.arange(100)).all()
    assert (found[100:] == -1).all()


def test_a_huge_template_bucket_is_capped_and_still_matches():
    template = " ".join(words(350, 7))  # ~2 kB shared by every reference row
    refs = [f"{template} case {i} {' '.join(words(3, 50 + i))}" for i in range(3000)]
    queries = [f"{template} case {i} {' '.join(words(3, 9000 + i))}" for i in range(500)] + [" ".join(words(300, 5))]
    params = LshParams(num_perm=PARAMS.num_perm, bands=PARAMS.bands, rows=PARAMS.rows, cap=4)
    ref_sig, _ = signatures(refs, params)
    q_sig, _ = signatures(queries, params)
    index = LshIndex(ref_sig, band_hashes(ref_sig, params), params)
    assert all(len(members) <= 4 * len(np.unique(keys)) for keys, members in map(index._buckets, range(params.bands)))
    found = index.match(q_sig, band_hashes(q_sig, params), 0.7)
    assert (found[:500] >= 0).all() and found[500] == -1


def _cell(prefix: str, train_users: list[str], test_users: list[str], prompts: list[str], split_for_prompt: str, unrelated: list[str]) -> list:
    who = train_users if split_for_prompt == "train" else test_users
    rows = [trace(f"{prefix}-near-{i}", user=who[i], prompt=p) for i, p in enumerate(prompts)]
    other = test_users if split_for_prompt == "train" else train_users
    rows += [trace(f"{prefix}-other-{i}", user=other[i], prompt=q) for i, q in enumerate(unrelated)]
    return rows


def test_cross_cell_reference_in_both_orders():
    config = SplitConfig(test_fraction=0.5)
    train_users, test_users = users("train", 30, config), users("test", 30, config)
    pairs = [(q, q.replace("?", " today?").replace(".", " now.")) for q in QUESTIONS]
    pairs = [(a, b) for a, b in pairs if jaccard(a, b) >= 0.85]
    originals, edited = [a for a, _ in pairs], [b for _, b in pairs]
    assert len(pairs) >= 10
    day_train = table(_cell("a", train_users, test_users, originals, "train", UNRELATED[:2]))
    day_test = table(_cell("b", train_users[15:], test_users[15:], edited, "test", UNRELATED[2:]))

    # order 1: the train day first, then the test day: the test rows are excluded
    first = plan_splits([day_train], config)
    out, stats = assign_splits(day_test, config, reference=first.published)
    got = splits_of(out)
    assert all(got[f"b-near-{i}"] == ("excluded", "near_duplicate_of_train") for i in range(len(pairs)))
    assert stats.excluded_near_duplicate == stats.excluded_near_duplicate_other_cell == len(pairs)

    # order 2: the test day first, then the train day: the late train rows are dropped from training
    first = plan_splits([day_test], config)
    assert first.stats.test == len(pairs) and first.stats.train == 2
    out, stats = assign_splits(day_train, config, reference=first.published)
    got = splits_of(out)
    assert all(got[f"a-near-{i}"] == ("excluded", "near_duplicate_of_test") for i in range(len(pairs)))
    assert stats.excluded_near_duplicate_of_test_other_cell == len(pairs)
    assert stats.as_metadata()["rows_dropped_from_train_near_duplicate_of_other_cell_test"] == len(pairs)
    # the unrelated rows keep their hash split
    assert [got[f"a-other-{i}"] for i in range(2)] == [("test", None)] * 2


def test_index_rows_round_trip_and_other_specs_are_ignored():
    from materializer_assets.lib.dataset.near_duplicate_index import load_reference, with_spec

    config = SplitConfig(test_fraction=0.5)
    day = table(_cell("a", users("train", 30, config), users("test", 30, config), QUESTIONS, "train", UNRELATED[:2]))
    plan = plan_splits([day], config)
    index = with_spec(plan.index_rows(day), config.near_duplicates)
    assert set(index.column_names) == {"trace_id", "observation_id", "user_id", "split", "signature", "signature_spec"}
    assert index.num_rows == plan.stats.train + plan.stats.test
    reference, ignored = load_reference([index], config.near_duplicates)
    assert ignored == 0 and (reference.train_sig == plan.published.train_sig).all()
    other = NearDuplicateConfig(seed=2)
    reference, ignored = load_reference([index], other)
    assert ignored == index.num_rows and len(reference.train_sig) == 0


def test_lsh_bands_and_rows_are_the_ones_datasketch_chose():
    """(bands, rows) per (threshold, num_perm): persisted band hashes depend on them. The values
    are datasketch 2.x's ``_optimal_param(threshold − 0.1, num_perm, 0.5, 0.5)``."""
    from materializer_assets.lib.dataset.near_duplicates import _lsh_params

    expected = {
        (0.5, 16): (6, 2), (0.6, 16): (5, 3), (0.7, 16): (4, 4), (0.8, 16): (3, 5), (0.9, 16): (2, 8),
        (0.95, 16): (2, 8), (0.5, 64): (16, 4), (0.6, 64): (14, 4), (0.7, 64): (10, 6), (0.8, 64): (8, 8),
        (0.9, 64): (5, 11), (0.95, 64): (4, 15), (0.5, 128): (32, 4), (0.6, 128): (25, 5), (0.7, 128): (18, 7),
        (0.8, 128): (14, 9), (0.9, 128): (9, 13), (0.95, 128): (8, 16), (0.5, 256): (51, 5), (0.6, 256): (42, 6),
        (0.7, 256): (32, 8), (0.8, 256): (25, 10), (0.9, 256): (17, 15), (0.95, 256): (13, 19),
    }
    assert {key: _lsh_params(*key) for key in expected} == expected


def test_spilled_signatures_read_back_what_was_kept():
    """The planner's signatures live in temporary files: the rows and band columns read back
    (any ids, dense or sparse, in any order, across windows) equal the in-memory ones."""
    from materializer_assets.lib.dataset import splits
    from materializer_assets.lib.dataset.spill import band_column

    rng = np.random.default_rng(5)
    array = rng.integers(0, 2**32, size=(100_000, 8), dtype=np.uint64).astype(np.uint32)
    spilled = splits.SpilledRows(array)
    for ids in (np.arange(0), np.array([99_999, 0, 5]), rng.integers(0, 100_000, 50), np.arange(40_000, 70_000)):
        assert (spilled[ids] == array[ids]).all()
        assert (band_column(spilled, 3, ids) == array[ids, 3]).all()
    assert (band_column(spilled, 7) == array[:, 7]).all()

    config = SplitConfig(test_fraction=0.5)
    day = table(_cell("a", users("train", 30, config), users("test", 30, config), QUESTIONS, "train", UNRELATED[:2]))
    plan = plan_splits([day], config)
    assert isinstance(plan._signatures, splits.SpilledRows) and isinstance(plan._bands, splits.SpilledRows)
    rows = plan.index_rows(day)
    sig = np.stack(rows.column("signature").to_numpy(zero_copy_only=False)).astype(np.uint32)
    is_test = np.asarray(rows.column("split").to_pylist()) == "test"
    published = plan.published
    # the same distinct signatures, low bits and band hashes as computed in memory from the index rows
    for role, mask in (("train", ~is_test), ("test", is_test)):
        want = np.unique(sig[mask], axis=0)
        got_low = getattr(published, f"{role}_sig")
        assert len(got_low) == len(want) and set(map(bytes, got_low)) == set(map(bytes, low_bits(want)))
        got_bands = getattr(published, f"{role}_bands")
        assert set(map(bytes, got_bands)) == set(map(bytes, band_hashes(want, PARAMS)))


def test_an_index_on_disk_matches_as_one_in_memory(monkeypatch):
    """Matching with signatures and band hashes in temporary files (as the planner keeps them),
    verified a few queries at a time, finds exactly what the in-memory index finds."""
    from materializer_assets.lib.dataset import lsh
    from materializer_assets.lib.dataset.spill import SpilledRows

    rng = random.Random(3)
    base = [" ".join(words(50, seed)) for seed in range(60)]
    texts = []
    for text in base * 3:  # each base text and two edited copies: near duplicates across halves
        tokens = text.split()
        for i in rng.sample(range(len(tokens)), rng.randint(0, 12)):
            tokens[i] = "y" + tokens[i]
        texts.append(" ".join(tokens))
    rng.shuffle(texts)
    sig, _ = signatures(texts, PARAMS)
    low, bands = low_bits(sig), band_hashes(sig, PARAMS)
    references, queries = np.arange(0, len(texts), 2), np.arange(1, len(texts), 2)
    in_memory = LshIndex(low, bands, PARAMS, rows=references).match(low, bands, 0.7, rows=queries)
    assert (in_memory >= 0).sum() > 20 and (in_memory < 0).any()
    monkeypatch.setattr(lsh, "_VERIFY_BLOCK_QUERIES", 4)
    low_on_disk, bands_on_disk = SpilledRows(low), SpilledRows(bands)
    on_disk = LshIndex(low_on_disk, bands_on_disk, PARAMS, rows=references).match(low_on_disk, bands_on_disk, 0.7, rows=queries)
    assert on_disk.tolist() == in_memory.tolist()
    mixed = LshIndex(low[references], bands[references], PARAMS).match(low_on_disk, bands_on_disk, 0.7, rows=queries)
    assert (np.where(mixed >= 0, references[np.maximum(mixed, 0)], -1) == in_memory).all()


def test_the_signature_store_numbers_distinct_texts_in_order_of_arrival():
    rng = random.Random(7)
    config = NearDuplicateConfig()
    pool = [f"question number {i} about {rng.choice(['s3', 'iam', 'vpc'])}" for i in range(300)]
    store = SignatureStore(config, chunk=64)  # several flushes
    expected: dict[str, int] = {}
    distinct: list[str] = []
    for _ in range(12):
        batch = [rng.choice(pool) if rng.random() < 0.9 else rng.choice(["", None]) for _ in range(rng.randint(0, 120))]
        ids = store.add_batch(batch)
        for text, got in zip(batch, ids.tolist()):
            if not text:
                assert got == -1
                continue
            if text not in expected:
                expected[text] = len(distinct)
                distinct.append(text)
            assert got == expected[text]
    stored = store.finish()
    want_sig, want_has = signatures(distinct, config.lsh_params())
    assert np.array_equal(stored.full[np.arange(len(distinct))], want_sig) and np.array_equal(stored.has, want_has)
    every = np.arange(len(distinct))
    assert np.array_equal(stored.low[every], (want_sig & 0xFF).astype(np.uint8))
    assert np.array_equal(stored.bands[every], band_hashes(want_sig, config.lsh_params()))
    for band in (0, 3):
        assert np.array_equal(stored.bands.column(band), band_hashes(want_sig, config.lsh_params())[:, band])


def test_the_signature_store_cuts_texts_by_code_points_as_python_does():
    config = NearDuplicateConfig(max_chars=50)
    long_texts = ["é" * 40 + "ß" * 30 + " tail", "naïve café " * 10, "short"]
    store = SignatureStore(config)
    ids = store.add_batch(pa.chunked_array([long_texts[:1], long_texts[1:]]))
    assert ids.tolist() == [0, 1, 2]
    stored = store.finish()
    want, _ = signatures([text[:50] for text in long_texts], config.lsh_params())
    assert np.array_equal(stored.full[np.arange(3)], want)


def test_low_bit_verification_decides_as_the_full_signatures_away_from_the_threshold():
    # b-bit minwise hashing: 8-bit bins agree by chance with probability 1/256 where the minima
    # differ; agreement_needed corrects for it, so decisions match the 32-bit ones except for
    # pairs within about one bin of the threshold.
    rng = random.Random(11)
    base = [" ".join(words(60, seed)) for seed in range(40)]
    edited = []
    for text in base:
        tokens = text.split()
        for i in rng.sample(range(len(tokens)), rng.randint(0, 30)):
            tokens[i] = "x" + tokens[i]
        edited.append(" ".join(tokens))
    sig_a, _ = signatures(base, PARAMS)
    sig_b, _ = signatures(edited, PARAMS)
    full = similarity(sig_a, sig_b)
    low = similarity(low_bits(sig_a), low_bits(sig_b))
    assert (low >= full).all() and (low - full <= 3 / 128).all()
    threshold = 0.7
    clear = np.abs(full - threshold) > 2 / 128
    assert clear.sum() > 20 and 0 < (full >= threshold).sum() < len(full)
    decided = low >= agreement_needed(threshold, np.uint8)
    assert (decided[clear] == (full >= threshold)[clear]).all()
    assert agreement_needed(threshold, np.uint32) == threshold


def test_an_index_refuses_queries_of_other_bits():
    sig, _ = signatures(["one prompt here", "another prompt there"], PARAMS)
    index = LshIndex(sig, band_hashes(sig, PARAMS), PARAMS)
    with pytest.raises(ValueError, match="uint8"):
        index.match(low_bits(sig), band_hashes(sig, PARAMS), 0.7)


def test_spilled_rows_grow_by_appends():
    from materializer_assets.lib.dataset.spill import SpilledRows

    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 2**32, size=(n, 4), dtype=np.uint64).astype(np.uint32) for n in (0, 5, 40_000, 1)]
    spilled = SpilledRows(dtype=np.uint32, row_shape=(4,))
    for part in parts:
        spilled.append(part)
    whole = np.concatenate(parts)
    assert spilled.shape == whole.shape and len(spilled) == len(whole)
    ids = rng.integers(0, len(whole), 300)
    assert (spilled[ids] == whole[ids]).all()
    with pytest.raises(ValueError, match="shape"):
        spilled.append(np.zeros((2, 3), np.uint32))


def test_spilled_rows_open_no_file_until_written_and_close_it_with_themselves():
    import gc
    import warnings

    from materializer_assets.lib.dataset.spill import SpilledRows
    from materializer_assets.lib.dataset.splits import SplitPlanner

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "trace_id" in SplitPlanner(SplitConfig()).columns  # a planner made only for its columns
        spilled = SpilledRows(np.ones((3, 2), np.uint32))
        assert spilled[np.array([2])].tolist() == [[1, 1]]
        del spilled
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_concat_draining_joins_the_parts_and_lets_each_go_once_copied():
    parts = [np.arange(i * 6, i * 6 + 6, dtype=np.uint8).reshape(3, 2) for i in range(4)]
    expected = np.concatenate(parts)
    kept = weakref.ref(parts[0].base if parts[0].base is not None else parts[0])
    joined = concat_draining(parts, np.zeros((0, 2), np.uint8))
    assert np.array_equal(joined, expected) and joined.dtype == np.uint8
    assert parts == []  # the caller's list no longer holds them
    gc.collect()
    assert kept() is None
    empty = np.zeros((0, 2), np.uint8)
    assert concat_draining([], empty) is empty
