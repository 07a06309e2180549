"""The read-only SQL check of ``POST /api/v1/query``: a real parser (sqlglot), never a regex.

Accepted: exactly one query (SELECT, or UNION/INTERSECT/EXCEPT of SELECTs, with CTEs) that
reads only the analytics tables and calls only allowlisted functions. Refused: every other
statement (SET, RESET, COPY, DDL, writes, EXPLAIN…), writes hidden in CTEs, SELECT INTO,
row locks, schema-qualified or unknown functions (set_config, pg_sleep, pg_read_file, lo_*,
dblink, query_to_xml…), and any other table (api_keys, catalogs…).

What runs is the SQL regenerated from the checked tree, not the text sent, so a difference
between sqlglot's tokenizer and the database's (quoting, comments) cannot smuggle anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from processor.api.params import BadParameter

DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite"}
# The tables analysts may read: the raw tables and the project-scoped rollups of SPEC §10.
READABLE_TABLES = frozenset(
    {
        "endpoint_usage",
        "feature_usage",
        "user_activity",
        "logs",
        "performance_metrics",
        "user_properties",
        # the rollups of SPEC §10 (migration 0006 grants them with the same RLS policy)
        "endpoint_stats",
        "metric_aggregates",
        "feature_usage_daily",
        "user_activity_daily",
        "sessions",
        "funnels",
        "dashboard_metrics",
    }
)
SCHEMAS = frozenset({"", "public", "main"})
MAX_SQL = 100_000

# Functions sqlglot parses into typed nodes (class names): pure computations on values.
TYPED_FUNCTIONS = frozenset(
    [
        "Abs",
        "ApproxDistinct",
        "ArrayAgg",
        "ArraySize",
        "Avg",
        "Case",
        "Cast",
        "Ceil",
        "Coalesce",
        "Concat",
        "ConcatWs",
        "Count",
        "CountIf",
        "CumeDist",
        "CurrentDate",
        "CurrentTimestamp",
        "Date",
        "DateAdd",
        "DateDiff",
        "DateSub",
        "DateTrunc",
        "DenseRank",
        "Exp",
        "Extract",
        "ExplodingGenerateSeries",
        "FirstValue",
        "Floor",
        "GenerateSeries",
        "Greatest",
        "GroupConcat",
        "If",
        "JSONBExtract",
        "JSONBExtractScalar",
        "JSONExtract",
        "JSONExtractScalar",
        "Lag",
        "LastValue",
        "Lead",
        "Least",
        "Left",
        "Length",
        "Ln",
        "Log",
        "Lower",
        "Max",
        "Min",
        "Mod",
        "Nullif",
        "NthValue",
        "Ntile",
        "PercentRank",
        "PercentileCont",
        "PercentileDisc",
        "Pow",
        "Rank",
        "RegexpLike",
        "RegexpReplace",
        "Right",
        "Round",
        "RowNumber",
        "Sign",
        "Sqrt",
        "Stddev",
        "StddevPop",
        "StddevSamp",
        "StrPosition",
        "Substring",
        "Sum",
        "TimeToStr",
        "TimestampTrunc",
        "ToChar",
        "TsOrDsToTimestamp",
        "Trim",
        "TryCast",
        "Upper",
        "Variance",
        "VariancePop",
        "StrToTime",
        "UnixToTime",
        "TimeStrToTime",
        "DatetimeAdd",
        "TimestampAdd",
        "TimestampDiff",
        "SplitPart",
    ]
)
# Functions left as plain names (lower case), per database.
NAMED_FUNCTIONS = frozenset(
    [
        "age",
        "char_length",
        "date",
        "date_part",
        "datetime",
        "json_array_length",
        "json_each",
        "json_extract",
        "json_extract_path_text",
        "jsonb_array_length",
        "jsonb_extract_path_text",
        "jsonb_object_keys",
        "jsonb_each_text",
        "jsonb_typeof",
        "json_typeof",
        "julianday",
        "length",
        "lower",
        "now",
        "position",
        "regexp_replace",
        "split_part",
        "string_agg",
        "strftime",
        "to_timestamp",
        "unixepoch",
        "upper",
        "width_bucket",
        "time",
        "initcap",
        "substr",
        "instr",
        "printf",
        "format_type",
        "bool_and",
        "bool_or",
        "every",
    ]
)
FORBIDDEN_NODES: tuple[type, ...] = (
    exp.DML,
    exp.DDL,
    exp.Command,
    exp.Copy,
    exp.Set,
    exp.Into,
    exp.Lock,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Grant,
    exp.Revoke,
    exp.Attach,
    exp.Detach,
    exp.Drop,
    exp.Alter,
    exp.Describe,
    exp.Show,
    exp.Analyze,
    exp.TruncateTable,
    exp.Comment,
)
QUERY_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


class QueryRejected(BadParameter):
    def __init__(self, message: str) -> None:
        super().__init__("sql", message)


def check(sql: str, database: str) -> str:
    """The SQL to run (regenerated from the parsed tree), or QueryRejected saying why."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRejected("must be a non-empty string")
    if len(sql) > MAX_SQL:
        raise QueryRejected(f"must be at most {MAX_SQL} characters")
    dialect = DIALECTS[database]
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise QueryRejected(f"could not be parsed: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise QueryRejected("must be exactly one statement")
    tree = statements[0]
    if not isinstance(tree, QUERY_ROOTS):
        raise QueryRejected(f"must be a SELECT, not {tree.key.upper()}")
    for node in tree.walk():
        _check_node(node)
    _check_tables(tree)
    return tree.sql(dialect=dialect)


def _check_node(node: Any) -> None:
    if isinstance(node, FORBIDDEN_NODES):
        raise QueryRejected(f"{type(node).__name__.upper()} is not allowed: only reading")
    if isinstance(node, exp.Func):
        name = _function_name(node)
        if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            raise QueryRejected(f"schema-qualified function {name} is not allowed")
        allowed = (
            name.lower() in NAMED_FUNCTIONS
            if isinstance(node, exp.Anonymous)
            else type(node).__name__ in TYPED_FUNCTIONS
        )
        if not allowed:
            raise QueryRejected(f"function {name} is not allowed")


def _function_name(node: exp.Func) -> str:
    return str(node.name) if isinstance(node, exp.Anonymous) else node.sql_name()


def _check_tables(tree: exp.Expression) -> None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            continue  # a table function: checked as a function
        name = table.name.lower()
        if table.catalog or table.db.lower() not in SCHEMAS:
            raise QueryRejected(f"table {table.sql()} is not readable")
        if name in ctes and not table.db:
            continue
        if name not in READABLE_TABLES:
            raise QueryRejected(
                f"table {name} is not readable; tables: {', '.join(sorted(READABLE_TABLES))}"
            )


def readable(names: Iterable[str]) -> bool:
    return all(n in READABLE_TABLES for n in names)
