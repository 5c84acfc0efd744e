"""The steps of an operation on a published model, declared once.

The publisher records each as an event (``step``; docs/internals.md, "Event"), its client
follows them to show progress (``mlhub models publish``), and the notebook's Publish panel maps
them onto the four steps users see (``mlhub.extension.progress``).
"""

# the alias an event concerns when it is the plain URL's (``/models/<owner>/<name>``, which
# ``@production`` names too); every other alias has its own URL and its own processes
DEFAULT_ALIAS = "production"
# the alias of a model's canary: a unit of its own that takes a share of production's requests
# (``mlhub models canary``), never moved as an ordinary alias
CANARY = "canary"
# the alias of a model's shadow: a unit of its own that answers a sample of production's
# requests again, its answers kept and never returned (``mlhub models shadow``)
SHADOW = "shadow"
REQUESTED = "requested"  # the operation was accepted (publish, scale, rollback)
# what a publish or a rollout goes through, in order; "done" ends it
DEPLOY_STEPS = ("received", "unpacked", "starting", "ready", "switched", "drained", "done")
# an operation whose model's last event is one of these did not finish (the publisher stopped)
IN_PROGRESS = (REQUESTED, *DEPLOY_STEPS[:-1])
# changes to who may call a model: recorded with who made them, never part of an operation
KEY_CREATED, KEY_REVOKED, SHARED = "key_created", "key_revoked", "shared"
ACCESS_STEPS = (KEY_CREATED, KEY_REVOKED, SHARED)
ALIAS_DELETED = "alias_deleted"  # an alias (not the default) was removed, with its processes
CANARY_SHARE = "canary_share"  # a running canary's share of the requests was changed
# an idle unit's processes or pods were released; a request wakes it (``mlhub.publisher.idle``)
ASLEEP, WAKING, AWAKE = "asleep", "waking", "awake"
SLEEP_SETTING = "sleep_setting"  # when a model sleeps was changed (``sleep_after``)
# a model's history (``mlhub models history``): what was asked, by whom, and what went live
HISTORY_STEPS = (
    "received",
    REQUESTED,
    "switched",
    "failed",
    ALIAS_DELETED,
    CANARY_SHARE,
    SLEEP_SETTING,
    *ACCESS_STEPS,
)
