// What an empty database shows: how to send data, instead of a blank page.

import { el, notice } from "./dom.js";

export function collectorSnippet(host) {
  return `# otel-collector-config.yaml: forward everything to telemetry-processor
receivers:
  otlp:
    protocols:
      grpc:
      http:
exporters:
  otlphttp:
    endpoint: http://${host}
    headers:
      x-api-key: \${env:TELEMETRY_PROCESSOR_KEY}   # an ingest key, if keys are configured
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlphttp] }
    logs: { receivers: [otlp], exporters: [otlphttp] }
    metrics: { receivers: [otlp], exporters: [otlphttp] }`;
}

export function emptyState() {
  const host = window.location.host;
  return el("div", { "data-testid": "empty-state" },
    notice(
      el("h2", { text: "No data yet" }),
      el("p", { text: "This project has no rows. Point an OpenTelemetry Collector (or any OTLP SDK) at this server and the pages fill in as data arrives." }),
    ),
    el("h3", { text: "OpenTelemetry Collector" }),
    el("pre", { text: collectorSnippet(host) }),
    el("h3", { text: "Or straight from an SDK" }),
    el("pre", { text: `export OTEL_EXPORTER_OTLP_ENDPOINT=http://${host}\nexport OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` }),
    el("p", { class: "muted", text: "Rollup tables (KPI tiles, sessions) refresh every ROLLUP_INTERVAL_SECONDS." }),
  );
}
