"""The one lifecycle every component shares: receivers, the pipeline, the writer and the
background runners are started in order and shut down in reverse."""

from __future__ import annotations

from typing import Protocol


class Component(Protocol):
    async def start(self) -> None:
        """Acquire resources and begin work."""

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, finish what is in flight within ``grace`` seconds, release
        resources. Safe to call twice, and before ``start()``."""
