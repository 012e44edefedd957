"""seeds -> embed -> register in Redis and the seed log (every worker then backfills its shards)."""


def register(w) -> None:
    @w.app.agent(w.seeds, name="ingest_seeds")
    async def ingest_seeds(stream):
        async for events in stream.take_events(64, within=0.2):
            await w.runtime.handle_seeds(events)
