"""A rolling update under continuous requests, as every layer checks it (embedded and Kubernetes
mode, Python and R models): one client calls the model through the hub's proxy, one request
after another, while a new version replaces the old one; no request may fail, and once the new
version answered the old one never answers again.

``hub`` is a running hub with ``url``, ``alice`` (her token) and ``client`` (her
``PublisherClient``); the model is alice's.
"""

import threading

import requests

from support.embedded_hub import wait_for


class Load(threading.Thread):
    """Calls alice's model ``name`` through the proxy with ``rows``, one request after another,
    until stopped; ``answers`` has the first prediction of each answer, ``failures`` what went
    wrong (an exception, or a status other than 200 with the start of its body)."""

    def __init__(self, hub, name, rows=([0.0, 1.0],)):
        super().__init__(daemon=True)
        self.hub, self.name, self.rows = hub, name, list(rows)
        self.answers, self.failures = [], []
        self.halt = threading.Event()

    def run(self):
        session = requests.Session()
        url = f"{self.hub.url}models/alice/{self.name}/v1/predict"
        headers = {"Authorization": f"token {self.hub.alice}"}
        while not self.halt.is_set():
            try:
                # a timeout: a hung request is a failure to report, not a hung test
                resp = session.post(url, json={"instances": self.rows}, headers=headers, timeout=30)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            if resp.status_code == 200:
                self.answers.append(resp.json()["predictions"][0])
            else:
                self.failures.append(f"{resp.status_code} {resp.text[:200]}")

    def seen(self, value, count=1):
        return self.answers.count(value) >= count

    def stop(self):
        self.halt.set()
        self.join()


def roll_under_load(hub, name, new_bundle, rows=([0.0, 1.0],)):
    """Publish ``new_bundle`` (a version predicting 2.0) over the live version of ``name``
    (predicting 1.0) while ``Load`` calls it; return the publish's ``Model`` after checking
    that no request failed and that the answers switched from 1.0 to 2.0 exactly once."""
    load = Load(hub, name, rows)
    load.start()
    try:
        wait_for(lambda: load.seen(1.0, 20), "answers from v1")
        model = hub.client.publish(new_bundle, name)
        wait_for(lambda: load.seen(2.0, 20), "answers from v2")
    finally:
        load.stop()
    assert load.failures == [], load.failures
    switch = load.answers.index(2.0)
    before, after = set(load.answers[:switch]), set(load.answers[switch:])
    assert before == {1.0} and after == {2.0}, (before, after)
    return model
