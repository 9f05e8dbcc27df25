"""Where an outbound webhook may go (omni/lib/webhooks.py calls; omni.WebhookEndpoint checks
its URL with the same rules).

Outside DEBUG, and unless settings.OMNI_WEBHOOKS_ALLOW_PRIVATE is set, only https URLs are
called and only public addresses: the host is resolved, and every address it resolves to must be
public (not private, loopback, link-local, multicast, reserved or unspecified).
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class RefusedAddress(Exception):
    """The URL may not be called (scheme or address); retrying cannot help."""


def private_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "OMNI_WEBHOOKS_ALLOW_PRIVATE", False))


def scheme_problem(url: str) -> str:
    """Why `url` may not be a webhook URL by its form alone, or ""."""
    parts = urlsplit(url)
    allowed = ("https", "http") if private_allowed() else ("https",)
    if parts.scheme not in allowed:
        return "Webhook URLs must use https." if parts.scheme == "http" else f"Unsupported URL scheme {parts.scheme!r}."
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "Put credentials in the receiver's checks, not in the URL."
    try:
        parts.port  # URLField accepts any five digits; urlsplit refuses a port past 65535 only here
    except ValueError:
        return "The URL's port is out of range (at most 65535)."
    return ""


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def checked_address(url: str) -> str:
    """The address to connect to for `url`, after checking every address its host resolves to.

    Raises RefusedAddress, or socket.gaierror when the name does not resolve.
    """
    problem = scheme_problem(url)
    if problem:
        raise RefusedAddress(problem)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(parts.hostname, port,
                                                                             type=socket.SOCK_STREAM)))
    if not private_allowed():
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise RefusedAddress(f"{parts.hostname} resolves to a non-public address ({', '.join(refused)}).")
    return addresses[0]
