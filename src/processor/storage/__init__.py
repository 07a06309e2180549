"""Storage stage: the schema, migrations, the group-commit writer and admin operations."""
