"""Operations: the service's own logging and Prometheus self-metrics."""
