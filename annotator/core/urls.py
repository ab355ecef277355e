"""Stream URLs without their secrets (pure, stdlib only).

A camera URL such as ``rtsp://admin:s3cret@10.0.0.7/stream1`` is what a team types, but the
password must never reach the database, a job record, a log line or a page. ``redact`` gives the
form that is stored and shown; only the extracting process ever holds the full URL.

>>> redact("rtsp://admin:s3cret@10.0.0.7:554/stream1?token=abc&channel=1")
'rtsp://admin:***@10.0.0.7:554/stream1?token=***&channel=1'
>>> redact("/videos/cam1.mp4")
'/videos/cam1.mp4'
>>> redact_text("cannot open rtsp://cam:pw@10.0.0.7/x?token=t: timeout")
'cannot open rtsp://cam:***@10.0.0.7/x?token=***: timeout'

``redact`` (one URL) and ``redact_text`` (URLs inside a message) are the only redaction there is:
extract and detect store, log and report stream URLs only through them.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a credential in common camera and CDN URLs.
SECRET_PARAMS = {"password", "passwd", "pwd", "pass", "token", "auth", "key", "apikey",
                 "api_key", "secret", "signature", "sig", "access_token"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def has_secret(uri: str) -> bool:
    return redact(uri) != uri


def redact(uri: str) -> str:
    """``uri`` with any password and secret-looking query values replaced by ``***``."""
    if not isinstance(uri, str) or not _SCHEME.match(uri):
        return uri
    try:
        parts = urlsplit(uri)
        netloc = parts.netloc
    except ValueError:  # a malformed URL: hide everything after the scheme
        return uri.split("://", 1)[0] + "://" + MASK
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted; a URL's trailing
    ``:`` or ``,`` or ``.`` (punctuation of the sentence) is kept as it is."""
    if not isinstance(text, str) or "://" not in text:
        return text

    def one(m: re.Match) -> str:
        url = m.group(0)
        tail = len(url) - len(url.rstrip(".,:;)]"))
        return redact(url[:len(url) - tail]) + url[len(url) - tail:]

    return _URL_IN_TEXT.sub(one, text)
