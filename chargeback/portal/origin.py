"""The portal's own origin: where the page lives, and the cookie that only it reads.

Tenants deploy their own functions on the gateway, so the gateway's origin runs
code nobody here trusts. The page therefore lives on its own origin, PORTAL_URL
(an Ingress for, say, billing.example.com in front of
/function/tenant-portal.openfaas-system), and keeps its session in a host-only
cookie there; a page on any other Host (the gateway's) reads no cookie and says
where the portal lives. Every answer carries Cross-Origin-Resource-Policy and
Cross-Origin-Opener-Policy `same-origin`, so no other origin can embed an answer
or keep a handle on the page's window.

The public Host and scheme come from the template (`event.host`), which believes
X-Forwarded-Host/Proto only from TRUSTED_PROXY. The cookie is `Secure` whenever
PORTAL_URL is https, whatever the hop in front said, and then takes the
`__Host-` prefix, so a sibling host (the gateway's, `Domain=example.com`) cannot
plant one.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from chargeback.core.settings import ConfigError

SECURITY_HEADERS = {"Cross-Origin-Resource-Policy": "same-origin",
                    "Cross-Origin-Opener-Policy": "same-origin"}
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str  # http | https
    host: str    # lower case, with the port unless it is the scheme's default

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def cookie(self) -> str:
        """The session cookie's name: `__Host-` bound to this host when https."""
        return "__Host-portal" if self.secure else "portal"

    def serves(self, host: str | None) -> bool:
        return bool(host) and _host(self.scheme, host) == self.host

    def set_cookie(self, token: str, max_age_s: int) -> str:
        return (f"{self.cookie}={token}; Path=/; Max-Age={max_age_s}; HttpOnly; "
                f"SameSite=Lax{'; Secure' if self.secure else ''}")

    def clear_cookie(self) -> str:
        return (f"{self.cookie}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
                f"{'; Secure' if self.secure else ''}")


def _host(scheme: str, netloc: str) -> str:
    """`netloc` in lower case, without the scheme's default port."""
    host = netloc.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and not name.endswith(":") and \
            int(port) == _DEFAULT_PORT.get(scheme):
        return name
    return host


def parse(portal_url: str | None) -> Origin:
    """PORTAL_URL as an Origin; ConfigError naming it when unset or not an origin."""
    if not portal_url:
        raise ConfigError("PORTAL_URL is not set: the page is served only on the portal's "
                          "own origin (e.g. https://billing.example.com); see docs/portal.md")
    parts = urlsplit(portal_url.strip())
    if parts.scheme not in _DEFAULT_PORT or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(f"PORTAL_URL={portal_url!r}: expected the portal's own origin, "
                          "scheme and host only (https://billing.example.com): tenants' "
                          "functions share the gateway's origin")
    return Origin(parts.scheme, _host(parts.scheme, parts.netloc))
