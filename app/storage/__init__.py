"""Where the bytes that outlive a worker live: artifacts, checkpoints and uploaded datasets.

One interface (``ObjectStore``, keys to bytes) with two backends: the filesystem, the embedded
default, and any S3-compatible object store (``TAAS_STORAGE_URL=s3://bucket/prefix``). A backend
knows bytes and keys, never jobs: the services decide what is kept and what is deleted.
"""
