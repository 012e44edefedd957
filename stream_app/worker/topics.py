"""Topic names (with the configured prefix) and their explicit creation.

Every topic is created with a fixed partition count; ``posts`` and the internal ``verdicts`` topic
must have the same count (they are co-partitioned: verdict ``p`` goes to the worker holding shard ``p``).
"""
from __future__ import annotations

from dataclasses import dataclass

from stream_app.worker.settings import Settings


@dataclass(frozen=True)
class TopicNames:
    posts: str
    seeds: str
    candidates: str
    labels: str
    verdicts: str      # internal: labels routed to the partition of their post
    dead_letters: str
    detections: str    # posts the detector's classifier scores at or above its threshold
    detectors: str     # compacted: each detector's settings under its name (a tombstone retires it)

    @classmethod
    def from_settings(cls, s: Settings) -> "TopicNames":
        return cls(s.topic("posts"), s.topic("seeds"), s.topic("candidates"), s.topic("labels"),
                   s.topic("verdicts"), s.topic("dead-letters"), s.topic("detections"), s.topic("detectors"))

    def partitions(self, s: Settings) -> dict[str, int]:
        """Partition counts: posts/verdicts/candidates/labels/detections use ``s.partitions``; seeds, detectors and
        the DLQ 1."""
        return {self.posts: s.partitions, self.verdicts: s.partitions, self.labels: s.partitions,
                self.candidates: s.partitions, self.detections: s.partitions, self.seeds: 1, self.dead_letters: 1,
                self.detectors: 1}

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic configurations: the detectors topic is compacted (the latest settings of each detector)."""
        return {self.detectors: {"cleanup.policy": "compact"}}


def ensure_topics(settings: Settings, timeout: float = 30.0) -> dict[str, int]:
    """Create the topics if missing (idempotent); returns their partition counts as the broker reports."""
    from stream_app.worker.kafka_admin import create_topics_sync, topic_partitions_sync

    names = TopicNames.from_settings(settings)
    wanted = names.partitions(settings)
    create_topics_sync(settings.bootstrap_servers(), wanted, replication=settings.replication, configs=names.configs())
    return topic_partitions_sync(settings.bootstrap_servers(), list(wanted))
