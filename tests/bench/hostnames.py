"""Realistic allow-list host names for size and speed measurements.

``h17.svc3.example5.com`` names share almost every byte and compress far better than a real allow
list.  These are drawn (seeded) to look like one: distinct registrable domains under a mix of
generic and country-code suffixes (two-label ones such as ``co.uk`` included), each with a few
of the sub-domain labels services use (``api``, ``eu-west-1``, ``cdn``), some hash-like labels
(CDN and storage buckets) and some wildcards.
"""

from __future__ import annotations

import random
import string
from typing import Any

_SUFFIXES = (
    ("com", 40), ("net", 8), ("org", 6), ("io", 6), ("de", 4), ("co.uk", 3), ("fr", 2),
    ("dev", 2), ("cloud", 2), ("app", 2), ("co.jp", 1), ("com.br", 1), ("nl", 1), ("ai", 2),
    ("eu", 1), ("ch", 1), ("se", 1), ("com.au", 1), ("ca", 1), ("in", 1), ("es", 1),
)  # fmt: skip
_SYLLABLES = (
    "al", "an", "ar", "ba", "be", "bo", "ca", "ce", "co", "da", "de", "di", "do", "el", "en",
    "er", "fa", "fi", "ga", "go", "ha", "in", "is", "ka", "ki", "la", "le", "li", "lo", "lu",
    "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "or", "pa", "pe", "po", "ra", "re", "ri",
    "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "tra", "un", "va", "ve", "vi", "zo",
    "ex", "ix", "ly", "ify", "hub", "net", "soft", "data", "cloud", "pay", "shop", "labs",
)  # fmt: skip
_LABELS = (
    "api", "www", "cdn", "static", "auth", "login", "sso", "assets", "img", "files", "storage",
    "upload", "download", "mail", "smtp", "gw", "edge", "app", "portal", "status", "docs",
    "registry", "repo", "pkg", "mirror", "metrics", "logs", "events", "hooks", "webhooks",
    "us-east-1", "eu-west-1", "ap-southeast-2", "eu-central-1", "prod", "staging", "v1", "v2",
)  # fmt: skip


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _hashlike(rng: random.Random) -> str:
    return "".join(
        rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(8, 16))
    )


def realistic_hosts(count: int, *, seed: int = 1) -> list[str]:
    """``count`` distinct host names, about 4 per registrable domain, 5% of them wildcards."""
    rng = random.Random(seed)
    suffixes = [s for s, w in _SUFFIXES for _ in range(w)]
    seen: set[str] = set()
    hosts: list[str] = []
    while len(hosts) < count:
        label = _word(rng)
        if rng.random() < 0.4:
            label += rng.choice(("", "-")) + _word(rng)
        domain = f"{label}.{rng.choice(suffixes)}"
        for _ in range(rng.randint(1, 8)):
            roll = rng.random()
            if roll < 0.15:
                host = domain
            elif roll < 0.2:
                host = f"*.{domain}"
            elif roll < 0.35:
                host = f"{_hashlike(rng)}.{rng.choice(_LABELS)}.{domain}"
            elif roll < 0.6:
                host = f"{rng.choice(_LABELS)}.{rng.choice(_LABELS)}.{domain}"
            else:
                host = f"{rng.choice(_LABELS)}.{domain}"
            if host not in seen and len(hosts) < count:
                seen.add(host)
                hosts.append(host)
    return hosts


def policy_with_services(services: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy over ``services``: namespace ``team-N`` may reach service N (N modulo 100)."""
    return {
        "apiVersion": "egress-guard.dev/v1alpha1",
        "kind": "EgressPolicy",
        "egress": {"namespace": "external"},
        "externalServices": services,
        "allow": [
            {"name": f"r{s}", "from": {"namespace": f"team-{s % 100}"}, "to": [f"svc-{s}"]}
            for s in range(len(services))
        ],
    }


def realistic_policy(count: int, *, per_service: int = 100, seed: int = 1) -> dict[str, Any]:
    """A policy allowing ``count`` realistic hosts, in services of ``per_service``."""
    hosts = realistic_hosts(count, seed=seed)
    services = [
        {
            "name": f"svc-{s}",
            "hosts": hosts[start : start + per_service],
            "ports": [{"number": 443, "protocol": "TLS"}],
        }
        for s, start in enumerate(range(0, len(hosts), per_service))
    ]
    return policy_with_services(services)
