"""posts -> embed in micro-batches (off the event loop) -> index -> candidates."""
from stream_app.faust_app import app, posts_topic, runtime, settings


@app.agent(posts_topic)
async def ingest_posts(stream):
    async for events in stream.take_events(settings.embed_batch_size, within=settings.embed_within):
        await runtime.handle("handle_posts", events)
