"""Every registry kind: its config section and the source that follows it. Adding a kind is
one config model (in config.py's ``SourceConfig``) and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdscp.config import (
    Config,
    ConsulSourceConfig,
    EmbeddedSourceConfig,
    EtcdSourceConfig,
    FileSourceConfig,
    HttpSourceConfig,
    NacosSourceConfig,
    SourceConfig,
    ZooKeeperSourceConfig,
)
from xdscp.sources.base import Source
from xdscp.sources.consul import ConsulSource
from xdscp.sources.embedded.source import EmbeddedSource
from xdscp.sources.etcd.source import EtcdSource
from xdscp.sources.file import FileSource
from xdscp.sources.http import HttpSource
from xdscp.sources.nacos.source import NacosSource
from xdscp.sources.zookeeper.source import ZooKeeperSource

# config section -> the source built from (name, section)
SOURCE_KINDS: dict[type[Any], Callable[[str, Any], Source]] = {
    FileSourceConfig: FileSource,
    HttpSourceConfig: HttpSource,
    EtcdSourceConfig: EtcdSource,
    ConsulSourceConfig: ConsulSource,
    ZooKeeperSourceConfig: ZooKeeperSource,
    NacosSourceConfig: NacosSource,
    EmbeddedSourceConfig: EmbeddedSource,
}


def build_source(name: str, cfg: SourceConfig) -> Source:
    return SOURCE_KINDS[type(cfg)](name, cfg)


def build_sources(cfg: Config) -> list[Source]:
    return [build_source(name, src) for name, src in zip(cfg.source_names(), cfg.sources, strict=True)]
