"""What other websites may do with the service: the Host names it answers (DNS rebinding), the
origins whose pages may change state (cross-site form posts need no preflight), and the headers
every answer carries (no sniffing, no referrer, no framing, a Content-Security-Policy).

See docs/guides/security.md for the model these defaults implement.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlens.html_safety import csp
from cnnlens.service.errors import error_response
from cnnlens.service.settings import ANY_ORIGIN, Settings, host_name

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# JSON, PNG, CSV: nothing in them may run or load anything.
API_POLICY = csp()
# The web page (cnnlens/service/web): its own script and style files; images it makes itself.
PAGE_POLICY = csp(
    script_src=["'self'"],
    style_src=["'self'"],
    img_src=["'self'", "data:", "blob:"],
    connect_src=["'self'"],
)
# The docs site at /guide (mkdocs-material, built offline): its own scripts (the theme's inline
# ones moved to files at build time), styles and images; its search worker and index.
GUIDE_POLICY = csp(
    script_src=["'self'"],
    style_src=["'self'"],
    img_src=["'self'", "data:"],
    connect_src=["'self'"],
    worker_src=["'self'"],
)
SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityMiddleware:
    """Refuses a Host name the service does not answer to (400) and a state-changing request
    from a foreign origin (403), and adds SECURITY_HEADERS, plus API_POLICY where a route set no
    policy of its own, to every answer.

    Host names: without API keys, only the loopback ones and `allowed_hosts` (a page on another
    site that rebinds its name to 127.0.0.1 sends its own name); with keys, those only when
    `allowed_hosts` is set. Origins: the request's own (the web page) and `cors_origins`.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.check_host = not settings.auth_enabled or bool(settings.allowed_hosts)
        self.hosts = LOOPBACK_HOSTS | set(settings.allowed_hosts)
        self.any_origin = any(origin in ANY_ORIGIN for origin in settings.cors_origins)
        self.origins = {_origin_key(origin) for origin in settings.cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in headers}
                added = dict(SECURITY_HEADERS)
                if b"content-security-policy" not in present:
                    added["Content-Security-Policy"] = API_POLICY
                headers += [
                    (name.lower().encode(), value.encode())
                    for name, value in added.items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            await error_response(status, code, message)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        host = _header(scope, b"host") or ""
        if self.check_host and host_name(host) not in self.hosts:
            return (
                400,
                "host_not_allowed",
                f"this service does not answer to the host name {host[:80]!r}; an operator "
                "can add it to allowed_hosts",
            )
        origin = _header(scope, b"origin")
        if origin is None or str(scope.get("method", "")).upper() not in STATE_CHANGING:
            return None
        key = _origin_key(origin)
        if self.any_origin or key in self.origins or _same_origin(key, host):
            return None
        return (
            403,
            "cross_origin_refused",
            f"a page from {origin[:80]!r} may not change anything here: only this service's "
            "own page and the origins in cors_origins may send POST or DELETE requests",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _origin_key(origin: str) -> tuple[str, int | None] | None:
    """(host, port) of an origin ("null" and malformed origins: None, matching nothing)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port


def _same_origin(origin: tuple[str, int | None] | None, host: str) -> bool:
    """The origin is the one the request was sent to (the service's own page): the same name,
    and the same port where the Host header gives one (a proxy in front of the service may
    have ended TLS: the scheme is not compared)."""
    sent_to = _origin_key(f"http://{host}")
    if origin is None or sent_to is None or origin[0] != sent_to[0]:
        return False
    explicit_port = host.rpartition("]")[2] if host.startswith("[") else host
    return ":" not in explicit_port or origin[1] == sent_to[1]
