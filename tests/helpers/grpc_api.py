"""gRPC AnalyticsService test helpers: timestamps and the test data's month as a TimeRange."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from processor.analytics.v1 import analytics_pb2 as pb
from tests.helpers.api_data import BASE


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# The month the API test data (tests/helpers/api_data.py) falls in.
JANUARY = pb.TimeRange(start=ts(BASE.replace(day=1)), end=ts(BASE.replace(month=2, day=1)))
