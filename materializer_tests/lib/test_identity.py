"""Row keys: joined_keys is blake2b (16 bytes) of the NUL-joined texts, whatever shape the
Arrow input has (slices, chunks, nulls, long or non-ASCII text)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from materializer_assets.lib.identity import identity_keys, joined_keys

VALUES = [None, "", "a", "ünïcode", "x" * 5000, "tab\tand\x00nul"] * 50


def blake(*parts: str | None) -> bytes:
    return hashlib.blake2b("\x00".join(p or "" for p in parts).encode(), digest_size=16).digest()


def test_joined_keys_are_blake2b_of_the_nul_joined_texts():
    other = list(reversed(VALUES))
    expected = np.array([blake(a, b) for a, b in zip(VALUES, other)], "S16")
    assert joined_keys([pa.array(VALUES), pa.array(other)]).tobytes() == expected.tobytes()
    assert (joined_keys([VALUES, other]) == expected).all()  # plain lists too
    one = np.array([blake(a) for a in VALUES], "S16")
    assert (joined_keys([pa.array(VALUES)]) == one).all()
    # keys ending in NUL bytes stay 16 bytes wide
    assert joined_keys([pa.array(VALUES)]).dtype == np.dtype("S16")


def test_slices_chunks_and_large_strings_give_the_same_keys():
    array = pa.array(VALUES)
    whole = joined_keys([array])
    assert (joined_keys([array.slice(7, 100)]) == whole[7:107]).all()
    chunked = pa.chunked_array([array.slice(0, 13), array.slice(13, 0), array.slice(13)])
    assert (joined_keys([chunked]) == whole).all()
    assert (joined_keys([array.cast(pa.large_string())]) == whole).all()
    assert len(joined_keys([pa.array([], pa.string())])) == 0


def test_identity_keys_count_a_missing_observation_id_as_empty():
    keys = identity_keys(pa.array(["t1", "t2"]), None)
    assert keys.tobytes() == blake("t1", None) + blake("t2", None)
    assert identity_keys(["t1"], ["o1"]).tobytes() == blake("t1", "o1")
