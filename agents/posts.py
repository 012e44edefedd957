"""posts -> embed in micro-batches (off the event loop) -> index -> candidates.

Pipelined (``Runtime.submit_posts``): the agent begins a micro-batch (parse, partition map, hand it to
the model thread) and takes the next one while the previous batch's claims and publishes are awaited;
each batch's offsets are committed only once it is finished.
"""


def register(w) -> None:
    @w.app.agent(w.posts, name="ingest_posts")
    async def ingest_posts(stream):
        async for events in stream.take_events(w.settings.posts_batch_size(), within=w.settings.embed_within):
            await w.runtime.submit_posts(events)
        await w.runtime.flush_posts()   # the stream ended (shutdown): finish what was begun
