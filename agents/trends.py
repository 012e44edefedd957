"""trends (compacted, one partition, read whole by every worker) -> accept/reject decisions applied to the stage."""


def register(w) -> None:
    if not w.settings.trends:
        return

    @w.app.timer(interval=w.settings.trends_decisions_interval)
    async def follow_trend_decisions():
        if w.runtime.service is not None:
            await w.runtime.trend_decisions()
