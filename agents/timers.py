"""Background work: the seed-log reader (broadcast), candidate rounds, the classifier, gauges, shard
snapshots, rebalances."""
import asyncio
import logging

log = logging.getLogger("synapse.agents")


def register(w) -> None:
    app, runtime, settings = w.app, w.runtime, w.settings

    @app.task
    async def read_seed_log():
        svc = await runtime.get()
        while not app.should_stop:
            try:
                await runtime.publish(await runtime.retry(svc.poll_seedlog, 1000, what="read seed log"))
            except Exception as exc:  # noqa: BLE001 - counted and logged; the loop goes on
                runtime.crashed("read_seed_log", exc)
                await asyncio.sleep(1.0)
            await asyncio.sleep(0)

    @app.timer(interval=2.0)
    async def refresh_gauges():
        if runtime.service is not None:
            try:
                await runtime.service.refresh_gauges()
            except Exception as exc:  # noqa: BLE001 - a failed refresh must not stop the timer
                log.warning("gauge refresh failed: %s", exc)

    @app.timer(interval=settings.snapshot_interval)
    async def snapshot_shards():
        if runtime.service is not None:
            await runtime.service.snapshot()

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs):
        await runtime.on_assigned(assigned)

    @app.on_before_shutdown.connect
    async def on_shutdown(app_, **kwargs):
        if runtime.service is not None:
            saved = await runtime.service.snapshot()
            log.info("snapshot of shards %s saved on shutdown", saved)

    @app.timer(interval=settings.retention_check_seconds)
    async def expire_window():
        """Drop the segments that left the retention window, and what is keyed by their posts."""
        await runtime.tick("expire_window", "expire_window")

    @app.timer(interval=0.5)
    async def expire_on_seal():
        """The same as soon as a segment sealed (a backlog caught up after a restart fills segments fast)."""
        if runtime.service is not None and runtime.service.retention.sealed():
            await runtime.tick("expire_window", "expire_window")

    @app.timer(interval=5.0)
    async def send_waiting_candidates():
        """Send the candidates that waited for room in a detector's hourly budget, once the hour has room."""
        if runtime.service is not None and runtime.service.pending:
            await runtime.tick("send_waiting_candidates", "send_waiting")

    @app.timer(interval=1.0)
    async def release_held_labels():
        """Route labels held for posts that have now arrived; dead-letter those whose hold expired."""
        await runtime.tick("release_held_labels", "release_held_labels")

    @app.timer(interval=2.0)
    async def heartbeat_and_recover():
        """Keep this worker's heartbeat alive; re-send in-flight candidates of dead workers."""
        if runtime.service is None:
            return
        try:
            await runtime.service.state.workers.heartbeat(runtime.service.worker_id)
            await runtime.recover_orphans()
        except Exception as exc:  # noqa: BLE001 - Redis or broker down: the next tick tries again
            log.warning("heartbeat/orphan recovery failed: %s", exc)

    @app.task
    async def candidate_rounds():
        """Plan the rounds that are due (detectors whose candidates come from the policy or one source),
        checking every ``round_check_interval`` s; a round may take longer than that (a loop, not a timer,
        so rounds never overlap)."""
        while not app.should_stop:
            await asyncio.sleep(settings.round_check_interval)
            svc = runtime.service
            if svc is None or not svc.rounds:
                continue
            try:
                out = await runtime.retry(svc.run_rounds, what="candidate round")
            except Exception as exc:  # noqa: BLE001 - counted and logged; the next check tries again
                runtime.crashed("candidate_rounds", exc)
                continue
            await runtime.publish(out)

    @app.timer(interval=5.0)
    async def classifier():
        """Load classifier versions trained by any worker; retrain when verdicts arrived (rate-limited)."""
        if runtime.service is None:
            return
        svc = runtime.service
        try:
            for name in svc.engines:
                await svc.maybe_train(name)
            await svc.refresh_models()
        except Exception as exc:  # noqa: BLE001 - Redis down: the next tick tries again
            log.warning("classifier refresh failed: %s", exc)
