"""Who a request comes from, as the rate limit counts callers: an address, or an IAM identity.

Everything here reads headers a client may have written, so every parse is bounded and a value
that does not parse falls back to something the client cannot choose.
"""

from __future__ import annotations

{% if cookiecutter.client_auth == "iam" -%}
import base64
import binascii
import ipaddress
import json
{%- else -%}
import ipaddress
{%- endif %}

from starlette.datastructures import Headers
from starlette.types import Scope

# Longer than any address written out; longer values are not parsed at all.
MAX_ADDRESS_CHARS = 64
{%- if cookiecutter.client_auth == "iam" %}
# An ID token is about 1 KB; an email address is at most 320 characters (RFC 3696).
MAX_TOKEN_CHARS = 8192
MAX_EMAIL_CHARS = 320
{%- endif %}


def client_address(scope: Scope, headers: Headers, trusted_hops: int) -> str:
    """The caller's address (its rate limit bucket), as the proxies we trust saw it.

    Each proxy appends the address it saw to X-Forwarded-For, so only the last `trusted_hops`
    entries were written by someone we trust; the one `trusted_hops` from the end is the caller.
    Cloud Run's front end is one such proxy (TRUSTED_PROXY_HOPS=1, the default); an external
    load balancer in front of it adds one more. Entries a client wrote itself come first and
    never count. With fewer entries than hops the first is taken (nobody else wrote any); an
    entry that is no address falls back to the socket's peer.
    """
    peer = scope.get("client")
    peer_address = str(peer[0]) if peer else "unknown"
    if trusted_hops:
        entries = [e.strip() for e in headers.get("x-forwarded-for", "").split(",") if e.strip()]
        if entries and (bucket := bucket_for(entries[-min(trusted_hops, len(entries))])):
            return bucket
    return bucket_for(peer_address) or f"ip:{peer_address[:MAX_ADDRESS_CHARS]}"


def bucket_for(address: str) -> str | None:
    """The bucket of an address: IPv4 as is, IPv6 per /64 (one host usually holds a whole /64,
    so per address it could take a new bucket per request); None when it is no address."""
    if len(address) > MAX_ADDRESS_CHARS:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"ip:{ip}"
{%- if cookiecutter.client_auth == "iam" %}


def caller_identity(headers: Headers) -> str | None:
    """client_auth=iam: the `email` claim of the ID token Cloud Run has already checked.

    Cloud Run verifies the token before the request reaches the container, then "removes the
    token signature before passing the token to the user container" and takes the token from
    X-Serverless-Authorization when that header is present, else from Authorization:
    https://cloud.google.com/run/docs/authenticating/service-to-service#acquire-token
    (the signature reads SIGNATURE_REMOVED_BY_GOOGLE,
    https://cloud.google.com/run/docs/troubleshooting#signature-removed). So the payload is
    trustworthy here without a signature check, and only here: in the other modes nobody checked
    it. None when there is no readable email claim (the caller is then counted by address).
    """
    header = headers.get("x-serverless-authorization") or headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(token) > MAX_TOKEN_CHARS or len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):  # not base64, not UTF-8 or not JSON
        return None
    email = payload.get("email") if isinstance(payload, dict) else None
    if not isinstance(email, str) or not 0 < len(email) <= MAX_EMAIL_CHARS or "@" not in email:
        return None
    return email.lower()
{%- endif %}
