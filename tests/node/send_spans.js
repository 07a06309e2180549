#!/usr/bin/env node
// Sends SERVER spans with HTTP attributes from the OpenTelemetry JS SDK to the processor,
// once over OTLP/gRPC and once over OTLP/HTTP (JSON), then flushes and exits.
//
//   node send_spans.js --grpc 127.0.0.1:4317 --http http://127.0.0.1:4318 [--user ID]
//
// Exit status 0 only when every export reported success; anything else prints why and
// exits 1, so tests/integration/test_node_sdk.py fails loudly.
'use strict';

const { SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const {
  BasicTracerProvider,
  SimpleSpanProcessor,
} = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter: GrpcExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPTraceExporter: HttpExporter } = require('@opentelemetry/exporter-trace-otlp-http');

function parseArgs(argv) {
  const args = { user: 'node-user-1' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (argv[i + 1] === undefined) throw new Error(`missing value for ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.grpc || !args.http) {
    throw new Error('usage: send_spans.js --grpc HOST:PORT --http http://HOST:PORT [--user ID]');
  }
  return args;
}

// Wraps an exporter to remember every failed or missing export.
class CheckedExporter {
  constructor(name, inner, failures) {
    this.name = name;
    this.inner = inner;
    this.failures = failures;
    this.exported = 0;
  }

  export(spans, done) {
    this.inner.export(spans, (result) => {
      if (result.code === 0) {
        this.exported += spans.length;
      } else {
        const reason = result.error ? result.error.message : `code ${result.code}`;
        this.failures.push(`${this.name}: ${reason}`);
      }
      done(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

async function send(name, inner, args, failures) {
  const exporter = new CheckedExporter(name, inner, failures);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      'service.name': `node-${name}`,
      'service.version': '3.1.4',
      'deployment.type': 'self-hosted',
    }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('send_spans');

  // Current HTTP semantic conventions, with a route template.
  const current = tracer.startSpan('GET /users/:id', {
    kind: SpanKind.SERVER,
    attributes: {
      'http.request.method': 'GET',
      'http.route': '/users/:id',
      'url.path': '/users/42',
      'http.response.status_code': 200,
      'user.id': args.user,
      'client.address': '203.0.113.9',
      'transport': name,
    },
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  current.end();

  // Older conventions, no route: the path is normalised by the processor.
  const older = tracer.startSpan('POST', {
    kind: SpanKind.SERVER,
    attributes: {
      'http.method': 'POST',
      'http.target': '/orders/12345/items?debug=1',
      'http.status_code': 503,
      'enduser.id': args.user,
      'transport': name,
    },
  });
  older.setStatus({ code: SpanStatusCode.ERROR });
  older.end();

  await provider.forceFlush();
  await provider.shutdown();
  if (exporter.exported !== 2) {
    failures.push(`${name}: exported ${exporter.exported} of 2 spans`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const failures = [];
  const grpcUrl = args.grpc.includes('://') ? args.grpc : `http://${args.grpc}`;
  await send('grpc', new GrpcExporter({ url: grpcUrl, timeoutMillis: 10000 }), args, failures);
  await send(
    'http',
    new HttpExporter({ url: `${args.http.replace(/\/$/, '')}/v1/traces`, timeoutMillis: 10000 }),
    args,
    failures,
  );
  if (failures.length) {
    console.error(`export failed: ${failures.join('; ')}`);
    process.exit(1);
  }
  console.log('sent 4 spans');
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
