"""The NetworkPolicy rules the chart tests judge policies by (tests/support/network_policy.py),
on policies whose answers the Kubernetes documentation gives."""

from support.network_policy import Endpoint, allowed, selects

WEB = Endpoint("10.0.0.2", "shop", {"app": "web"}, {"http": 8080})
DB = Endpoint("10.0.0.3", "shop", {"app": "db"}, {"pg": 5432})
OTHER_NS = Endpoint("10.0.1.2", "lab", {"app": "web"})
METADATA = Endpoint("169.254.169.254")


def policy(namespace, selector, **spec):
    return {"metadata": {"namespace": namespace}, "spec": {"podSelector": selector, **spec}}


def test_no_policy_means_everything_is_allowed():
    assert allowed([], {}, OTHER_NS, DB, 5432)


def test_a_selected_pod_takes_only_what_a_rule_admits():
    only_web = policy(
        "shop",
        {"matchLabels": {"app": "db"}},
        ingress=[
            {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "pg"}]}
        ],
    )
    assert allowed([only_web], {}, WEB, DB, 5432)  # the named port is the destination's
    assert not allowed([only_web], {}, WEB, DB, 5433)
    assert not allowed([only_web], {}, WEB, DB, 5432, "UDP")
    # a podSelector alone means pods of the policy's own namespace
    assert not allowed([only_web], {}, OTHER_NS, DB, 5432)
    # pods the policy does not select stay open
    assert allowed([only_web], {}, OTHER_NS, WEB, 8080)


def test_namespace_and_pod_selectors_in_one_peer_must_both_match():
    peer = {
        "namespaceSelector": {"matchLabels": {"team": "lab"}},
        "podSelector": {"matchLabels": {"app": "web"}},
    }
    db = policy("shop", {}, policyTypes=["Ingress"], ingress=[{"from": [peer]}])
    assert allowed([db], {"lab": {"team": "lab"}}, OTHER_NS, DB, 5432)
    assert not allowed([db], {"lab": {}}, OTHER_NS, DB, 5432)
    # the name label is implicit (every namespace has it from Kubernetes 1.21)
    by_name = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "lab"}}}
    named = policy("shop", {}, ingress=[{"from": [by_name]}])
    assert allowed([named], {}, OTHER_NS, DB, 5432)


def test_egress_is_judged_on_the_sources_side_with_ip_blocks():
    out = policy(
        "shop",
        {"matchLabels": {"app": "web"}},
        policyTypes=["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]}],
    )
    assert allowed([out], {}, WEB, Endpoint("8.8.8.8"), 443)
    assert not allowed([out], {}, WEB, METADATA, 80)
    # 10.0.0.3 is in 0.0.0.0/0: an ipBlock matches pod addresses too
    assert allowed([out], {}, WEB, DB, 5432)


def test_selector_expressions():
    labels = {"component": "proxy"}
    assert selects(
        {"matchExpressions": [{"key": "component", "operator": "In", "values": ["hub", "proxy"]}]},
        labels,
    )
    assert not selects(
        {"matchExpressions": [{"key": "component", "operator": "NotIn", "values": ["proxy"]}]},
        labels,
    )
    assert selects({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert selects({}, labels) and selects(None, labels)
