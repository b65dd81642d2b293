"""The worker, installed as ``taas.worker``: a Celery process that takes job ids, claims each
job from the API over HTTP and runs the trainer. It holds no database credentials.

- ``celery_app`` and ``tasks``: the Celery side, thin: a task takes an id and hands it on.
- ``runner``: one attempt from claim to finish, with its heartbeat and time limit.
- ``training``: within it, load the data, train, upload the model files, and say how it ended.
- ``context``: the ``JobContext`` the trainer reports through, and ``SHUTTING_DOWN``.
- ``reporter``: every call to the API (claim, heartbeat, metrics, checkpoints, artifacts).
- ``progress`` and ``presence``: what the worker says while it works and that it is alive.
- ``resources/``: devices, GPU sharing, memory caps and the out-of-memory watch.
- ``datasets/``: a dataset's files fetched from the API and cached by content hash.
- ``trainer/``: pure PyTorch, reached only through a small context object.

Import rules: the worker never imports ``taas.app.main`` or any router; from ``taas.app`` it
uses ``spec``, ``core`` settings, ``observability`` logs, the broker's names and the jobs'
memory estimate (``jobs.memory``, the same numbers the API admits a job by).
"""
