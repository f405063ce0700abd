"""Traces from files: Langfuse blob-storage exports and plain JSONL (DESIGN §4).

``FileTraceReader(uri)`` reads a local folder, a single file, or
``s3://bucket/prefix``. One module per job:

- :mod:`.listing`: which files are traces, and whether they are plain JSONL
  or a Langfuse blob-storage export (``traces/``, ``observations/``,
  ``observations_v2/``, ``scores/``);
- :mod:`.formats`: the records of one file, as JSON lines, a JSON array,
  Parquet or CSV, with the location and reason of each damaged one;
- :mod:`.records`: what a record means: its cell (UTC day, model) and the
  ``SourceRecord`` fields, for export rows and plain JSONL lines;
- :mod:`.reader`: :class:`FileTraceReader`, which streams one cell's rows,
  joins an export's traces, scores and retrievers to its generations, counts
  rejections and remembers which days each file holds.
"""

from .listing import EXPORT_FOLDERS, EXPORT_SUFFIXES, JSONL_SUFFIXES, ExportRoot, SourceFile
from .reader import BATCH_ROWS, EXPORT_SOURCE, FileTraceReader
from .records import FEEDBACK_SCORE_NAMES, MACHINE_SCORE_SOURCES

__all__ = [
    "BATCH_ROWS",
    "EXPORT_FOLDERS",
    "EXPORT_SOURCE",
    "EXPORT_SUFFIXES",
    "FEEDBACK_SCORE_NAMES",
    "ExportRoot",
    "FileTraceReader",
    "JSONL_SUFFIXES",
    "MACHINE_SCORE_SOURCES",
    "SourceFile",
]
