"""The Dagster layer: one folder per stage, each holding its assets and checks."""
