"""seeds -> embed -> register in Redis and the seed log (every worker then backfills its shards)."""
from stream_app.faust_app import app, runtime, seeds_topic


@app.agent(seeds_topic)
async def ingest_seeds(stream):
    async for events in stream.take_events(64, within=0.2):
        await runtime.handle_seeds(events)
