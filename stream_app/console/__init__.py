"""The review console (``synapse-stream console``): a web app, a process of its own beside the workers.

It consumes the ``candidates`` topic (its own consumer group) into a Redis queue of leases (``queue.py``,
``queue_redis.py``), shows moderators one candidate at a time with why it was suggested (``why.py``), holds each
decision for an undo grace period and then publishes it to ``labels`` (``publisher.py``), and gives analysts
pages per detector and a new-detector flow. ``app.create_app(settings, ...)`` builds it; nothing is wired at
import, and nothing here imports Faust.
"""
