"""Analytics rollups (SPEC §10): tables, incremental maintenance, the runner and queries."""
