"""Prometheus metrics, in a registry of their own that is passed down (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux /proc; none elsewhere)
        ProcessCollector(registry=r)
        self.messages_in = Counter("blenderd_messages_in", "Messages received", ["platform"], registry=r)
        self.messages_out = Counter("blenderd_messages_out", "Replies sent", ["platform"], registry=r)
        self.queue_depth = Gauge("blenderd_queue_depth", "Requests waiting for or in generation", registry=r)
        self.batch_size = Histogram(
            "blenderd_batch_size",
            "Conversations per generate call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.generation_seconds = Histogram(
            "blenderd_generation_seconds",
            "Time of one batched generate call",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.tokens_generated = Counter(
            "blenderd_tokens_generated", "Tokens in the replies chosen", registry=r
        )
        self.contexts_truncated = Counter(
            "blenderd_contexts_truncated", "Contexts that left out older turns or cut the newest", registry=r
        )
        self.safety_blocks = Counter(
            "blenderd_safety_blocks",
            "Inputs and replies blocked, by stage",
            ["stage", "direction"],
            registry=r,
        )
        self.safety_care = Counter(
            "blenderd_safety_care", "Disclosures answered with the supportive reply", ["category"], registry=r
        )
        self.errors = Counter("blenderd_errors", "Errors by kind", ["kind"], registry=r)
        self.busy = Counter(
            "blenderd_busy_replies", "Messages answered 'busy' because the queue was full", registry=r
        )
        self.heap_trim_seconds = Histogram(
            "blenderd_heap_trim_seconds",
            "Time of one return of the heap's freed memory to the OS, after generations",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.rate_limited = Counter(
            "blenderd_rate_limited", "Messages refused by the per-person rate limit", registry=r
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.generation_seconds.observe(seconds)

    def observe_trim(self, seconds: float) -> None:
        self.heap_trim_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
