"""GDPR erasure of the cross-cell near-duplicate index: registered so the gdpr_erasure job includes it.

The index (``reward_dataset`` reads and publishes it through
:mod:`~materializer_assets.lib.dataset.near_dup_lake`) is keyed by ``user_id``
and ``trace_id`` but is no asset's declared output, so the erasure job would
not find it by metadata; :func:`register` adds it to every run, once it has a cell.
"""

from __future__ import annotations

from typing import Iterable

from ...lib.dataset.near_duplicate_index import INDEX_DATASET
from ...lib.erasure import ErasableOutput, ErasureEnvironment, LakeDatasetOutput, register_erasable_output


def register() -> None:
    def outputs(environment: ErasureEnvironment) -> Iterable[ErasableOutput]:
        if environment.lake is None:
            return []
        output = LakeDatasetOutput(environment.lake, INDEX_DATASET, stale_after=environment.orphan_grace)
        return [output] if output.cells() else []

    register_erasable_output("dataset.near_dup_index", outputs)
