"""reward_dataset and its training exports, as pure functions on Arrow (no Dagster).

- :mod:`.rewards` — final reward (weighted, renormalized), feedback scales, labels
- :mod:`.splits` — stable, leakage-safe train/test assignment with dedup
- :mod:`.pairs` — DPO preference pairs
- :mod:`.exports` — TRL SFT/DPO/KTO/GRPO tables and LLMRouter rows
- :mod:`.build` — the two-pass ``reward_dataset`` builder and the score join
- :mod:`.checks` — asset-check functions; :mod:`.summary` — asset metadata
- :mod:`.schema` — ``REWARD_DATASET_SCHEMA`` and the split/label constants
- :mod:`.near_dup_lake` — the cross-cell near-duplicate index, read and published in the lake
- :mod:`.pairs_erasure` — GDPR erasure of the DPO pairs (two trace ids per row)
"""

from .build import RewardDatasetBuilder, RewardLineage, ScoreLookup, ScoresInCellOrder, build_reward_table, reward_batch
from .near_duplicates import NearDuplicateConfig
from .pairs import PAIRS_SCHEMA, PairConfig, PairStats, build_pairs
from .rewards import (
    FEEDBACK_SCALES,
    LabelThresholds,
    RewardConfig,
    RewardInputError,
    RewardWeights,
    final_rewards,
    labels,
    normalize_feedback,
    reward_columns,
)
from .schema import EXCLUDED, REWARD_DATASET_SCHEMA, TEST, TRAIN
from .splits import SplitConfig, SplitPlan, SplitPlanner, SplitStats, assign_splits, group_split, hashed_split_key, plan_splits
from .summary import RewardSummary, reward_histogram

__all__ = [
    "EXCLUDED",
    "FEEDBACK_SCALES",
    "PAIRS_SCHEMA",
    "REWARD_DATASET_SCHEMA",
    "TEST",
    "TRAIN",
    "LabelThresholds",
    "NearDuplicateConfig",
    "PairConfig",
    "PairStats",
    "RewardConfig",
    "RewardDatasetBuilder",
    "RewardInputError",
    "RewardLineage",
    "RewardSummary",
    "RewardWeights",
    "ScoreLookup",
    "ScoresInCellOrder",
    "SplitConfig",
    "SplitPlan",
    "SplitPlanner",
    "SplitStats",
    "assign_splits",
    "build_pairs",
    "build_reward_table",
    "final_rewards",
    "group_split",
    "hashed_split_key",
    "labels",
    "normalize_feedback",
    "plan_splits",
    "reward_batch",
    "reward_columns",
    "reward_histogram",
]
