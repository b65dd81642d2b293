"""The routes workers call, with the worker token: claim a job, heartbeat, report metrics and
events, upload checkpoints and artifacts, finish. A write from a stale attempt is refused.

May import: ``core``, ``observability`` and the domain services whose state a worker reports.
"""
