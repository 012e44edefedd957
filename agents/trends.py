"""trends (compacted, one partition, read whole by every worker) -> decisions applied; new proposals named by the LLM."""


def register(w) -> None:
    if not w.settings.trends:
        return

    @w.app.timer(interval=w.settings.trends_decisions_interval)
    async def follow_trend_decisions():
        if w.runtime.service is not None:
            await w.runtime.trend_decisions()

    if w.settings.trends_llm_naming:
        @w.app.timer(interval=5.0)
        async def name_trend_proposals():
            if w.runtime.service is not None:
                await w.runtime.name_trends()
