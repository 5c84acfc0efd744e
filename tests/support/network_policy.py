"""Which connections a set of NetworkPolicies lets through, by the rules of
https://kubernetes.io/docs/concepts/services-networking/network-policies/ (networking.k8s.io/v1).

The test cluster has no network plugin that enforces NetworkPolicy, so the tests ask this
instead, with the policies and the pods (labels, namespaces, ports) that really run. It follows
the API's semantics: a pod is isolated in a direction once any policy of its namespace selects
it for that direction; then a connection needs a rule that admits it, on the source's side
(egress) and on the destination's (ingress). Named ports are the destination container's.
(Tests only; a real cluster's plugin is the judge, deploy/README.md says how to ask it.)
"""

import ipaddress

IMPLICIT_NAMESPACE_LABEL = "kubernetes.io/metadata.name"


class Endpoint:
    """A pod (``namespace``, ``labels``, named ``ports``, ``ip``) or, with no namespace, an
    address outside the cluster's pods."""

    def __init__(self, ip, namespace=None, labels=None, ports=None, name=None):
        self.ip, self.namespace = ip, namespace
        self.labels, self.ports = labels or {}, ports or {}
        self.name = name or ip

    @classmethod
    def of_pod(cls, pod):
        ports = {
            p["name"]: p["containerPort"]
            for c in pod["spec"]["containers"]
            for p in c.get("ports") or []
            if p.get("name")
        }
        meta = pod["metadata"]
        return cls(
            pod["status"]["podIP"], meta["namespace"], meta.get("labels"), ports, meta["name"]
        )

    def __repr__(self):
        return f"<{self.name}>"


def selects(selector, labels):
    """Whether a label selector (``{}`` or absent: everything) matches ``labels``."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _types(policy):
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def _peer_matches(peer, other, policy_namespace, namespaces):
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if other.namespace is None:  # selectors match pods only
        return False
    if "namespaceSelector" in peer:
        labels = {**namespaces.get(other.namespace, {}), IMPLICIT_NAMESPACE_LABEL: other.namespace}
        if not selects(peer["namespaceSelector"], labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def _port_matches(entries, dest, port, protocol):
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or dest.ports.get(wanted) == port:
            return True
    return False


def _side_allows(policies, pod, other, dest, port, protocol, direction, namespaces):
    """Whether ``pod``'s own policies for ``direction`` let the connection through."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    isolating = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in _types(p)
        and selects(p["spec"].get("podSelector"), pod.labels)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(
                _peer_matches(peer, other, pod.namespace, namespaces) for peer in peers
            ):
                continue
            if _port_matches(rule.get("ports"), dest, port, protocol):
                return True
    return False


def allowed(policies, namespaces, source, dest, port, protocol="TCP"):
    """Whether ``source`` may open a connection to ``dest`` on ``port``; ``namespaces`` maps a
    namespace's name to its labels (its name label is implicit, as from Kubernetes 1.21)."""
    if source.namespace is not None and not _side_allows(
        policies, source, dest, dest, port, protocol, "Egress", namespaces
    ):
        return False
    if dest.namespace is None:
        return True
    return _side_allows(policies, dest, source, dest, port, protocol, "Ingress", namespaces)
