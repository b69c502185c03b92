"""Re-reading a registry file: only the services whose entries changed are parsed and validated,
and the answer is always the one a whole parse gives."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from xdscp.errors import DocumentError
from xdscp.sources import registry_file
from xdscp.sources.registry_file import RegistryReader
from xdscp.sources.yaml_items import split_items


def services(n: int, port: int = 8080) -> list[dict[str, object]]:
    return [{"name": f"svc-{i}", "instances": [{"host": f"10.0.{i // 250}.{i % 250 + 1}", "port": port}]}
            for i in range(n)]


def as_yaml(svcs: list[dict[str, object]], **dump: object) -> bytes:
    return yaml.safe_dump({"services": svcs}, sort_keys=False, **dump).encode()  # type: ignore[arg-type]


class CountingParses:
    """Counts the items the reader parses on their own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = registry_file._parse_item

        def counted(text: str) -> tuple[object, object]:
            self.count += 1
            return real(text)

        monkeypatch.setattr(registry_file, "_parse_item", counted)


@pytest.mark.parametrize("dump", [{}, {"indent": 4}, {"default_flow_style": None}])
def test_one_changed_service_is_the_only_one_parsed_again(monkeypatch: pytest.MonkeyPatch, dump: dict) -> None:
    parses = CountingParses(monkeypatch)
    reader = RegistryReader()
    svcs = services(50)
    first = reader.read(as_yaml(svcs, **dump), "reg.yaml")
    assert parses.count == 50
    svcs[7]["instances"] = [{"host": "10.0.9.9", "port": 8080}]
    second = reader.read(as_yaml(svcs, **dump), "reg.yaml")
    assert parses.count == 51
    changed = [k for k in second if second[k] is not first[k]]
    assert [k.name for k in changed] == ["svc-7"]  # the others are the same objects
    assert second[changed[0]].instances[0].host == "10.0.9.9"


def test_hand_written_layout_with_comments_is_cut_into_items() -> None:
    text = ("# the registry\n\nservices:   # every service\n  # echo first\n  - name: echo\n"
            "    instances:\n      - host: 10.0.0.1   # a comment\n        port: 80\n\n  -\n    name: other\n")
    items = split_items(text)
    assert items is not None and len(items) == 2
    assert [items.line(i) for i in range(2)] == [5, 10]
    read = RegistryReader().read(text.encode(), "r.yaml")
    assert read == RegistryReader()._read_whole(text.encode(), "r.yaml")
    assert [k.name for k in read] == ["echo", "other"]


@pytest.mark.parametrize("text", [
    "services: []\n",
    "services:\n- {name: a}\nother: 1\n",             # another top-level key
    "services: [{name: a}, {name: b}]\n",             # flow style
    "---\nservices:\n- name: a\n",                    # a document marker
    "services:\n  - name: a\n - name: b\n",           # an item less indented
    "services:\n\tname: a\n",                         # a tab
])
def test_layouts_that_are_not_cut(text: str) -> None:
    assert split_items(text) is None


@pytest.mark.parametrize("text", [
    # an alias to another item's anchor: that item does not parse alone
    "services:\n- &base\n  name: a\n  lb_policy: RANDOM\n- name: b\n  lb_policy: RANDOM\n",
    "services:\n- name: a\n  metadata: &m {team: web}\n- name: b\n  metadata: *m\n",
    # a quoted scalar whose next line looks like an item start
    "services:\n- name: a\n  metadata: {note: \"one\n- two\"}\n",
    "services:\r\n- name: a\r\n  instances:\r\n  - {host: 10.0.0.1, port: 80}\r\n- name: b\r\n",
])
def test_every_layout_reads_as_a_whole_parse_does(text: str) -> None:
    whole = RegistryReader()._read_whole(text.encode(), "r.yaml")
    assert RegistryReader().read(text.encode(), "r.yaml") == whole


names = st.sampled_from(["a", "b", "c", "d"])
instance = st.fixed_dictionaries({"host": st.sampled_from(["10.0.0.1", "10.0.0.2"]),
                                  "port": st.integers(min_value=0, max_value=3)})
