"""The worker's error rules: which exceptions are transient (retry the call) and which belong to one
message (dead-letter it and go on).

The error boundary (``stream_app.worker.service.boundary.ErrorBoundary.each``) sends every exception raised while handling one message
to the dead-letter topic: a :class:`~synapse_stream.exceptions.MessageError` with its own ``reason``, any
other exception with reason ``internal_error`` and :func:`describe`'s detail. Only the transient errors
below (a Redis or broker connection that failed) leave the boundary, for the runtime to retry the call.
"""
from __future__ import annotations

import asyncio
import functools
import os
import traceback

from synapse_stream.exceptions import SynapseError

INTERNAL_ERROR = "internal_error"


class WorkerError(SynapseError):
    """A worker-side failure that is not the fault of one message (e.g. a shard replay that cannot finish)."""


class TopicAdminError(WorkerError):
    """The broker refused to create or describe topics."""


class BrokerAuthError(WorkerError):
    """The broker refused the worker's credentials (SASL) or its TLS certificate did not verify: a setting is
    wrong, retrying cannot help. The message names the broker, user and mechanism, never the password."""


@functools.cache
def transient_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of Redis and the broker: the call is retried, the message is not at fault."""
    import redis.exceptions as rexc
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        NodeNotReadyError,
        RequestTimedOutError,
    )

    return (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, OSError, asyncio.TimeoutError,
            KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, transient_errors())


def describe(exc: BaseException) -> str:
    """The exception's type and where it was raised (file:line, function), never its message: a message
    may quote the post's text or a secret.

    >>> try:
    ...     "\\ud800".encode("utf-8")
    ... except UnicodeError as e:
    ...     describe(e).split(" at ")[0]
    'UnicodeEncodeError'
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
    return f"{type(exc).__name__}{where}"


def frames(exc: BaseException, limit: int = 8) -> str:
    """The innermost ``limit`` frames of the traceback, one ``file:line in function`` per line, for the log
    (no source lines and no message: either could quote a post)."""
    return "\n".join(f"  {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
                     for f in traceback.extract_tb(exc.__traceback__)[-limit:])
