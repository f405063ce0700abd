"""Reading what a real ``dg.materialize`` run recorded."""

from __future__ import annotations

import dagster as dg


def _plain(value: dg.MetadataValue):
    """The value as plain data: Dagster's table schema and column lineage records become dicts
    (``{column: type}``, ``{column: ["asset.column", …]}``), which ``json.dumps`` can write."""
    if isinstance(value, dg.TableSchemaMetadataValue):
        return {column.name: column.type for column in value.schema.columns}
    if isinstance(value, dg.TableColumnLineageMetadataValue):
        return {
            column: [f"{dep.asset_key.to_user_string()}.{dep.column_name}" for dep in deps]
            for column, deps in value.column_lineage.deps_by_column.items()
        }
    return value.value


def materialization_metadata(result, asset: str) -> dict:
    """The metadata values of ``asset``'s materialization in the run ``result``."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: _plain(value) for key, value in materialization.metadata.items()}
    raise KeyError(asset)
