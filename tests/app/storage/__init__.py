"""The object store: both backends, the API on S3, garbage collection and migration."""
