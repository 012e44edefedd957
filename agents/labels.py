"""labels -> validate and route to the post's partition; verdicts (co-partitioned with posts) -> apply."""
from stream_app.faust_app import app, labels_topic, runtime, verdicts_topic


@app.agent(labels_topic)
async def route_labels(stream):
    async for events in stream.take_events(256, within=0.1):
        await runtime.handle_labels(events)


@app.agent(verdicts_topic)
async def apply_verdicts(stream):
    async for events in stream.take_events(256, within=0.1):
        await runtime.handle_verdicts(events)
