"""Every registry kind: its config section, the settings built from it (runtime_settings)
and the source that follows it. Adding a kind is one config model (in config.py's
``SourceConfig``), one settings builder, and one entry here."""

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
from xdscp.runtime_settings import (
    consul_settings,
    embedded_settings,
    etcd_source_settings,
    file_settings,
    http_settings,
    nacos_settings,
    zookeeper_settings,
)
from xdscp.sources.base import Source
from xdscp.sources.consul import ConsulSource
from xdscp.sources.embedded.source import EmbeddedSource
from xdscp.sources.etcd.source import EtcdSource
from xdscp.sources.file import FileSource
from xdscp.sources.http import HttpSource
from xdscp.sources.nacos.source import NacosSource
from xdscp.sources.zookeeper.source import ZooKeeperSource

# config section -> (its settings, the source built from (name, settings))
SOURCE_KINDS: dict[type[Any], tuple[Callable[[Any], Any], Callable[[str, Any], Source]]] = {
    FileSourceConfig: (file_settings, FileSource),
    HttpSourceConfig: (http_settings, HttpSource),
    EtcdSourceConfig: (etcd_source_settings, EtcdSource),
    ConsulSourceConfig: (consul_settings, ConsulSource),
    ZooKeeperSourceConfig: (zookeeper_settings, ZooKeeperSource),
    NacosSourceConfig: (nacos_settings, NacosSource),
    EmbeddedSourceConfig: (embedded_settings, EmbeddedSource),
}


def build_source(name: str, cfg: SourceConfig) -> Source:
    settings, source = SOURCE_KINDS[type(cfg)]
    return source(name, settings(cfg))


def build_sources(cfg: Config) -> list[Source]:
    return [build_source(name, src) for name, src in zip(cfg.source_names(), cfg.sources, strict=True)]
