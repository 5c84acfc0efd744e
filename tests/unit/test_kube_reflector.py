"""The shared watch cache's logic, with a stand-in API (a fake for this unit test only; the
cluster layer runs the real watches): grouping by the model label, the changes a LIST and a
watch event make (with the object before, so transitions can be seen), and a fresh list after a
stop."""

import asyncio
import logging

from mlhub.deployers.kube_reflector import Reflector

LABEL = "mlhub.io/model-id"


def pod(name, model, phase="Running"):
    return {"metadata": {"name": name, "labels": {LABEL: model}}, "status": {"phase": phase}}


def reflector(api=None, on_change=None):
    async def ignore(changes):
        pass

    return Reflector(
        api, "v1", "pods", "component=x", LABEL, on_change or ignore, logging.getLogger("t")
    )


def test_objects_are_grouped_by_their_label_and_unlabelled_ones_left_out():
    r = reflector()
    changes = r.replace([pod("a", "m1"), pod("b", "m1"), pod("c", "m2"), pod("stray", None)])
    assert sorted(r.of("m1")) == ["a", "b"] and list(r.of("m2")) == ["c"]
    assert sorted(r.groups()) == ["m1", "m2"] and r.of("nobody") == {}
    assert [(kind, obj["metadata"]["name"], before) for kind, obj, before in changes] == [
        ("SYNC", "a", None),
        ("SYNC", "b", None),
        ("SYNC", "c", None),
    ]


def test_a_watch_event_reports_the_object_before_it():
    r = reflector()
    r.replace([pod("a", "m1")])
    kind, now, before = r.update("MODIFIED", pod("a", "m1", "Failed"))
    assert kind == "MODIFIED" and before["status"]["phase"] == "Running"
    assert now["status"]["phase"] == "Failed" and r.of("m1")["a"] is now
    kind, _, before = r.update("DELETED", pod("a", "m1"))
    assert kind == "DELETED" and before is now
    assert r.of("m1") == {} and r.groups() == []
    assert r.update("ADDED", pod("stray", None)) is None


def test_a_new_list_reports_what_vanished_since_the_last_one():
    """A watch that broke may miss a deletion: the next LIST says so, as a DELETED change."""
    r = reflector()
    r.replace([pod("a", "m1"), pod("b", "m1")])
    changes = r.replace([pod("a", "m1")])
    assert [
        (kind, obj["metadata"]["name"], before is not None) for kind, obj, before in changes
    ] == [
        ("SYNC", "a", True),
        ("DELETED", "b", True),
    ]
    assert list(r.of("m1")) == ["a"]


class OneList:
    """Answers the LIST with ``items`` and keeps every watch open until cancelled."""

    def __init__(self, items):
        self.items, self.lists = items, 0

    def path(self, api_version, plural):
        return f"/api/{api_version}/{plural}"

    async def call(self, method, path, query=None):
        self.lists += 1
        return {"items": self.items, "metadata": {"resourceVersion": "1"}}

    async def watch(self, *args):
        await asyncio.Event().wait()


async def test_start_waits_for_the_first_list_and_again_after_a_stop():
    api = OneList([pod("a", "m1")])
    seen = []

    async def record(changes):
        seen.append([kind for kind, *_ in changes])

    r = reflector(api, record)
    await r.start()
    assert list(r.of("m1")) == ["a"] and seen == [["SYNC"]]
    await r.stop()
    api.items = [pod("b", "m1")]
    await r.start()  # not the first list's "synced": the new one is in the cache
    assert list(r.of("m1")) == ["b"] and api.lists == 2
    await r.stop()
