"""Ingest stage: receivers (gRPC, HTTP), decoding, admission, auth and the pipeline."""
