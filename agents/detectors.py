"""detectors (a compacted topic, read whole by every worker) -> create, change, pause or retire detectors live."""


def register(w) -> None:
    @w.app.task
    async def follow_detectors():
        await w.runtime.detector_feed.run()
