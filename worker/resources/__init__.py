"""What a job may use on its machine: which device (``devices``), its share of a GPU shared
by several jobs (``gpu_share``), its memory cap (``memory``; the kernel's readings are in
``taas.app.core.kernel_memory``), and the watch that turns an out-of-memory kill into a clear
failure (``oom_watch``).

May import: ``taas.app.spec``, ``taas.app.core`` settings, ``taas.app.jobs.memory``, torch.
"""
