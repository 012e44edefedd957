"""The chaos run's crash-after-produce hook (dev stack only): a worker that dies right after the broker
acknowledged its candidates, before anything else learnt they were sent.

``python -m stream_app.devstack.crash_hook -A stream_app worker ...`` is ``python -m faust -A stream_app
worker ...``; with ``SYNAPSE_DEVSTACK_CRASH_AFTER_CANDIDATES=N`` (N >= 1) set, the worker SIGKILLs itself
as soon as the broker has acknowledged its N-th candidate (counted from the start of the process): after
the candidates are on the ``candidates`` topic but before the worker marks them sent in Redis (they stay
"in flight" under its worker id) and before the agent that found them returns, so the offsets of the
messages that led to them are not committed either. Just before the kill it logs one line::

    crash hook: SIGKILL after 2 candidates acknowledged, before confirming or committing: chaos/c-123 chaos/c-9

A restarted worker then gets those messages again, and the other workers find the dead worker's in-flight
candidates: neither may publish them a second time (``synapse-stream chaos --broker-kind kafka-cluster``
checks that a consumer of ``candidates`` sees each of them once). Without the variable the wrapper only
runs Faust's CLI. Production never runs this module (``stream_app/worker`` does not import the dev stack).
"""
from __future__ import annotations

import logging
import os
import signal
import sys

ENV_VAR = "SYNAPSE_DEVSTACK_CRASH_AFTER_CANDIDATES"
MARKER = "crash hook: SIGKILL after"


def install(after: int) -> None:
    """Patch the candidates' confirmation step (:meth:`CandidateOutbox.confirm`, awaited by ``Runtime._publish``
    once the broker acknowledged the candidates) to SIGKILL this process once ``after`` were acknowledged."""
    from stream_app.worker.service.outbox import CandidateOutbox

    original = CandidateOutbox.confirm
    acked: list[str] = []

    async def confirm(self, claims):
        acked.extend(f"{det}/{pid}" for det, pid in claims)
        if len(acked) >= after:
            msg = (f"{MARKER} {len(acked)} candidates acknowledged, before confirming or committing: "
                   f"{' '.join(acked)}")
            logging.getLogger("synapse.crash_hook").error(msg)
            print(msg, file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, claims)

    CandidateOutbox.confirm = confirm


def acknowledged_before_crash(log_text: str) -> list[tuple[str, str]]:
    """``(detector, post id)`` of the candidates a worker's log says it died with (the hook's line), or []."""
    for line in log_text.splitlines():
        if MARKER in line:
            return [tuple(x.split("/", 1)) for x in line.split("committing: ", 1)[1].split()]  # type: ignore[misc]
    return []


def main() -> None:
    after = int(os.environ.get(ENV_VAR) or 0)
    if after > 0:
        install(after)
    from faust.cli.faust import cli

    sys.argv[0] = "faust"
    cli()


if __name__ == "__main__":
    main()
