"""Stage 4: iceberg_table + judge_scores + ragas_scores → reward_dataset → SFT/DPO/KTO/GRPO/router exports."""

from __future__ import annotations

import os

from ...lib.consent import parse_consent
from ...lib.dataset.pairs_erasure import PairedTracesOutput
from ..settings import env_flag
from .assets import (
    ASSETS,
    EXPORT_ASSETS,
    EXPORT_DATASETS,
    REWARD_LAKE_DATASET,
    REWARD_TABLE,
    dpo_export,
    grpo_export,
    kto_export,
    reward_dataset,
    reward_dataset_parquet,
    router_export,
    sft_export,
)
from .erasure import register as _register_erasure
from .near_dup import register as _register_near_dup_erasure
from .resources import RewardDatasetResource

# GDPR erasure finds reward_dataset and the keyed exports by their metadata; DPO pairs need their own output.
_register_erasure(EXPORT_DATASETS["dpo"])
# ...and so does the cross-cell near-duplicate index (signatures keyed by user and trace).
_register_near_dup_erasure()

SENSORS: list = []
SCHEDULES: list = []
JOBS: list = []

# MATERIALIZER_* variable → RewardDatasetResource field.
SETTINGS = {
    "MATERIALIZER_REWARD_WEIGHTS": ("reward_weights", str),
    "MATERIALIZER_FEEDBACK_SCALE": ("feedback_scale", str),
    "MATERIALIZER_LABEL_PREFERRED_MIN": ("preferred_min", float),
    "MATERIALIZER_LABEL_NON_PREFERRED_MAX": ("non_preferred_max", float),
    "MATERIALIZER_SPLIT_GROUP_BY": ("split_group_by", str),
    "MATERIALIZER_SPLIT_TEST_FRACTION": ("split_test_fraction", float),
    "MATERIALIZER_SPLIT_SALT": ("split_salt", str),
    "MATERIALIZER_SPLIT_NEAR_DUP_THRESHOLD": ("near_dup_threshold", float),
    "MATERIALIZER_DPO_MIN_MARGIN": ("dpo_min_margin", float),
    "MATERIALIZER_DPO_MAX_PAIRS_PER_PROMPT": ("dpo_max_pairs_per_prompt", int),
}
# Switches (true/false, yes/no, 1/0) → RewardDatasetResource field; default true.
SWITCHES = {
    "MATERIALIZER_REWARD_USE_RAGAS": "use_ragas",
    "MATERIALIZER_REWARD_USE_JUDGE": "use_judge",
}


def reward_settings_from_env(env=None) -> RewardDatasetResource:
    env = os.environ if env is None else env
    values: dict = {}
    for name, (field, kind) in SETTINGS.items():
        raw = (env.get(name) or "").strip()
        if raw:
            try:
                values[field] = kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    for name, field in SWITCHES.items():
        raw = (env.get(name) or "").strip()
        if raw:
            value = parse_consent(raw)
            if value is None:
                raise ValueError(f"{name} must be true or false, got {raw!r}")
            values[field] = value
    values["langfuse_write_scores"] = env_flag("MATERIALIZER_LANGFUSE_WRITE_SCORES", False)
    return RewardDatasetResource(**values)


def build_resources() -> dict:
    return {"reward_settings": reward_settings_from_env()}


__all__ = [
    "ASSETS",
    "EXPORT_ASSETS",
    "EXPORT_DATASETS",
    "JOBS",
    "PairedTracesOutput",
    "REWARD_LAKE_DATASET",
    "REWARD_TABLE",
    "SCHEDULES",
    "SENSORS",
    "SETTINGS",
    "SWITCHES",
    "RewardDatasetResource",
    "build_resources",
    "dpo_export",
    "grpo_export",
    "kto_export",
    "reward_dataset",
    "reward_dataset_parquet",
    "reward_settings_from_env",
    "router_export",
    "sft_export",
]
