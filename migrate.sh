#!/bin/sh
# Apply database migrations to the configured database (ANALYTICS_DATABASE_URL or ANALYTICS_DB_*).
set -e
cd "$(dirname "$0")"
exec alembic upgrade head
