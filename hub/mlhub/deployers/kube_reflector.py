"""Shared list+watch caches of the models namespace, as kubespawner's ``reflector.py``: one watch
per kind for every model, never a poll per model.

A ``Reflector`` lists the objects of one kind that carry a label selector, then watches from the
list's resourceVersion, and lists again when the watch breaks (with backoff) or its version
is too old. It keeps the objects grouped by the value of one label (the model id), and after
each change calls ``on_change(changes)`` with ``(type, object, previous)`` triples, so its owner
can react to transitions (a pod that starts terminating) and wake what waits on the cache.

Its small query interface (``of``, ``groups``) is what the deployer and the tests read;
``replace`` loads a list as a fresh LIST would (the unit tests use it with no cluster).
"""

import asyncio

from mlhub.deployers.kube_api import Gone


class Reflector:
    """The objects of one kind (``api_version``/``plural``) matching ``selector``, grouped by
    the value of the label ``group_by``."""

    def __init__(self, kube, api_version, plural, selector, group_by, on_change, log):
        self.kube = kube
        self.api_version = api_version
        self.plural = plural
        self.selector = selector
        self.group_by = group_by
        self.on_change = on_change
        self.log = log
        self._groups = {}  # label value -> {name: object}
        self._synced = asyncio.Event()
        self._task = None

    # ------------------------------------------------------------ queries

    def of(self, key):
        """The objects whose label is ``key``, by name (a copy: safe to iterate while the
        watch goes on)."""
        return dict(self._groups.get(key, {}))

    def groups(self):
        """Every label value with at least one object."""
        return [key for key, items in self._groups.items() if items]

    # ------------------------------------------------------------ changes

    def _key(self, obj):
        return (obj["metadata"].get("labels") or {}).get(self.group_by)

    def replace(self, items):
        """Forget the cache and hold ``items`` (a LIST's answer); the changes it makes."""
        old = {
            (key, name): obj for key, group in self._groups.items() for name, obj in group.items()
        }
        self._groups = {}
        changes = []
        for obj in items:
            key, name = self._key(obj), obj["metadata"]["name"]
            if key:
                self._groups.setdefault(key, {})[name] = obj
                changes.append(("SYNC", obj, old.pop((key, name), None)))
        changes.extend(("DELETED", obj, obj) for obj in old.values())
        return changes

    def update(self, kind, obj):
        """Apply one watch event (ADDED, MODIFIED, DELETED); the change it makes, or None."""
        key, name = self._key(obj), obj["metadata"]["name"]
        if not key:
            return None
        group = self._groups.setdefault(key, {})
        previous = group.get(name)
        if kind == "DELETED":
            group.pop(name, None)
            if not group:
                self._groups.pop(key, None)
        else:
            group[name] = obj
        return (kind, obj, previous)

    # ------------------------------------------------------------ the watch

    async def start(self):
        """Start watching; return once the first list is in the cache."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        await self._synced.wait()

    async def stop(self):
        """Stop watching; a later ``start`` waits for a fresh list again."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._synced.clear()

    async def _run(self):
        """List, then watch from the list's resourceVersion; list again when it breaks."""
        failures = 0
        while True:
            try:
                listed = await self.kube.call(
                    "GET",
                    self.kube.path(self.api_version, self.plural),
                    query={"labelSelector": self.selector},
                )
                await self.on_change(self.replace(listed["items"]))
                self._synced.set()
                failures = 0
                await self.kube.watch(
                    self.api_version,
                    self.plural,
                    self.selector,
                    listed["metadata"]["resourceVersion"],
                    self._event,
                )
            except asyncio.CancelledError:
                raise
            except Gone:
                continue
            except Exception as exc:  # a watch must outlive any one failure
                failures += 1
                wait = min(2**failures, 30)
                self.log.warning("watch of %s broke (%s); again in %d s", self.plural, exc, wait)
                await asyncio.sleep(wait)

    async def _event(self, kind, obj):
        change = self.update(kind, obj)
        if change is not None:
            await self.on_change([change])
