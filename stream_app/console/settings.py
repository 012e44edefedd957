"""The console's settings: the worker's (broker, Redis, topics, LLM; ``stream_app/worker/settings.py``) plus its own,
``SYNAPSE_CONSOLE_*`` environment variables or the same ``synapse.env`` file."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from stream_app.worker.settings import Settings


class ConsoleSettings(Settings):
    console_host: str = "127.0.0.1"
    console_port: int = Field(8088, ge=0, le=65535)
    # signs the session cookies; without one a random key is made at start (sessions end with the process)
    console_secret: SecretStr | None = None
    # users and their password hashes (``synapse-stream console add-user``); default: <data_dir>/console-users.json
    console_users_file: str | None = None
    # session cookies only over HTTPS (set it behind TLS; off for http://127.0.0.1)
    console_secure_cookies: bool = False
    console_session_hours: float = Field(12.0, gt=0, le=24 * 30)
    console_lease_seconds: float = Field(120.0, gt=1, le=86_400)   # a candidate leased and not answered returns
    console_undo_seconds: float = Field(10.0, ge=0, le=600)        # a decision is held this long (undo) before publishing
    console_prefetch: int = Field(3, ge=1, le=20)                  # candidates leased to a moderator at once (shown + next)
    console_group: str = "synapse-console"                         # consumer group of the candidates topic
    console_stats_seconds: float = Field(30.0, gt=0, le=3600)      # a detector's numbers are sampled this often (the chart)
    console_llm_seeds: bool | None = None   # offer LLM seeds on the new-detector page (default: SYNAPSE_LLM_BASE_URL set)

    @field_validator("console_secret", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, v):
        # ``SYNAPSE_CONSOLE_SECRET=`` (docker-compose.yml's default) means "no secret", never an empty signing key
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return v

    def users_path(self) -> Path:
        return Path(self.console_users_file or os.path.join(self.data_dir, "console-users.json"))

    def session_secret(self) -> str:
        return self.console_secret.get_secret_value() if self.console_secret else secrets.token_urlsafe(32)

    def llm_seeds(self) -> bool:
        """Whether the new-detector page asks the LLM for seeds: ``console_llm_seeds``, else whether an LLM endpoint
        was configured (``SYNAPSE_LLM_BASE_URL``), not just the default."""
        if self.console_llm_seeds is not None:
            return self.console_llm_seeds
        return "llm_base_url" in self.model_fields_set
