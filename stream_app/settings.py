"""One settings object for the service (pydantic-settings).

Values come, in priority order, from keyword arguments, environment variables prefixed
``SYNAPSE_`` (nested with ``__``, e.g. ``SYNAPSE_DETECTORS='[{"name": "scam", "tau": 0.6}]'``), a
``.env``-style file named by ``SYNAPSE_ENV_FILE`` (default ``synapse.env``), and the defaults below.
Credentials are :class:`~pydantic.SecretStr`: they print as ``**********`` in reprs, logs and errors.
"""
from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectorSettings(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    tau: float = Field(0.6, ge=-1.0, lt=1.0)
    d_max: int = Field(10, ge=1, le=10_000)
    description: str = ""
    # share of all posts sent to the oracle with reason "audit", uniformly at random and independent of
    # the detector, to estimate recall without ground truth (0 = no audit)
    audit_rate: float = Field(0.0, ge=0.0, le=1.0)
    # who answers candidates: "human" (moderators only), "llm" (the LLM rater only), or "llm_then_human"
    # (the LLM answers everything; a hash sample of llm_audit_rate is flagged human_audit for moderators)
    oracle_mode: Literal["human", "llm", "llm_then_human"] = "human"
    llm_audit_rate: float = Field(0.05, ge=0.0, le=1.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNAPSE_", env_nested_delimiter="__", env_file=os.environ.get("SYNAPSE_ENV_FILE", "synapse.env"),
        env_file_encoding="utf-8", extra="ignore",
    )

    # -- Kafka ---------------------------------------------------------------
    broker_url: str = "kafka://localhost:9092"
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    broker_ca_file: str | None = None
    embedded_broker: bool = False   # Tansu quirks (dev/test only): small batches, short sessions
    producer_idempotence: bool = True   # idempotent producer on real Kafka (ignored on the embedded broker)
    topic_prefix: str = "synapse."
    partitions: int = Field(4, ge=1, le=1024)
    replication: int = Field(1, ge=1)
    app_id: str = "synapse-stream"

    # -- Redis ---------------------------------------------------------------
    redis_url: str = "redis://localhost:6379/0"
    redis_password: SecretStr | None = None
    redis_ssl_ca_file: str | None = None
    redis_prefix: str = "synapse:"

    # -- model and method ----------------------------------------------------
    embedder: str = "minilm"
    torch_threads: int | None = None
    embed_batch_size: int = Field(32, ge=1, le=4096)
    embed_within: float = Field(0.5, gt=0, le=60)   # seconds to wait to fill a micro-batch
    detectors: list[DetectorSettings] = Field(default_factory=lambda: [DetectorSettings(name="default")])
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 64
    audit_salt: SecretStr = SecretStr("synapse-audit")   # keep secret: posters must not predict audits
    audit_confidence: float = Field(0.95, gt=0, lt=1)
    max_text_chars: int = 20_000
    max_message_bytes: int = 1_000_000

    # -- LLM for synthetic seeds (any OpenAI-compatible chat-completions endpoint) --------
    llm_base_url: str = "http://localhost:11434/v1"   # Ollama's default; OpenAI: https://api.openai.com/v1
    llm_model: str = "llama3.1"
    llm_api_key: SecretStr | None = None
    llm_calls_per_minute: float | None = Field(None, gt=0)   # the LLM rater's budget (None = unlimited)
    llm_max_calls: int | None = Field(None, ge=0)

    # -- worker --------------------------------------------------------------
    data_dir: str = ".synapse-data"
    snapshot_interval: float = 60.0
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    health_stall_seconds: float = Field(60.0, gt=0)   # lag with no progress for this long = unhealthy
    log_level: str = "info"

    @field_validator("detectors")
    @classmethod
    def _unique_detectors(cls, v):
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        if not v:
            raise ValueError("at least one detector is needed")
        return v

    @model_validator(mode="after")
    def _check_sasl(self):
        if self.broker_security_protocol.startswith("SASL") and not (self.broker_username and self.broker_password):
            raise ValueError("SASL needs broker_username and broker_password")
        return self

    # -- derived -------------------------------------------------------------
    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def detector(self, name: str) -> DetectorSettings | None:
        return next((d for d in self.detectors if d.name == name), None)

    def redis_kwargs(self) -> dict:
        kw: dict = {}
        if self.redis_password is not None:
            kw["password"] = self.redis_password.get_secret_value()
        if self.redis_ssl_ca_file:
            kw["ssl_ca_certs"] = self.redis_ssl_ca_file
        return kw

    def bootstrap_servers(self) -> str:
        return ",".join(u.split("://", 1)[-1] for u in self.broker_url.split(";"))
