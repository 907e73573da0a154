"""The client's address for gunicorn's access log when a trusted proxy (nginx) forwarded the request.

A request that arrives from an address in gunicorn's ``forwarded_allow_ips`` (FORWARDED_ALLOW_IPS, default
loopback) is logged with the address the proxy appended last to ``X-Forwarded-For``: the one the proxy saw
itself, which a client cannot forge. Anything that is not an IP address is ignored, so header text never
reaches the log raw.
"""

from __future__ import annotations

import ipaddress


def forwarded_client(peer: str, forwarded_for: str, trusted: list[str]) -> str | None:
    """The client address a trusted ``peer`` forwarded (the last X-Forwarded-For entry), or None."""
    if not forwarded_for or not _trusted(peer, trusted):
        return None
    last = forwarded_for.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def _trusted(peer: str, trusted: list[str]) -> bool:
    if "*" in trusted:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False
