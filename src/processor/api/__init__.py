"""The query API of SPEC §11: REST handlers, the gRPC AnalyticsService, read-only SQL."""