entry = st.fixed_dictionaries({"name": names}, optional={
    "instances": st.lists(instance, max_size=2),
    "metadata": st.dictionaries(st.sampled_from(["v", "w"]), st.one_of(st.integers(0, 2), st.floats(0, 2),
                                                                      st.booleans(), st.text("ab-", max_size=3))),
    "lb_policy": st.sampled_from(["RANDOM", "FASTEST"])})


@settings(max_examples=150, deadline=None)
@given(versions=st.lists(st.lists(entry, max_size=5), min_size=1, max_size=4),
       style=st.sampled_from([{}, {"indent": 4}, {"default_flow_style": True}, {"width": 20}]),
       as_json=st.booleans())
def test_successive_reads_answer_as_fresh_reads(versions: list[list[dict]], style: dict, as_json: bool) -> None:
    """Whatever the history, a reader answers each version as a new reader would: same services, or
    the same errors (a rejected version leaves nothing behind)."""
    reader = RegistryReader()
    path = "reg.json" if as_json else "reg.yaml"
    for version in versions:
        data = json.dumps({"services": version}).encode() if as_json else as_yaml(version, **style)
        try:
            expected: object = RegistryReader()._read_whole(data, path)
        except DocumentError as e:
            expected = str(e)
        try:
            got: object = reader.read(data, path)
        except DocumentError as e:
            got = str(e)
        assert got == expected


def test_errors_name_lines_in_order_and_duplicates() -> None:
    text = (b"services:\n  - name: c\n    colour: blue\n  - name: a\n  - name: a\n"
            b"  - name: b\n    instances: [{host: 10.0.0.1, port: 70000}]\n")
    for reader in (RegistryReader().read, RegistryReader()._read_whole):
        with pytest.raises(DocumentError) as info:
            reader(text, "r.yaml")
        assert [str(p) for p in info.value.problems] == [
            "line 3: services[0].colour: Extra inputs are not permitted",
            "line 5: services[2]: service public/DEFAULT_GROUP/a is listed twice (first as services[1])",
            "line 7: services[3].instances[0].port: Input should be less than or equal to 65535",
        ]


def test_the_collector_is_paused_for_a_read_and_resumed_after() -> None:
    import gc

    from xdscp.gc_pause import gc_paused

    seen = []
    real = registry_file.RegistryReader._read

    def spy(self: RegistryReader, data: bytes, path: str) -> object:
        seen.append(gc.isenabled())
        with gc_paused():  # nested (another read in another thread): still paused after it
            pass
        seen.append(gc.isenabled())
        return real(self, data, path)

    assert gc.isenabled()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(registry_file.RegistryReader, "_read", spy)
        RegistryReader().read(as_yaml(services(3)), "reg.yaml")
        with pytest.raises(DocumentError):
            RegistryReader().read(b"services: [\n", "reg.yaml")
    assert seen == [False, False, False, False] and gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_a_salvaged_document_validates_only_the_records_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the HTTP source does with each new service list (bad records dropped alone)."""
    from xdscp.model.updates import FullSnapshot, ServiceChange, changes_between
    from xdscp.sources import salvage
    from xdscp.sources.entry_memo import EntryMemo

    validated: list[object] = []
    real = salvage.salvage_record
    monkeypatch.setattr(salvage, "salvage_record", lambda rec: validated.append(rec) or real(rec))
    memo: EntryMemo = EntryMemo()
    records = services(20)
    records[3]["instances"].append({"host": "not-an-ip", "port": 80})
    first = salvage.salvage_services(records, memo)
    memo.commit()
    assert len(validated) == 20 and len(first.services) == 20
    assert first.problems == ["services[3] (svc-3).instances[1]: host: Value error, 'not-an-ip' is not an IP address "
                              "(EDS endpoints must be IPs); instance dropped"]
    records[7]["instances"][0]["port"] = 9999
    del records[0]
    validated.clear()
    second = salvage.salvage_services(records, memo)
    assert len(validated) == 1  # svc-7 alone; the others, svc-3 and its problem included, remembered
    assert second.problems == [first.problems[0].replace("services[3]", "services[2]")]  # its index now
    before = {s.key: s for s in first.services}
    update = changes_between(before, {s.key: s for s in second.services})
    assert isinstance(update, ServiceChange)
    assert [s.name for s in update.upserted] == ["svc-7"] and [k.name for k in update.removed] == ["svc-0"]
    assert isinstance(changes_between(None, before), FullSnapshot)
