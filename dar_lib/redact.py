"""Credentials out of everything the project writes: one function, :func:`redact`, for ids, URLs, messages and
records."""

from __future__ import annotations

import logging
import re

#: What a redacted credential is replaced with.
MASK = "***"

# A query or form parameter whose name says it carries a credential (api-key, key, token,
# access_token, sig, signature, secret, password, X-Amz-Credential, ...), preceded by ?, &, ; or a
# space so that ordinary words are left alone.
_PARAM = re.compile(r"(?i)(?P<name>(?:(?<=[?&;\s])|^)[\w.\-]*?(?:key|token|sig|signature|secret|passw(?:or)?d|pwd|"
                    r"credential|auth)[\w.\-]*=)(?P<value>[\w\-.~%+/=:]+)")
# The password of a URL's userinfo (``scheme://user:password@host``, also after ``openai:model@``).
_USERINFO = re.compile(r"(?P<pre>(?:://|@))(?P<user>[^\s/@:?#]*):(?P<pw>[^\s/@?#]+)@")
# A bearer token, and an OpenAI-style secret key wherever it appears.
_BEARER = re.compile(r"(?i)(?P<pre>\bbearer\s+)[^\s'\"]+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact(text):
    """``text`` with every credential it holds replaced by ``***``; other values are returned unchanged.

    Redacted: the password of a URL's userinfo (``https://user:KEY@host`` -> ``https://user:***@host``),
    the value of every query parameter named like a credential (``?api-key=KEY``, ``&key=``,
    ``&token=``, ``&sig=``, ``&access_token=``, ``&X-Amz-Signature=``, ...; ``?api-version=`` is
    kept), ``Bearer <token>`` and OpenAI-style ``sk-...`` keys. Every CSV column, record, log line,
    status page and error message that shows a model id or URL goes through this function.

    Args:
        text: any value; only a ``str`` is changed.

    Returns:
        The redacted string (or ``text`` itself when it is not a string).

    Examples:
        >>> redact("openai:gpt-4o@https://u:s3cret@host/v1?api-version=2024-06-01&api-key=s3cret")
        'openai:gpt-4o@https://u:***@host/v1?api-version=2024-06-01&api-key=***'
    """
    if not isinstance(text, str):
        return text
    text = _USERINFO.sub(lambda m: f"{m['pre']}{m['user']}:{MASK}@", text)
    text = _PARAM.sub(lambda m: f"{m['name']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['pre']}{MASK}", text)
    return _SK.sub(MASK, text)


def redact_all(values):
    """:func:`redact` applied to every string in a dict, list or tuple (recursively; keys kept)."""
    if isinstance(values, dict):
        return {k: redact_all(v) for k, v in values.items()}
    if isinstance(values, (list, tuple)):
        return type(values)(redact_all(v) for v in values)
    return redact(values)


class RedactingFormatter(logging.Formatter):
    """A ``logging`` formatter that passes every formatted line (tracebacks included) through :func:`redact`.

    Args:
        inner: the formatter whose output is redacted (``None``: ``logging.Formatter()``).
    """

    def __init__(self, inner: logging.Formatter | None = None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, redacted."""
        return redact(self.inner.format(record))
