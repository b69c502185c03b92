"""Which client may claim which node: identities (certificate SANs, bearer tokens) -> node ids
and node groups.

Without a policy every client may claim any node (fine on loopback; xdscp warns at start
when it listens beyond it). With one, a stream whose identity matches no rule allowing its
node id and node group is refused with PERMISSION_DENIED before anything is sent to it.
"""

from __future__ import annotations

import fnmatch
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "token:"


@dataclass(frozen=True, slots=True)
class Rule:
    """An identity pattern (glob on a SAN, or ``token:<name>``) and what it may claim."""

    identity: str
    nodes: tuple[str, ...] = ("*",)
    groups: tuple[str, ...] = ("*",)

    def allows(self, identities: Iterable[str], node_id: str, group: str) -> bool:
        return (any(fnmatch.fnmatchcase(i, self.identity) for i in identities)
                and any(fnmatch.fnmatchcase(node_id, p) for p in self.nodes)
                and any(fnmatch.fnmatchcase(group, p) for p in self.groups))


class NodePolicy:
    """The configured rules and bearer tokens; ``open`` when there are no rules."""

    def __init__(self, rules: Iterable[Rule] = (), tokens: dict[str, str] | None = None) -> None:
        self.rules = tuple(rules)
        self.tokens = dict(tokens or {})

    @property
    def open(self) -> bool:
        return not self.rules

    def identities(self, context: Any) -> frozenset[str]:
        """The client's identities: its certificate's SANs (mTLS) and ``token:<name>`` for a
        known bearer token in the ``authorization`` metadata."""
        found: set[str] = set()
        auth = context.auth_context() or {}
        for san in auth.get("x509_subject_alternative_name", ()):
            found.add(san.decode(errors="replace") if isinstance(san, bytes) else str(san))
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                presented = value[len("Bearer "):].encode()
                for name, token in self.tokens.items():
                    if hmac.compare_digest(presented, token.encode()):
                        found.add(TOKEN_PREFIX + name)
        return frozenset(found)

    def check(self, identities: frozenset[str], node_id: str, group: str) -> str | None:
        """None if allowed, else why not."""
        if self.open or any(r.allows(identities, node_id, group) for r in self.rules):
            return None
        who = ", ".join(sorted(identities)) or "an anonymous client"
        return f"{who} may not claim node {node_id!r} in group {group!r}"
