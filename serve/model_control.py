"""Model control: who may load and unload variants (POST /v2/repository/models/<m>/load|unload).

Off unless the server starts with `--model-control explicit` (Triton's
--model-control-mode; in `poll` mode the repository is the control, as in Triton's, and
these routes stay off), and then a request needs all of:

- `Authorization: Bearer <token>`, compared in constant time; the token comes from
  --control-token or $TANDEM_CONTROL_TOKEN and is never logged or echoed.
- A Host header naming this server (its bound host:port; for a loopback bind also
  localhost, 127.0.0.1 and [::1]): a DNS-rebinding page reaches the server under the
  attacker's host name.
- No Origin header, or one naming this server: a cross-site page may send a simple
  POST without a preflight, and its browser says where it came from.

Browsers attach no Authorization header to a cross-site request without a CORS
preflight, which this server never grants, so the token alone stops such pages; the
Host and Origin checks still hold if a token leaks into a browser.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from serve import v2

MODES = ("none", "explicit", "poll")
TOKEN_ENV = "TANDEM_CONTROL_TOKEN"
MIN_TOKEN = 16  # characters; a guessable token is no lock
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Refused(v2.ProtocolError):
    """A control request turned away; `headers` go on the answer (WWW-Authenticate)."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None):
        super().__init__(message, status)
        self.headers = headers


def check(mode: str, token: str | None) -> None:
    """Raise ValueError saying what to change when mode and token do not fit together.
    The message never contains the token."""
    if mode not in MODES:
        raise ValueError(f"--model-control must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "explicit":
        if token is not None:
            raise ValueError(
                "--control-token has no effect without --model-control explicit: "
                "add --model-control explicit, or drop the token"
            )
        return
    if not token:
        raise ValueError(
            f"--model-control explicit needs a token: set {TOKEN_ENV}=<token> (or pass "
            f"--control-token <token>, which other users of the machine can see in its "
            f"process list); make one with {MAKE_TOKEN}"
        )
    if len(token) < MIN_TOKEN or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(
            f"the control token must be at least {MIN_TOKEN} printable ASCII characters "
            f"without spaces; make one with {MAKE_TOKEN}"
        )


def _endpoint(netloc: str) -> tuple[str, int] | None:
    """'host[:port]' or '[v6]:port' -> (host, port), the port defaulting to HTTP's 80;
    None for anything else (user info, a path, a bad port)."""
    if not netloc or any(c in netloc for c in "@/?#\\ "):
        return None
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname or "", 80 if port is None else port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ModelControl:
    """The policy for load/unload requests of one server bound to host:port."""

    def __init__(self, mode: str, token: str | None, host: str, port: int) -> None:
        check(mode, token)
        self.enabled = mode == "explicit"
        self._token = (token or "").encode()
        self.port = port
        bound = host.strip("[]").lower()
        ip = ipaddress.ip_address(bound) if _is_ip(bound) else None
        self.names = {bound}
        if bound == "localhost" or (ip is not None and ip.is_loopback):
            self.names.update(LOOPBACK_NAMES)
        # A wildcard bind has no one name: accept the loopback names, this machine's
        # name and any IP literal (a rebinding page reaches us under a DNS name, never
        # under an address).
        self.any_ip = ip is not None and ip.is_unspecified
        if self.any_ip:
            self.names.update((*LOOPBACK_NAMES, socket.gethostname().lower()))
            self.address = f"this machine's address with port {port}"
        else:
            self.address = f"[{bound}]:{port}" if ":" in bound else f"{bound}:{port}"

    def ours(self, netloc: str) -> bool:
        """Whether a Host value (host[:port]) names this server."""
        endpoint = _endpoint(netloc.strip())
        if endpoint is None or endpoint[1] != self.port:
            return False
        return endpoint[0] in self.names or (self.any_ip and _is_ip(endpoint[0]))

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Return when a load/unload request may go on; raise Refused saying why not."""
        if not self.enabled:
            raise Refused(
                "model control is off: start the server with --model-control explicit "
                f"and a token (--control-token or ${TOKEN_ENV}) to load and unload models",
                403,
            )
        host, origin = headers.get("host", ""), headers.get("origin")
        if not self.ours(host):
            raise Refused(
                f"Host {v2.quoted(host)} does not name this server; address it as "
                f"{self.address} to load or unload models",
                403,
            )
        if origin is not None and not (
            origin.lower().startswith("http://") and self.ours(origin[len("http://") :])
        ):
            raise Refused(
                f"Origin {v2.quoted(origin)} is not this server: model control does not "
                "answer other sites' pages",
                403,
            )
        scheme, _, given = headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="model control"'}
        if scheme.lower() != "bearer" or not given.strip():
            raise Refused(
                "model control needs Authorization: Bearer <token> (the server's --control-token)",
                401,
                challenge,
            )
        # Headers arrive decoded as latin-1: encoding back gives the bytes sent.
        if not hmac.compare_digest(given.strip().encode("latin-1", "replace"), self._token):
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            raise Refused("wrong control token", 401, challenge)
