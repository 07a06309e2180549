"""The example request bodies of the Telling Logger and Log Ingestion API documents."""

from __future__ import annotations

# The Telling Logger API's example request body, verbatim.
TELLING_LOGGER_LOG = {
    "id": "1700000000000",
    "type": "analytics",
    "level": "info",
    "message": "User logged in",
    "timestamp": "2025-01-15T12:00:00.000Z",
    "userId": "user_123",
    "userName": "John Doe",
    "userEmail": "john@example.com",
    "sessionId": "user_123_1700000000000",
    "metadata": {
        "login_method": "google",
        "_user_properties": {
            "subscription_tier": "premium",
            "mrr": 99.99,
            "signup_date": "2025-01-01",
        },
    },
    "device": {
        "platform": "iOS",
        "osVersion": "17.0",
        "deviceModel": "iPhone 15 Pro",
        "appVersion": "1.2.0",
        "appBuildNumber": "42",
    },
}

PERFORMANCE_LOG = {
    "id": "1700000000001",
    "type": "performance",
    "level": "info",
    "message": "App Startup",
    "timestamp": "2025-01-15T12:00:01.000Z",
    "userId": "user_123",
    "sessionId": "user_123_1700000000000",
    "metadata": {"startup_time_ms": 1250, "memory_mb": 180.5, "contact": "john@example.com"},
    "device": {"platform": "Android", "appVersion": "1.2.1"},
}

# The Log Ingestion API's example request body, verbatim.
LOG_INGESTION_EVENT = {
    "event_id": "unique-event-id",
    "timestamp": "2024-01-15T10:30:00Z",
    "event_type": "behavioral",
    "event_name": "habit_completed",
    "properties": {"habit_id": "123", "streak": 5},
    "user_id": "user-123",
    "session_id": "session-456",
    "app_version": "1.0.0",
    "device_info": {"platform": "ios", "model": "iPhone 14"},
    "sequence_number": 1,
    "priority": "normal",
}
