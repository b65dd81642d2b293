"""Settings: one object, read from the environment (prefix ``TAAS_``), cached behind get_settings().

The defaults serve one machine with no external server: SQLite, a filesystem broker and artifacts
under ``TAAS_HOME``. Production points the URLs at PostgreSQL and Redis.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taas.app.core.rate_limits import parse_rate_limit
from taas.app.spec import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAAS_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path(".taas")
    database_url: str | None = None
    broker_url: str | None = None
    artifact_dir: Path | None = None
    dataset_dir: Path | None = None  # uploaded datasets (API side)
    data_dir: Path | None = None
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    worker_token: str | None = None
    # On SIGTERM or Ctrl-C the API waits this long for open requests; live streams never end on
    # their own, so past it they are closed (their clients reconnect to another API or later).
    shutdown_grace_seconds: int = Field(default=10, ge=0)

    # Which Celery queue a job goes to; `device: auto` jobs go to `default_queue`.
    default_queue: str = "cpu"
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    # Each attempt may run for training.max_seconds (or max_job_seconds when the spec sets none)
    # plus this grace, for loading data, the final evaluation and exports; past it the worker
    # stops the job and it fails as `timeout`.
    time_limit_grace_seconds: float = Field(default=600.0, ge=0)
    # A job whose worker stops heartbeating is run again, at most this many attempts in all.
    max_attempts: int = Field(default=3, ge=1, le=100)
    # The reconciler's period, and how long a queued job waits for a claim before it is sent to
    # the broker again (doubling each time, up to 32x).
    reconcile_seconds: float = Field(default=5.0, gt=0)
    requeue_after_seconds: float = Field(default=60.0, gt=0)
    # Checkpoint artifacts kept per job (the latest epochs); a new attempt resumes from the last.
    keep_checkpoints: int = Field(default=2, ge=1)
    # Below this many free bytes in a storage location (the SQLite database's folder, artifacts,
    # uploaded datasets; a worker's scratch), new jobs, uploads and claims are refused with 507
    # and /readyz says which location is low; work already running may still write.
    min_free_bytes: int = Field(default=1024**3, ge=0)
    # How long a worker keeps retrying a write the API refused for lack of space (507) before
    # it gives up on the attempt (a checkpoint is skipped at once instead: training goes on).
    storage_wait_seconds: float = Field(default=600.0, ge=0)
    # Days after a job ended that its checkpoints, and all its artifacts, are deleted (none:
    # kept until the job is deleted). The reconciler deletes them.
    checkpoint_retention_days: float | None = Field(default=None, gt=0)
    artifact_retention_days: float | None = Field(default=None, gt=0)
    # Where artifacts, checkpoints and uploaded datasets live: unset, the filesystem
    # (artifact_dir, dataset_dir); ``s3://bucket/prefix``, any S3-compatible store, with
    # endpoint, region and credentials from the standard AWS configuration (AWS_ENDPOINT_URL,
    # AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ~/.aws).
    storage_url: str | None = None
    # How users download from object storage: ``proxy`` streams the bytes through the API
    # (Range, ETag); ``redirect`` answers 307 to a presigned URL of the store (needs
    # AWS_ENDPOINT_URL reachable by clients).
    storage_downloads: Literal["proxy", "redirect"] = "proxy"
    # Lifetime of the presigned URLs handed out: workers and redirected downloads use them at
    # once; presigned dataset uploads get storage_upload_url_seconds (a big file takes a while).
    storage_url_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    storage_upload_url_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    # An object that no database row names and is older than this is an orphan (a crash
    # between writing and recording it): `taas storage gc` and the daily pass delete it.
    storage_orphan_seconds: float = Field(default=6 * 3600.0, gt=0)
    # How long an Idempotency-Key on POST /v1/jobs is remembered.
    idempotency_ttl_seconds: float = Field(default=24 * 3600.0, gt=0)

    # Jobs one tenant may have queued or running at once: a runaway script cannot bury the
    # queue that other tenants share.
    max_active_jobs_per_tenant: int = Field(default=1000, ge=1)
    # Jobs one tenant may have running (or sent to a worker) at once on a queue; unset: as many
    # as there are free workers. A tenant's own `max_running` overrides it.
    max_running_per_tenant: int | None = Field(default=None, ge=1)
    # How often a worker tells the API it is alive, with its queues and job slots; the API sends
    # jobs only to the slots of workers heard from within three periods.
    presence_seconds: float = Field(default=5.0, gt=0)
    # Requests per API key, in moving windows (`limits` notation, policies separated by ';';
    # "off" turns limiting off). Shared by all API processes through Redis when the broker is
    # Redis, counted per process otherwise. The defaults let a dashboard and a few scripts work
    # on one key, and stop a runaway loop long before it hurts other tenants.
    rate_limit: str = "20/second;600/minute"
    # Scraping /metrics needs `Authorization: Bearer <this>` when set; unset, /metrics is open
    # (it holds counts by route template, status, queue and error type, never ids or tenants).
    metrics_token: str | None = None
    # "text" for a person at a terminal; "json" for one JSON object per log line (a log
    # pipeline), from the API (uvicorn's access log included) and the worker (Celery's too).
    log_format: Literal["text", "json"] = "text"

    # Webhooks. Receivers on loopback, private, link-local or metadata addresses are refused
    # unless this is true (`taas serve` sets it: a developer's receivers are on localhost).
    webhook_allow_private: bool = False
    # Each API process runs a sender for due deliveries; false leaves sending to the others.
    webhook_sender: bool = True
    webhook_max_endpoints_per_tenant: int = Field(default=20, ge=1)
    # Seconds before each attempt of a delivery (Standard Webhooks' schedule: at once, 5 s,
    # 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); after the last one fails it gives up. In the
    # environment, comma-separated seconds.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
    )  # fmt: skip
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often each API process looks for due deliveries besides being woken by a commit that
    # wrote some (deliveries written by another process, retries coming due).
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    max_json_bytes: int = 1_000_000
    max_artifact_bytes: int = 4 * 1024**3
    max_epochs: int = 200
    max_batch_size: int = 4096
    max_width: int = 4096
    max_parameters: int = 50_000_000
    max_job_seconds: float = 24 * 3600.0
    max_synthetic_samples: int = 200_000
    max_synthetic_bytes: int = 1024**3
    # A job must fit the largest worker at submit (its estimated peak, app/jobs/memory.py): the
    # memory of the largest CPU worker host, and of the largest GPU.
    max_worker_memory_bytes: int = Field(default=64 * 1024**3, gt=0)
    max_gpu_memory_bytes: int = Field(default=80 * 1024**3, gt=0)
    # A worker's own budget at claim; unset, it is the memory free right now (the host's, or
    # its cgroup's; a GPU's free memory for a cuda job).
    worker_memory_bytes: int | None = Field(default=None, gt=0)

    # Built-in datasets missing from the data dir are downloaded only when this is true.
    allow_download: bool = False
    # A worker keeps the uploaded datasets it fetched up to this size, evicting the least
    # recently used.
    dataset_cache_bytes: int = Field(default=20 * 1024**3, ge=0)
    # Dataset uploads: the body cap is enforced while it streams in, the rest once it is on disk.
    max_upload_bytes: int = 1024**3
    # A dataset put straight into object storage (POST /v1/dataset-uploads, presigned URLs)
    # never passes through the API's memory, so it may be larger than one sent to the API.
    max_direct_upload_bytes: int = 5 * 1024**3
    max_dataset_samples: int = 2_000_000
    min_train_samples: int = 10
    max_dataset_classes: int = 1000
    max_values_per_sample: int = 3 * 256 * 256
    max_zip_entries: int = 200_000
    max_uncompressed_bytes: int = 8 * 1024**3
    max_compression_ratio: float = Field(default=200.0, gt=1.0)
    max_image_pixels: int = 4096 * 4096

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        parse_rate_limit(value)  # a ValueError that names TAAS_RATE_LIMIT and the value
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = tuple(float(item) for item in value.split(",") if item.strip())
            except ValueError as error:
                raise ValueError(
                    f"TAAS_WEBHOOK_RETRY_SCHEDULE has value {value!r}: "
                    "not a comma-separated list of seconds"
                ) from error
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_is_sane(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError(
                f"TAAS_WEBHOOK_RETRY_SCHEDULE has value {value!r}: "
                "give at least one delay, none negative"
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'taas.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Where the embedded filesystem broker keeps its messages."""
        return (self.home / "broker").resolve()

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith("s3://") or not value[5:].split("/", 1)[0]:
            raise ValueError(f"storage_url {value!r}: give s3://bucket or s3://bucket/prefix")
        return value

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.home / "artifacts").resolve()

    @property
    def resolved_dataset_dir(self) -> Path:
        """Where the API keeps uploaded datasets in their canonical form."""
        return (self.dataset_dir or self.home / "datasets").resolve()

    @property
    def worker_scratch_dir(self) -> Path:
        """Where a worker writes a job's checkpoints before uploading them."""
        return (self.home / "checkpoints").resolve()

    @property
    def dataset_cache_dir(self) -> Path:
        """Where a worker keeps the uploaded datasets it fetched, by sha256, for later jobs."""
        return (self.home / "cache" / "datasets").resolve()

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    @property
    def auto_device(self) -> Literal["cpu", "cuda"]:
        """Where a ``device: auto`` job runs: on the GPU queue's workers, or a CPU."""
        return "cuda" if self.default_queue == "gpu" else "cpu"

    @property
    def limits(self) -> Limits:
        return Limits(
            max_epochs=self.max_epochs,
            max_batch_size=self.max_batch_size,
            max_width=self.max_width,
            max_parameters=self.max_parameters,
            max_seconds=self.max_job_seconds,
            max_synthetic_samples=self.max_synthetic_samples,
            max_synthetic_bytes=self.max_synthetic_bytes,
        )

    def check_production_safety(self) -> None:
        """Refuse defaults that are only safe on a developer's machine."""
        if self.environment != "production":
            return
        problems = []
        if not self.worker_token or len(self.worker_token) < 24:
            problems.append("TAAS_WORKER_TOKEN must be set to a random string of 24+ characters")
        if self.database_url is None or self.database_url.startswith("sqlite"):
            problems.append("TAAS_DATABASE_URL must point at PostgreSQL")
        if problems:
            raise RuntimeError("unsafe production settings: " + "; ".join(problems))


@lru_cache
def get_settings() -> Settings:
    return Settings()
