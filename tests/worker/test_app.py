"""The app factory: nothing is wired at import, and one process can build two workers with different settings."""
from __future__ import annotations

import subprocess
import sys
import tempfile

from stream_app.worker.app import create_app
from stream_app.worker.settings import Settings


def test_two_apps_with_different_settings_in_one_process():
    a = create_app(Settings(_env_file=None, data_dir=tempfile.mkdtemp()))
    b = create_app(Settings(_env_file=None, data_dir=tempfile.mkdtemp(), app_id="other", topic_prefix="b.",
                            detectors=[{"name": "x", "oracle_mode": "llm"}]))
    assert sorted(a.agents) == ["apply_verdicts", "ingest_posts", "ingest_seeds", "route_labels"]
    assert sorted(b.agents) == sorted([*a.agents, "llm_rate"])   # the LLM rater only where a detector uses it
    assert a.synapse.runtime is not b.synapse.runtime and a.conf.id != b.conf.id
    assert a.synapse.posts.get_topic_name() == "synapse.posts" and b.synapse.posts.get_topic_name() == "b.posts"
    c = create_app(Settings(_env_file=None, data_dir=tempfile.mkdtemp(), app_id="third", llm_rater=True))
    assert "llm_rate" in c.agents        # for detectors created later with an LLM oracle_mode


def test_importing_the_packages_builds_nothing():
    code = "import stream_app, agents, stream_app.worker.app, stream_app.worker.service; print(stream_app._app)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr
