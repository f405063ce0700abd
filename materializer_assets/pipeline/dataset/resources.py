"""Settings of reward_dataset and its exports, as one ConfigurableResource.

Every field maps to a ``MATERIALIZER_*`` variable (see ``build_resources``);
the values are validated by the pure library's config classes, so a bad
setting fails the run with the library's message before anything is written.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ...lib.dataset import LabelThresholds, NearDuplicateConfig, PairConfig, RewardConfig, RewardWeights, SplitConfig
from ...lib.dataset.splits import DEFAULT_SALT


class RewardDatasetResource(dg.ConfigurableResource):
    reward_weights: str = Field(
        default="ragas=0.6,judge=0.4",
        description="Reward weights as name=value (ragas, judge, feedback); unnamed components weigh 0; "
        "a row gets a reward only when every scorer with a positive weight is ok for it "
        "(MATERIALIZER_REWARD_WEIGHTS).",
    )
    use_ragas: bool = Field(
        default=True,
        description="Count Ragas in the reward; false switches it off explicitly, so rows are labeled without it "
        "(MATERIALIZER_REWARD_USE_RAGAS).",
    )
    use_judge: bool = Field(
        default=True,
        description="Count the LLM judge in the reward; false switches it off explicitly (MATERIALIZER_REWARD_USE_JUDGE).",
    )
    feedback_scale: str = Field(
        default="auto", description="Scale of user feedback scores, normalized to [0, 1] (MATERIALIZER_FEEDBACK_SCALE)."
    )
    preferred_min: float = Field(default=0.8, description="final_reward ≥ this is 'preferred' (MATERIALIZER_LABEL_PREFERRED_MIN).")
    non_preferred_max: float = Field(
        default=0.3, description="final_reward ≤ this is 'non_preferred' (MATERIALIZER_LABEL_NON_PREFERRED_MAX)."
    )
    split_group_by: str = Field(
        default="user_id", description="Split grouping key: user_id or session_id (MATERIALIZER_SPLIT_GROUP_BY)."
    )
    split_test_fraction: float = Field(default=0.2, description="Share of groups in test (MATERIALIZER_SPLIT_TEST_FRACTION).")
    split_salt: str = Field(
        default=DEFAULT_SALT, description="Salt of the split hash; changing it reshuffles every split (MATERIALIZER_SPLIT_SALT)."
    )
    near_dup_threshold: float = Field(
        default=0.7,
        description="MinHash Jaccard at or above which prompts count as near-duplicates and stay in one split; "
        "0 disables (MATERIALIZER_SPLIT_NEAR_DUP_THRESHOLD).",
    )
    dpo_min_margin: float = Field(default=0.2, description="Minimum reward margin of a DPO pair (MATERIALIZER_DPO_MIN_MARGIN).")
    dpo_max_pairs_per_prompt: int = Field(
        default=4, description="At most this many DPO pairs per prompt group (MATERIALIZER_DPO_MAX_PAIRS_PER_PROMPT)."
    )
    langfuse_write_scores: bool = Field(
        default=False,
        description="Write final_reward back to Langfuse as a score of each trace (MATERIALIZER_LANGFUSE_WRITE_SCORES).",
    )

    def reward_config(self) -> RewardConfig:
        return RewardConfig(
            weights=RewardWeights.parse(self.reward_weights),
            thresholds=LabelThresholds(preferred=self.preferred_min, non_preferred=self.non_preferred_max),
            feedback_scale=self.feedback_scale.strip().lower() or "auto",
            use_ragas=self.use_ragas,
            use_judge=self.use_judge,
        )

    def split_config(self) -> SplitConfig:
        near = NearDuplicateConfig(threshold=self.near_dup_threshold) if self.near_dup_threshold > 0 else None
        return SplitConfig(
            group_by=self.split_group_by.strip() or "user_id",
            test_fraction=self.split_test_fraction,
            salt=self.split_salt,
            near_duplicates=near,
        )

    def pair_config(self) -> PairConfig:
        return PairConfig(min_margin=self.dpo_min_margin, max_pairs_per_prompt=self.dpo_max_pairs_per_prompt)
