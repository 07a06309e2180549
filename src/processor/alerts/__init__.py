"""Alerts (SPEC §14): rules over endpoint stats, metrics and logs, a per-rule state machine,
webhook notifications and acknowledgement.

rules.py parses and checks a rule; evaluate.py is the pure state machine; sources.py computes a
rule's value (raw rows for windows under an hour, rollups beyond); store.py reads and writes
the tables of schema.py; webhook.py delivers notifications; runner.py evaluates every
ALERT_EVAL_INTERVAL_SECONDS inside ``serve``.
"""
