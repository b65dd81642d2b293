"""The private servers a test session starts where none runs: they answer, restart in place, and
never outlive a session that is killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    postgres_answers,
    private_folder,
    redis_answers,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder() -> Iterator[Path]:
    path = private_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_keeps_its_data_across_a_restart(folder: Path) -> None:
    server = PrivatePostgres(folder)
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int)")
            connection.execute("INSERT INTO kept VALUES (7)")
        server.restart()
        with psycopg.connect(server.url) as connection:
            assert connection.execute("SELECT n FROM kept").fetchone() == (7,)
    finally:
        server.stop()
    assert not postgres_answers(server.url)


def test_redis_comes_back_empty_from_a_restart(folder: Path) -> None:
    server = PrivateRedis(folder)
    server.start()
    try:
        redis.Redis.from_url(server.url).set("message", "waiting")
        server.restart()
        assert redis.Redis.from_url(server.url).get("message") is None
    finally:
        server.stop()


def test_servers_die_with_the_session_that_started_them_even_on_sigkill(folder: Path) -> None:
    session = subprocess.Popen(
        [sys.executable, "-c", SESSION.format(folder=str(folder))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert session.stdout is not None
    postgres_url, redis_url = session.stdout.readline().split()
    assert postgres_answers(postgres_url)
    assert redis_answers(redis_url)

    session.send_signal(signal.SIGKILL)  # no cleanup of its own at all
    session.wait(timeout=10)
    session.stdout.close()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any_answers(postgres_url, redis_url):
        time.sleep(0.2)
    assert not postgres_answers(postgres_url)
    assert not redis_answers(redis_url)


def any_answers(postgres_url: str, redis_url: str) -> bool:
    return postgres_answers(postgres_url) or redis_answers(redis_url)


SESSION = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from tests.private_servers import PrivatePostgres, PrivateRedis
    postgres, redis = PrivatePostgres(Path({folder!r})), PrivateRedis(Path({folder!r}))
    postgres.start()
    redis.start()
    print(postgres.url, redis.url, flush=True)
    time.sleep(600)
    """
)
