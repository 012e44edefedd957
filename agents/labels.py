"""labels -> validate and route to the post's partition; verdicts (co-partitioned with posts) -> apply."""


def register(w) -> None:
    @w.app.agent(w.labels, name="route_labels")
    async def route_labels(stream):
        async for events in stream.take_events(256, within=0.1):
            await w.runtime.handle_labels(events)

    @w.app.agent(w.verdicts, name="apply_verdicts")
    async def apply_verdicts(stream):
        async for events in stream.take_events(256, within=0.1):
            await w.runtime.handle_verdicts(events)
