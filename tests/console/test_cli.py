"""``synapse-stream console add-user|remove-user|users``, and the console never loads Faust."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from stream_app.cli import main
from stream_app.console.auth import UserStore

REPO = Path(__file__).resolve().parents[2]


def test_add_list_and_remove_users(tmp_path, monkeypatch, capsys, redis_url):
    monkeypatch.setenv("SYNAPSE_REDIS_URL", redis_url)        # remove-user ends the user's sessions there
    users = tmp_path / "users.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert main(["console", "--users-file", str(users), "add-user", "ana", "--role", "analyst", "--password-stdin"]) == 0
    assert UserStore(users).authenticate("ana", "a long enough password").role == "analyst"
    assert "a long enough password" not in users.read_text() and (users.stat().st_mode & 0o777) == 0o600
    assert main(["console", "--users-file", str(users), "users"]) == 0
    assert "ana\tanalyst" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["console", "--users-file", str(users), "add-user", "bo", "--role", "moderator", "--password-stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["console", "--users-file", str(users), "remove-user", "ana"]) == 0
    assert json.loads(users.read_text())["users"] == {}
    assert main(["console", "--users-file", str(users), "remove-user", "ana"]) == 2


def test_detectors_create_refuses_a_reserved_name_before_asking_the_broker(capsys):
    # port 1: nothing listens there, so reaching the broker would be a different (and slow) error
    assert main(["detectors", "--broker", "kafka://127.0.0.1:1", "create", "new", "--tau", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "'new' is reserved" in err and "cannot read the detectors topic" not in err


def test_the_console_does_not_import_faust():
    code = ("import sys, stream_app.console.app, stream_app.console.cli, stream_app.console.feed, "
            "stream_app.console.publisher, stream_app.console.catalog, stream_app.worker.state, "
            "stream_app.worker.kafka_clients, stream_app.detectors_cli; "
            "assert 'faust' not in sys.modules, 'faust imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
