"""Nacos' ``group@@service`` convention, in one place for every Nacos-facing piece."""

from __future__ import annotations

from xdscp.model.service import DEFAULT_GROUP

SEPARATOR = "@@"


def split_grouped_name(service_name: str, group: str | None) -> tuple[str, str]:
    """``DEFAULT_GROUP@@echo`` -> (group, name); a bare name takes ``group`` or the default."""
    if SEPARATOR in service_name:
        grp, _, name = service_name.partition(SEPARATOR)
        return grp, name
    return group or DEFAULT_GROUP, service_name


def grouped_name(group: str, name: str) -> str:
    return f"{group}{SEPARATOR}{name}"
