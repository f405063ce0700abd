"""Every asset check of the graph has a test in which it fails.

A check that cannot fail is worse than none: it reports a guarantee nobody
has. This lists, for each check, a test that makes it (or the lib function
it is computed by) fail; a new check fails this test until it gets one.
"""

import importlib

import pytest

from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring

LIB = "materializer_tests.lib"
PIPELINE = "materializer_tests.pipeline"

FAILING_TESTS = {
    "raw_schema_as_declared": [
        f"{PIPELINE}.test_schema_checks::test_an_ingest_cell_with_foreign_columns_fails_its_schema_check",
        f"{LIB}.test_checks::test_a_file_with_foreign_columns_fails_naming_the_file_and_the_difference",
    ],
    "schema_as_declared": [
        f"{PIPELINE}.test_schema_checks::test_an_ingest_cell_with_foreign_columns_fails_its_schema_check",
        f"{LIB}.test_checks::test_reordered_columns_in_a_footer_fail",
        f"{LIB}.test_checks::test_a_retyped_column_fails",
    ],
    "judge_schema_as_declared": [f"{PIPELINE}.test_schema_checks::test_score_cells_with_foreign_columns_fail_their_schema_checks"],
    "ragas_schema_as_declared": [f"{PIPELINE}.test_schema_checks::test_score_cells_with_foreign_columns_fail_their_schema_checks"],
    "raw_required_non_null": [f"{LIB}.test_checks::test_required_columns_fail_on_nulls_and_on_a_column_missing_from_the_files"],
    "required_columns_non_null": [f"{LIB}.test_checks::test_required_columns_fail_on_nulls_and_on_a_column_missing_from_the_files"],
    "no_rejected_records": [f"{PIPELINE}.test_ingest_assets::test_a_cell_keeps_only_consented_redacted_unique_rows"],
    "only_consented_rows": [f"{LIB}.test_checks::test_only_granted_fails_on_refused_unknown_and_non_granting_rows"],
    "unique_trace_observation_ids": [f"{LIB}.test_checks::test_unique_ids_fail_on_a_duplicate_trace_and_observation"],
    "counts_reconcile": [f"{LIB}.test_checks::test_counts_reconcile_fails_when_rows_went_missing"],
    "row_count_matches_consented_parquet": [f"{LIB}.test_checks::test_row_counts_of_a_copy_must_match"],
    "judge_scores_in_range": [
        f"{LIB}.scoring.test_checks::test_scores_in_range_fails_on_a_score_outside_0_1_or_nan",
        f"{PIPELINE}.test_schema_checks::test_score_cells_with_foreign_columns_fail_their_schema_checks",
    ],
    "ragas_scores_in_range": [
        f"{LIB}.scoring.test_checks::test_ragas_scores_in_range_checks_every_metric_against_its_own_status",
        f"{PIPELINE}.test_schema_checks::test_score_cells_with_foreign_columns_fail_their_schema_checks",
    ],
    "judge_every_trace_scored": [f"{LIB}.scoring.test_checks::test_every_trace_scored_fails_on_missing_extra_and_duplicate_rows"],
    "ragas_every_trace_scored": [f"{LIB}.scoring.test_checks::test_every_trace_scored_fails_on_missing_extra_and_duplicate_rows"],
    "judge_non_ok_share": [f"{PIPELINE}.scoring.test_scoring_assets::test_failures_are_null_with_their_status_and_warned_about"],
    "ragas_non_ok_share": [f"{PIPELINE}.scoring.test_scoring_assets::test_failures_are_null_with_their_status_and_warned_about"],
    "judge_endpoint_configured": [
        f"{PIPELINE}.scoring.test_scoring_assets::test_without_an_endpoint_every_row_is_not_configured_and_a_warning_says_so"
    ],
    "ragas_endpoint_configured": [
        f"{PIPELINE}.scoring.test_scoring_assets::test_without_an_endpoint_every_row_is_not_configured_and_a_warning_says_so"
    ],
    "final_reward_in_range": [
        f"{LIB}.dataset.test_checks_and_summary::test_final_reward_range_passes_on_nulls_and_bounds_and_fails_outside"
    ],
    "no_group_in_both_splits": [f"{LIB}.dataset.test_checks_and_summary::test_group_check_ignores_excluded_rows_and_finds_straddlers"],
    "no_user_in_both_splits": [f"{LIB}.dataset.test_checks_and_summary::test_group_check_ignores_excluded_rows_and_finds_straddlers"],
    "consent_lineage": [f"{LIB}.dataset.test_checks_and_summary::test_consent_lineage_needs_true_and_a_granting_source"],
    "dpo_pairs_valid": [f"{LIB}.dataset.test_checks_and_summary::test_dpo_check_on_conversational_columns"],
    "langfuse_scores_written": [f"{PIPELINE}.dataset.test_dataset_assets::test_an_unreachable_langfuse_warns_but_keeps_the_dataset"],
}


def _graph_checks() -> set[str]:
    assets = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + dataset.ASSETS
    return {spec.name for asset in assets for spec in getattr(asset, "check_specs", [])}


def test_every_check_of_the_graph_is_listed_with_a_failing_test():
    checks = _graph_checks()
    assert checks - set(FAILING_TESTS) == set(), "checks without a test in which they fail"
    assert set(FAILING_TESTS) - checks == set(), "listed checks that the graph no longer has"


@pytest.mark.parametrize("check", sorted(FAILING_TESTS))
def test_the_listed_tests_exist(check):
    for reference in FAILING_TESTS[check]:
        module_name, _, function = reference.partition("::")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function, None)), reference
