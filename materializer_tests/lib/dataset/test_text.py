"""split_keys (Arrow kernels over a batch) equals the per-row RowTexts it replaces."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from materializer_assets.lib.dataset.text import iter_row_texts, split_keys
from materializer_assets.lib.schema import MESSAGE_TYPE

SCHEMA = pa.schema([("messages", pa.list_(MESSAGE_TYPE)), ("prompt", pa.string()), ("response", pa.string())])
ASCII_PIECES = ["Hello", " World", "  ", "\t", "\n", "x_y", "What's", "a--b", "", " ", "Q?", "tool", "DATA", "\x1c", "\x0b\x0c", "3.14", "\x07"]
OTHER_PIECES = ["ß", "é", "ＡＢ", "\u2003", "\u00a0", "İ", "ﬁ"]
ROLES = ["user", "assistant", "system", "developer", " User ", "tool", "ASSISTANT", None, "", "\tsystem\n"]


def as_lists(keys_and_nears) -> tuple[list[bytes], list[str]]:
    keys, nears = keys_and_nears
    assert keys.dtype == np.dtype("S16")
    # bytes(...) of each 16-byte item: numpy's .tolist() would drop trailing NUL bytes
    return [keys[i : i + 1].tobytes() for i in range(len(keys))], nears.to_pylist()


def per_row(batch: pa.RecordBatch) -> tuple[list[bytes], list[str]]:
    rows = list(iter_row_texts(batch))
    return [row.dedup_key for row in rows], [row.dialogue_near for row in rows]


def random_batch(seed: int, pieces: list[str], roles: list, rows: int = 1500) -> pa.RecordBatch:
    rng = random.Random(seed)

    def text():
        return None if rng.random() < 0.1 else "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))

    def message():
        return {"role": rng.choice(roles), "content": text(), "tool_calls": text() if rng.random() < 0.3 else None, "name": None}

    data = [
        {
            "messages": None if rng.random() < 0.1 else [message() for _ in range(rng.randint(0, 5))],
            "prompt": text(),
            "response": text(),
        }
        for _ in range(rows)
    ]
    return pa.RecordBatch.from_pylist(data, schema=SCHEMA)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ascii_rows_match_the_per_row_texts(seed):
    batch = random_batch(seed, ASCII_PIECES, ROLES)
    for part in (batch, batch.slice(17, 700), batch.slice(batch.num_rows - 1, 1)):
        assert as_lists(split_keys(part)) == per_row(part)


@pytest.mark.parametrize("seed", [4, 5])
def test_rows_with_other_text_match_too(seed):
    batch = random_batch(seed, ASCII_PIECES + OTHER_PIECES, ROLES + ["Systém"])
    for part in (batch, batch.slice(3, 400)):
        assert as_lists(split_keys(part)) == per_row(part)


def test_a_table_of_several_chunks_and_no_messages_column():
    batch = random_batch(6, ASCII_PIECES, ROLES, rows=50)
    table = pa.Table.from_batches([batch.slice(0, 20), batch.slice(20)])
    assert as_lists(split_keys(table)) == per_row(batch)
    plain = pa.table({"prompt": ["Hi  there!", None, "Ünïcode"], "response": ["ok", "", None]})
    assert as_lists(split_keys(plain)) == per_row(plain.to_batches()[0])
