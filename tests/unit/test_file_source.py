"""The file source against the ways files really change on disk."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from xdscp.config import FileSourceConfig
from xdscp.model.registry import Registry
from xdscp.runtime_settings import file_settings
from xdscp.sources import file as file_source
from xdscp.sources.file import FileSource

ONE = "services:\n  - name: echo\n    instances: [{host: 10.0.0.1, port: 80}]\n"
TWO = "services:\n  - name: echo\n    instances: [{host: 10.0.0.1, port: 80}, {host: 10.0.0.2, port: 80}]\n"


async def loaded(path: Path, text: str) -> tuple[Registry, FileSource]:
    """A registry fed by a FileSource that has read ``text`` from ``path`` once."""
    path.write_text(text)
    reg = Registry(["f"])
    src = FileSource("f", file_settings(FileSourceConfig(kind="file", path=path)))
    await src.poll_once(reg)
    return reg, src


def settled(path: Path) -> None:
    """Date the file a second back: its writer is done (a fresh broken file is read again
    before it is rejected, see test_a_file_still_being_written_is_read_again_before_rejected)."""
    past = time.time_ns() - 1_000_000_000
    os.utime(path, ns=(past, past))


def ports(reg: Registry) -> list[str]:
    return sorted(i.host for s in reg.services.values() for i in s.instances)


async def test_configmap_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    # Kubernetes mounts ConfigMaps as registry.yaml -> ..data/registry.yaml, ..data -> ..<ts>/
    for name, text in (("..v1", ONE), ("..v2", TWO)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "registry.yaml").write_text(text)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "registry.yaml").symlink_to("..data/registry.yaml")
    reg = Registry(["f"])
    src = FileSource("f", file_settings(FileSourceConfig(kind="file", path=tmp_path / "registry.yaml")))
    await src.poll_once(reg)
    assert ports(reg) == ["10.0.0.1"]
    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # the kubelet's atomic swap
    await src.poll_once(reg)
    assert ports(reg) == ["10.0.0.1", "10.0.0.2"]


async def test_half_written_file_is_rejected_then_the_whole_one_loads(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    reg, src = await loaded(path, ONE)
    with path.open("w") as f:  # an in-place rewrite caught halfway
        f.write(TWO[: len(TWO) // 2 + 9])
    settled(path)  # and left so
    await src.poll_once(reg)
    assert src.last_error is not None and str(path) in src.last_error
    assert ports(reg) == ["10.0.0.1"]  # the last good view stays
    path.write_text(TWO)
    await src.poll_once(reg)
    assert src.last_error is None
    assert ports(reg) == ["10.0.0.1", "10.0.0.2"]


async def test_unchanged_content_is_not_reapplied(tmp_path: Path, caplog) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(ONE)
    reg = Registry(["f"])
    src = FileSource("f", file_settings(FileSourceConfig(kind="file", path=path)))
    caplog.set_level(logging.INFO, logger="xdscp.sources.file")
    await src.poll_once(reg)
    path.write_text(ONE)  # touched, same bytes
    os.utime(path, ns=(1, 1))
    await src.poll_once(reg)
    path.write_text(TWO)
    await src.poll_once(reg)
    assert [r.getMessage() for r in caplog.records] == ["source.loaded", "source.loaded"]


async def test_a_truncated_file_never_wipes_the_registry(tmp_path: Path) -> None:
    # An in-place writer truncates before it writes; a poll can land in between.
    path = tmp_path / "registry.yaml"
    reg, src = await loaded(path, TWO)
    path.write_text("")
    settled(path)
    await src.poll_once(reg)
    assert src.last_error is not None and "empty" in src.last_error
    assert ports(reg) == ["10.0.0.1", "10.0.0.2"]


async def test_a_repaired_file_clears_its_error_even_when_its_content_is_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    reg, src = await loaded(path, ONE)
    path.write_text("services: [\n")
    settled(path)
    await src.poll_once(reg)
    assert src.last_error is not None
    path.write_text(ONE)  # the last good bytes again: nothing to apply, but the file is fine
    await src.poll_once(reg)
    assert src.last_error is None
    path.write_text("services: [\n")
    settled(path)
    await src.poll_once(reg)
    assert src.last_error is not None
    path.write_text(ONE)
    os.utime(path, ns=(5, 5))
    await src.poll_once(reg)
    assert src.last_error is None and ports(reg) == ["10.0.0.1"]


async def test_source_up_follows_the_file_in_metrics_readyz_and_debug(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from plane import running_plane, service
    from waiting import eventually

    async with running_plane(tmp_path, [service("echo", 9001)]) as plane:

        def up() -> float | None:
            return REGISTRY.get_sample_value("xdscp_source_up", {"source": "file"})

        assert up() == 1
        plane.registry.write_text("services:\n  - name: echo\n    instances: [{host: 127.0.0.1, port: 0}]\n")
        await eventually(lambda: up() == 0, what="the rejected file reported")
        ready = plane.cp.readiness()
        assert ready["sources"]["file"]["up"] is False and "port" in ready["sources"]["file"]["last_error"]
        _, debug = await plane.admin_json("/debug/sources")
        assert debug["sources"][0]["up"] is False and debug["sources"][0]["last_error"]
        plane.write([service("echo", 9001)])  # the same content as the last good one
        await eventually(lambda: up() == 1, what="the repaired file reported")
        assert plane.cp.readiness()["sources"]["file"]["last_error"] is None


async def test_a_file_still_being_written_is_read_again_before_rejected(
        tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    """`>` and write_text truncate first: a poll in between sees an empty file its writer
    never meant. Written under SETTLE_NS ago, it is read again, not rejected; a broken file
    that stays so is rejected once it has settled. The window is stretched to an hour here,
    so no pause of a busy machine between a write and its poll can outlast it."""
    monkeypatch.setattr(file_source, "SETTLE_NS", 3600 * 10**9)
    path = tmp_path / "registry.yaml"
    reg, src = await loaded(path, ONE)
    caplog.set_level(logging.INFO, logger="xdscp.sources.file")
    path.write_text("")  # the truncation, just now
    await src.poll_once(reg)
    assert src.last_error is None and ports(reg) == ["10.0.0.1"]
    path.write_text(TWO)  # the write lands
    await src.poll_once(reg)
    assert src.last_error is None and ports(reg) == ["10.0.0.1", "10.0.0.2"]
    assert "source.rejected" not in [r.getMessage() for r in caplog.records]
    path.write_text("services: [\n")  # broken, and it stays so
    await src.poll_once(reg)
    assert src.last_error is None  # not yet: it may still be being written
    monkeypatch.setattr(file_source, "SETTLE_NS", 0)  # the window has passed
    await src.poll_once(reg)  # read again though its stat is unchanged, and now rejected
    assert src.last_error is not None and "invalid YAML" in src.last_error
