"""Keep secrets out of everything brokerbench writes or prints.

One rule set, used everywhere (plans, result.json, reports, logs, error messages):

- a mapping's value is secret when its key looks like one (``is_secret_key``: password,
  secret, token, credentials, API or private keys, every ``sasl.*`` setting): it is written as
  ``MASK``;
- a URL's password is secret wherever the URL appears (``postgresql://user:pw@host/db`` is
  written ``postgresql://user:***@host/db``, as SQLAlchemy's ``hide_password`` does);
- a secret value seen once (``remember``) is masked in free text too (``scrub``), for error
  messages and logs that quote it without its key.

``split`` and ``merge`` carry a document's secrets apart from the document, so a plan file can
be written without them (``harness/load/plan_file.py``).
"""

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
"""What a secret is written as (SQLAlchemy's mask for a URL's hidden password)."""

_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|credential|authorization|bearer|api[-_.]?key"
    r"|private[-_.]?key|ssl\.key\.pem|^sasl[._]|[._]sasl[._]",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)")
_SHORTEST_REMEMBERED = 4
"""Shorter values are not masked in free text: too many innocent words would be."""

_known: set[str] = set()
_known_lock = threading.Lock()

KeyPath = tuple[str | int, ...]
"""Where a value sits in a document: its keys and list indices from the top."""


def is_secret_key(key: str) -> bool:
    """Whether the value under ``key`` (a settings or config key) is a secret."""
    return bool(_SECRET_KEY.search(key))


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    return _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text``."""
    return [m["password"] for m in _URL_PASSWORD.finditer(text) if m["password"] != MASK]


def remember(values: Iterable[str]) -> None:
    """Mask these values in every later ``scrub`` (and ``redact``) in this process."""
    with _known_lock:
        _known.update(v for v in values if len(v) >= _SHORTEST_REMEMBERED and v != MASK)


def scrub(text: str) -> str:
    """``text`` with URL passwords and every remembered secret value masked."""
    text = redact_url(text)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _is_empty(value: Any) -> bool:
    return value is None or value in ("", MASK, {}, [])


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with every secret masked:
    values under secret keys, URL passwords, remembered secrets in any string."""
    return _walk(value, (), None)


def split(value: Any) -> tuple[Any, list[tuple[KeyPath, Any]]]:
    """(``redact(value)``, the secrets it masked as ``(path, original value)``): ``merge`` puts
    them back."""
    secrets: list[tuple[KeyPath, Any]] = []
    return _walk(value, (), secrets), secrets


def merge(value: Any, secrets: Iterable[tuple[KeyPath, Any]]) -> Any:
    """``value`` (a ``split`` document, changed in place) with its secrets put back."""
    for path, original in secrets:
        if not path:
            return original
        node = value
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = original
    return value


def _walk(value: Any, path: KeyPath, secrets: list[tuple[KeyPath, Any]] | None) -> Any:
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            here = (*path, key)
            if isinstance(key, str) and is_secret_key(key) and not _is_empty(item):
                if secrets is not None:
                    secrets.append((here, item))
                result[key] = MASK
            else:
                result[key] = _walk(item, here, secrets)
        return result
    if isinstance(value, list | tuple):
        return [_walk(item, (*path, index), secrets) for index, item in enumerate(value)]
    if isinstance(value, str):
        masked = scrub(value)
        if masked != value and secrets is not None:
            secrets.append((path, value))
        return masked
    return value


def secret_values(value: Any) -> list[str]:
    """Every secret string in a JSON-like value (under secret keys, and URL passwords), to
    ``remember``."""
    return secret_texts(split(value)[1])


def secret_texts(secrets: Iterable[tuple[KeyPath, Any]]) -> list[str]:
    """The strings to ``remember`` of what ``split`` set apart: a URL's password (not the whole
    URL), a secret key's value."""
    return [text for _, original in secrets for text in _strings(original)]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, str):
        passwords = url_passwords(value)
        return passwords or [value]
    return [] if value is None or isinstance(value, bool) else [str(value)]
