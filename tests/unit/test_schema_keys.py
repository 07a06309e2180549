"""The models' keys fit partitioning and Citus (SPEC §13): project_id in every unique key,
the partition key in those of partitioned tables, foreign keys only to reference tables."""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, PrimaryKeyConstraint, UniqueConstraint

from processor.storage.schema import Base

# Reference tables (copied to every Citus node): not distributed by project.
REFERENCE = {"projects", "api_keys", "analyst_roles", "query_secret", "rollup_invalidations"}


def unique_keys(table):  # type: ignore[no-untyped-def]
    for constraint in table.constraints:
        if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint):
            yield constraint.name or "primary key", [c.name for c in constraint.columns]
    for column in table.columns:
        if column.unique:
            yield column.name, [column.name]
    for index in table.indexes:
        if index.unique:
            yield index.name, [c.name for c in index.columns]


def test_unique_keys_hold_project_id_and_the_partition_key():
    for table in Base.metadata.sorted_tables:
        if table.name in REFERENCE:
            continue
        partitioned = table.dialect_options["postgresql"]["partition_by"] is not None
        for name, columns in unique_keys(table):
            assert "project_id" in columns, (table.name, name)
            if partitioned:
                assert "timestamp" in columns, (table.name, name)


def test_raw_tables_are_described_as_partitioned_by_timestamp():
    partitioned = {
        t.name
        for t in Base.metadata.sorted_tables
        if t.dialect_options["postgresql"]["partition_by"] == "RANGE (timestamp)"
    }
    assert partitioned == {
        "endpoint_usage",
        "feature_usage",
        "user_activity",
        "logs",
        "performance_metrics",
    }


def test_foreign_keys_point_only_at_reference_tables():
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            if isinstance(constraint, ForeignKeyConstraint):
                assert constraint.referred_table.name in REFERENCE, table.name
