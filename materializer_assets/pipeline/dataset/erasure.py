"""GDPR erasure of the DPO export: registered so the gdpr_erasure job always includes it.

A DPO pair names two traces and no user, so the erasure job cannot find the
export by its asset metadata the way it finds ``reward_dataset`` and the
keyed exports; :func:`register` adds a
:class:`~materializer_assets.lib.dataset.pairs_erasure.PairedTracesOutput` to
every run. A warehouse that never had a DPO export stays out of the audit records.
"""

from __future__ import annotations

from typing import Iterable

from ...lib.dataset.pairs_erasure import PairedTracesOutput
from ...lib.erasure import ErasableOutput, ErasureEnvironment, register_erasable_output


def register(dpo_dataset: str) -> None:
    def outputs(environment: ErasureEnvironment) -> Iterable[ErasableOutput]:
        if environment.lake is None:
            return []
        output = PairedTracesOutput(environment.lake, dpo_dataset, stale_after=environment.orphan_grace)
        # A warehouse that never had a DPO export has nothing to erase: stay out of its audit records.
        return [output] if output._all_parquet_files() else []

    register_erasable_output("dataset.dpo_pairs", outputs)
