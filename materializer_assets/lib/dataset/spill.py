"""Keeping a planner's arrays small: rows in an unlinked temporary file instead of in memory,
and parts joined without holding two copies."""

from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np

_WINDOW_ROWS = 1 << 15


def concat_draining(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)`` (``empty`` when there are none) that empties ``parts`` as it
    copies them: memory peaks at the result plus one part, not at twice the result."""
    if not parts:
        return empty
    out = np.empty((sum(len(part) for part in parts), *parts[0].shape[1:]), np.result_type(*parts))
    start = 0
    parts.reverse()  # pop from the end: each part is freed once copied
    while parts:
        part = parts.pop()
        out[start : start + len(part)] = part
        start += len(part)
        del part
    return out


class SpilledRows:
    """A 2-D array in an unlinked temporary file (gone when closed or collected), filled by
    :meth:`append`; ``rows[ids]`` reads back only the windows of rows that hold ``ids`` (with
    ``pread``, not ``mmap``: pages a map touched would count in the process's resident memory
    until unmapped)."""

    def __init__(self, array: np.ndarray | None = None, *, dtype=None, row_shape: tuple[int, ...] = ()) -> None:
        if array is not None:
            dtype, row_shape = array.dtype, array.shape[1:]
        self.dtype = np.dtype(dtype)
        self._row_shape = tuple(row_shape)
        self._row_bytes = self.dtype.itemsize * int(np.prod(self._row_shape, dtype=np.int64))
        self._rows = 0
        self._file = None  # opened at the first row: an empty store holds no file
        if array is not None:
            self.append(array)

    def _fd(self) -> int:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="materializer-signatures-")
            # closed with this object (an unlinked file: closing frees its disk space)
            weakref.finalize(self, self._file.close)
        return self._file.fileno()

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._rows, *self._row_shape)

    def __len__(self) -> int:
        return self._rows

    def append(self, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, self.dtype)
        if data.shape[1:] != self._row_shape:
            raise ValueError(f"rows of shape {data.shape[1:]} appended to rows of shape {self._row_shape}")
        if not len(data):
            return
        view, offset = memoryview(data.reshape(-1)).cast("B"), self._rows * self._row_bytes
        while len(view):
            written = os.pwrite(self._fd(), view, offset)
            view, offset = view[written:], offset + written
        self._rows += len(data)

    def _read(self, start: int, stop: int) -> np.ndarray:
        data = os.pread(self._fd(), (stop - start) * self._row_bytes, start * self._row_bytes)
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self._row_shape))

    def _gather(self, ids: np.ndarray, column: int | None) -> np.ndarray:
        """Rows ``ids`` (or only their ``column``), reading each window of rows that holds one of
        them once, from its start to the last id wanted there."""
        ids = np.asarray(ids, np.int64)
        shape = (len(ids),) if column is not None else (len(ids), *self._row_shape)
        out = np.empty(shape, self.dtype)
        if not len(ids):
            return out
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]
        windows = ordered // _WINDOW_ROWS
        cuts = np.flatnonzero(windows[1:] != windows[:-1]) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(ids)]):
            start = int(windows[lo]) * _WINDOW_ROWS
            wanted = ordered[lo:hi] - start
            rows = self._read(start, start + int(wanted[-1]) + 1)
            out[order[lo:hi]] = rows[wanted] if column is None else rows[wanted, column]
        return out

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        return self._gather(ids, None)

    def column(self, column: int, ids: np.ndarray | None = None) -> np.ndarray:
        """``rows[:, column]`` (or ``rows[ids, column]``) of a 2-D store, a window at a time: one
        column of the file in memory, never the whole file."""
        if ids is not None:
            return self._gather(ids, column)
        out = np.empty(self._rows, self.dtype)
        for start in range(0, self._rows, _WINDOW_ROWS):
            stop = min(start + _WINDOW_ROWS, self._rows)
            out[start:stop] = self._read(start, stop)[:, column]
        return out


def band_column(bands: "np.ndarray | SpilledRows", band: int, rows: np.ndarray | None = None) -> np.ndarray:
    """``bands[rows, band]`` (every row when ``rows`` is None) of an array in memory or on disk."""
    if (rows is not None and not len(rows)) or not len(bands):
        return np.zeros(0, bands.dtype)
    if isinstance(bands, SpilledRows):
        return bands.column(band, rows)
    return bands[:, band] if rows is None else bands[rows, band]
