import dagster as dg
import pytest

from materializer_assets.lib.cells import split_cell_key
from materializer_assets.pipeline.partitions import cell_key


def test_a_cell_key_splits_into_day_and_slug_from_dagster_or_from_a_string():
    assert split_cell_key(cell_key("2026-04-18", "glm-5-32b")) == ("2026-04-18", "glm-5-32b")
    assert split_cell_key("2026-04-18|glm-5-32b") == ("2026-04-18", "glm-5-32b")
    assert isinstance(cell_key("2026-04-18", "x"), dg.MultiPartitionKey)


def test_a_key_without_a_model_is_refused():
    with pytest.raises(ValueError, match=r"not a date\|model partition key"):
        split_cell_key("2026-04-18")
