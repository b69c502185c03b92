"""The snapshot's resource map: a dict's answers, and every earlier version left as it was."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xdscp.cache.sharded_map import ShardedMap

NAMES = st.text(min_size=0, max_size=6)
CHANGES = st.dictionaries(NAMES, st.one_of(st.none(), st.integers()), max_size=40)


@settings(max_examples=100, derandomize=True)
@given(st.lists(CHANGES, max_size=8))
def test_each_version_answers_as_a_dict_and_earlier_ones_never_change(history: list[dict[str, int | None]]) -> None:
    versions = [(ShardedMap[int](), {})]
    for changes in history:
        m, d = versions[-1]
        new_d = {**d}
        for name, value in changes.items():
            if value is None:
                new_d.pop(name, None)
            else:
                new_d[name] = value
        versions.append((m.with_changes(changes), new_d))
    for m, d in versions:  # the earliest too: a change shares, never mutates
        assert dict(m.items()) == d and len(m) == len(d)
        for name in d:
            assert name in m and m[name] == d[name] and m.get(name) == d[name]
        assert m.get("\0never") is None and "\0never" not in m


def test_a_change_copies_only_the_shard_it_touches() -> None:
    base = ShardedMap.of({f"svc-{i}": i for i in range(10_000)})
    changed = base.with_changes({"svc-5": -5})
    shared = sum(a is b for a, b in zip(base._shards, changed._shards, strict=True))  # noqa: SLF001
    assert shared == len(base._shards) - 1 and changed["svc-5"] == -5 and base["svc-5"] == 5  # noqa: SLF001
