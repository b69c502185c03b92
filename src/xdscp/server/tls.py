"""TLS (and mTLS) for the xDS port, with certificates re-read when their files change.

gRPC asks for the certificate configuration at every new handshake; the files' modification
times and sizes are checked then, and a changed set is loaded. Established connections,
and the streams on them, are not touched: a rotation drops nothing.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from xdscp.errors import ConfigError
from xdscp.logfmt import log_event

log = logging.getLogger("xdscp.server")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The server's certificate and key (PEM); with ``client_ca_file``, clients must present a
    certificate signed by that CA (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class _Reloader:
    def __init__(self, tls: TlsSettings) -> None:
        self.tls = tls
        self._stamp = self._files_stamp()

    def _files(self) -> list[Path]:
        return [p for p in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file) if p is not None]

    def _files_stamp(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in self._files())

    def load(self) -> Any:
        """The files as a gRPC configuration, checked first: a key that does not match its
        certificate, or a file that is not PEM, is refused here, not at a client's handshake."""
        try:
            key, cert = self.tls.key_file.read_bytes(), self.tls.cert_file.read_bytes()
            ca = self.tls.client_ca_file.read_bytes() if self.tls.client_ca_file is not None else None
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            check.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            if self.tls.client_ca_file is not None:
                check.load_verify_locations(self.tls.client_ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"xDS TLS files ({self.tls.cert_file}, {self.tls.key_file}): {e}") from None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> Any:
        """Called by gRPC before each handshake: a new configuration if the files changed."""
        try:
            stamp = self._files_stamp()
            if stamp == self._stamp:
                return None
            config = self.load()
        except (OSError, ConfigError) as e:
            # Half-written files during a rotation: keep serving the previous certificate.
            log_event(log, logging.WARNING, "tls.reload_failed", error=str(e))
            return None
        self._stamp = stamp
        log_event(log, logging.INFO, "tls.reloaded", cert=str(self.tls.cert_file))
        return config


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; ConfigError if the files cannot be read now."""
    reloader = _Reloader(tls)
    return grpc.dynamic_ssl_server_credentials(
        reloader.load(), reloader.fetch, require_client_authentication=tls.client_ca_file is not None)
