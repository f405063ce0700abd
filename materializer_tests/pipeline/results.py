"""Reading what a real ``dg.materialize`` run recorded."""

from __future__ import annotations


def materialization_metadata(result, asset: str) -> dict:
    """The metadata values of ``asset``'s materialization in the run ``result``."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise KeyError(asset)
