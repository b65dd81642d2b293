"""What the worker's log says when the broker goes away: one line, not a traceback."""

from __future__ import annotations

import logging
import sys

from taas.worker.celery_app import BrokerLossInOneLine


def test_an_acknowledgement_lost_with_the_broker_is_one_warning_line() -> None:
    try:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    except ConnectionError:
        record = logging.LogRecord(
            "kombu", logging.CRITICAL, __file__, 1, "Couldn't ack %r, reason:%r", ("t1", "x"), None
        )
        record.exc_info = sys.exc_info()

    assert BrokerLossInOneLine().filter(record)
    text = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert text.splitlines() == [
        "WARNING could not acknowledge a message, the broker is gone: "
        "ConnectionError('Error 111 connecting to 127.0.0.1:6379. Connection refused.')"
    ]


def test_other_records_keep_their_traceback() -> None:
    try:
        raise ValueError("a bug")
    except ValueError:
        record = logging.LogRecord("taas", logging.ERROR, __file__, 1, "job failed", (), None)
        record.exc_info = sys.exc_info()

    assert BrokerLossInOneLine().filter(record)
    assert "Traceback" in logging.Formatter().format(record)
