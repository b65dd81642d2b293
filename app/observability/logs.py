"""Log formats and the secrets that never reach a log line.

``TAAS_LOG_FORMAT=json`` makes every line one JSON object: time, level, logger, message, and
the request id, tenant, job id and attempt where they apply (request_context.py). Text, the
default, is for a person at a terminal. Either way a redacting filter on every handler
removes API keys, worker and metrics tokens, webhook secrets and passwords in URLs: nothing
should log them in the first place, and this is the net under that rule.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from taas.app.core.config import Settings, get_settings
from taas.app.observability import request_context

REDACTED = "[redacted]"
# Secrets recognised by their shape, whatever their value.
SECRET_SHAPES = (
    # API keys: taas_<12 hex>_<token> (app/auth/service.py).
    (re.compile(r"taas_[0-9a-f]{12}_[A-Za-z0-9_-]+"), f"taas_{REDACTED}"),
    # Webhook signing secrets (Standard Webhooks).
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), f"whsec_{REDACTED}"),
    # Whatever follows "Bearer" in a header that found its way into a message.
    (re.compile(r"(?i)(bearer\s+)[^\s'\",;]+"), rf"\g<1>{REDACTED}"),
    # The password in scheme://user:password@host (database and broker URLs).
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@"), rf"\g<1>{REDACTED}@"),
)
# Known secret values shorter than this are left to the shapes above: replacing a short
# password everywhere would garble ordinary words ("taas:taas@postgres").
MIN_LITERAL_LENGTH = 8


def known_secrets(settings: Settings) -> list[str]:
    """This deployment's own secret values: the tokens, and the passwords in its URLs."""
    values = [settings.worker_token, settings.metrics_token]
    for url in (settings.database_url, settings.broker_url):
        match = re.match(r"[^:]+://[^:/@]*:([^@]+)@", url or "")
        values.append(match.group(1) if match else None)
    return sorted({v for v in values if v and len(v) >= MIN_LITERAL_LENGTH}, key=len, reverse=True)


def redact(text: str, literals: list[str]) -> str:
    for literal in literals:
        text = text.replace(literal, REDACTED)
    for shape, replacement in SECRET_SHAPES:
        text = shape.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """On a handler: rewrites the record's message, arguments and traceback without secrets.
    Arguments are redacted one by one (not merged into the message), so a formatter that reads
    them (uvicorn's access log) still works."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.literals = known_secrets(settings or get_settings())

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self.literals)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._clean(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.literals)
        return True

    def _clean(self, value: Any) -> Any:
        if value is None or isinstance(value, int | float):
            return value  # a %d argument must stay a number
        text = str(value)
        cleaned = redact(text, self.literals)
        return value if cleaned == text else cleaned


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is a field, newlines escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = request_context.current()
        if context is not None:
            line.update(context.fields())
        line.update(_access_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line, also as fields a log pipeline can filter on."""
    if record.name != "uvicorn.access" or not isinstance(record.args, tuple):
        return {}
    if len(record.args) != 5:
        return {}
    client, method, path, _version, status = record.args
    return {"client": client, "method": method, "path": path, "status": status}


def formatter(settings: Settings, text_format: str) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter()
    return logging.Formatter(text_format)


def start_json_logging(settings: Settings) -> None:
    """A process that logs JSON (the worker, before Celery sets up its logging): from the
    first line on, Python's warnings included, everything on stderr is a JSON line. Celery
    then keeps this handler, since the root logger already has one."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(settings))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """`taas api`'s logging (uvicorn applies it in each of its worker processes): uvicorn's own
    configuration, with the redacting filter on every handler, our loggers' INFO lines on
    stderr too, and in JSON mode the JSON formatter everywhere."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    if settings.log_format == "json":
        config["formatters"] = {name: {"()": JsonFormatter} for name in config["formatters"]}
    config["root"] = {"handlers": ["default"], "level": "INFO"}
    # One line per request is uvicorn.access's job; httpx would add one per outgoing call.
    config["loggers"]["httpx"] = {"level": "WARNING"}
    return config
