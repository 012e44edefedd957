"""Topic configurations: Kafka keeps what the retention window needs, and no more."""
from __future__ import annotations

from stream_app.worker.settings import Settings
from stream_app.worker.topics import TopicNames

DAY_MS = 86_400_000


def test_stream_topics_keep_the_window_plus_the_margin_seeds_for_ever_dead_letters_their_own():
    s = Settings(_env_file=None, retention="7d", topic_retention_margin="12h", dead_letter_retention="30d")
    t = TopicNames.from_settings(s)
    cfg = t.configs(s)
    for name in (t.posts, t.candidates, t.labels, t.verdicts, t.detections):
        assert cfg[name]["retention.ms"] == str(7 * DAY_MS + DAY_MS // 2), name
    assert cfg[t.seeds]["retention.ms"] == "-1"
    assert cfg[t.dead_letters]["retention.ms"] == str(30 * DAY_MS)
    assert cfg[t.detectors] == {"cleanup.policy": "compact"}   # compacted: the latest settings, for ever
    assert cfg[t.trends] == {"cleanup.policy": "compact", "retention.ms": "-1"}   # each proposal and decision
    assert t.partitions(s)[t.trends] == 1


def test_without_a_time_window_the_broker_default_rules_the_stream_topics():
    s = Settings(_env_file=None, retention="off", dead_letter_retention="off")
    t = TopicNames.from_settings(s)
    cfg = t.configs(s)
    assert t.posts not in cfg and t.labels not in cfg
    assert cfg[t.dead_letters]["retention.ms"] == "-1" and cfg[t.seeds]["retention.ms"] == "-1"
    assert TopicNames.from_settings(s).configs() == {t.detectors: {"cleanup.policy": "compact"},
                                                     t.trends: {"cleanup.policy": "compact"}}
