"""telemetry-processor: OTLP in, SQL analytics tables out."""

__version__ = "0.1.0"
