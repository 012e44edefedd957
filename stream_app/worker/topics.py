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
    trends: str = ""   # compacted: each trend proposal under its id; decisions under "<id>/decision"

    @classmethod
    def from_settings(cls, s: Settings) -> "TopicNames":
        return cls(s.topic("posts"), s.topic("seeds"), s.topic("candidates"), s.topic("labels"),
                   s.topic("verdicts"), s.topic("dead-letters"), s.topic("detections"), s.topic("detectors"),
                   s.topic("trends"))

    def partitions(self, s: Settings) -> dict[str, int]:
        """Partition counts: posts/verdicts/candidates/labels/detections use ``s.partitions``; seeds, detectors,
        trends and the DLQ 1."""
        return {self.posts: s.partitions, self.verdicts: s.partitions, self.labels: s.partitions,
                self.candidates: s.partitions, self.detections: s.partitions, self.seeds: 1, self.dead_letters: 1,
                self.detectors: 1, self.trends: 1}

    def configs(self, s: Settings | None = None) -> dict[str, dict[str, str]]:
        """Topic configurations: the detectors and trends topics are compacted (the latest settings of each
        detector, the latest version of each proposal and its decision); with ``s``, retention by the window
        (:meth:`retention_ms`)."""
        out: dict[str, dict[str, str]] = {self.detectors: {"cleanup.policy": "compact"},
                                          self.trends: {"cleanup.policy": "compact"}}
        if s is not None:
            for name, ms in self.retention_ms(s).items():
                out.setdefault(name, {})["retention.ms"] = str(ms)
        return out

    def retention_ms(self, s: Settings) -> dict[str, int]:
        """``retention.ms`` per topic: the window plus ``topic_retention_margin`` for the stream topics (a worker
        without a snapshot replays its partition to rebuild the window; a verdict may come late), for ever
        (-1) for seeds (they never expire), ``dead_letter_retention`` for dead letters. The trends topic is
        compacted and kept for ever (a proposal and its decision are a few kB; a decision keeps a muted
        group muted across restarts). Without a time
        window (``retention=off``), only seeds and dead letters are set; the broker's default rules the rest."""
        from synapse_stream.segments import parse_duration

        out = {self.seeds: -1, self.trends: -1}
        dl = parse_duration(s.dead_letter_retention)
        out[self.dead_letters] = -1 if dl is None else int(dl * 1000)
        window = parse_duration(s.retention)
        if window is not None:
            keep = int((window + (parse_duration(s.topic_retention_margin) or 0.0)) * 1000)
            for name in (self.posts, self.candidates, self.labels, self.verdicts, self.detections):
                out[name] = keep
        return out


def ensure_topics(settings: Settings, timeout: float = 30.0) -> dict[str, int]:
    """Create the topics if missing (idempotent); returns their partition counts as the broker reports."""
    from stream_app.worker.kafka_admin import create_topics_sync, topic_partitions_sync
    from stream_app.worker.kafka_clients import aiokafka_security

    names = TopicNames.from_settings(settings)
    wanted = names.partitions(settings)
    sec = aiokafka_security(settings)   # TLS / SASL as configured (the principal needs CREATE on the topics)
    create_topics_sync(settings.bootstrap_servers(), wanted, replication=settings.replication,
                       configs=names.configs(settings), **sec)
    return topic_partitions_sync(settings.bootstrap_servers(), list(wanted), **sec)
