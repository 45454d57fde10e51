"""Name resolution for the pods this node runs: a per-pod `/etc/hosts` standing in for cluster DNS.

A kubelet writes `/etc/hosts` with the pod's own name; cluster DNS answers for the others. An Indexed
Job's pods have the hostname `JOB-INDEX` and the headless Service as subdomain, and cluster DNS answers
`HOSTNAME.SUBDOMAIN.NAMESPACE.svc.cluster.local` for each of them (and the shorter forms through the
pod's search path). Every pod here shares the host's loopback, so the local node writes those names,
for every pod it runs under a headless Service that selects it, into each pod's hosts file, pointing at
127.0.0.1. The file is rewritten in place as pods come and go (the bind mount follows the inode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLUSTER_DOMAIN = "cluster.local"
LOOPBACK = "127.0.0.1"
HEADER = """\
# Kubernetes-managed hosts file (kubetune local node: peers of headless Services resolve to loopback).
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""


@dataclass(frozen=True)
class PodDns:
    """What DNS knows about a pod: its hostname, subdomain and labels (the Service selects on them)."""

    namespace: str
    hostname: str
    subdomain: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def pod_dns(pod: Any) -> PodDns:
    """A pod's hostname is `spec.hostname` when set (Indexed Jobs set JOB-INDEX), else its name."""
    return PodDns(
        namespace=pod.metadata.namespace,
        hostname=pod.spec.hostname or pod.metadata.name,
        subdomain=pod.spec.subdomain or None,
        labels=dict(pod.metadata.labels or {}),
    )


def headless_selectors(services: Iterable[Any]) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> selector of every headless Service with a selector."""
    return {
        (svc.metadata.namespace, svc.metadata.name): dict(svc.spec.selector)
        for svc in services
        if svc.spec.cluster_ip == "None" and svc.spec.selector
    }


def dns_names(pod: PodDns, headless: Mapping[tuple[str, str], Mapping[str, str]]) -> list[str]:
    """The pod's A-record names (full, then the forms the search path completes), if a Service publishes it."""
    if pod.subdomain is None:
        return []
    selector = headless.get((pod.namespace, pod.subdomain))
    if selector is None or any(pod.labels.get(k) != v for k, v in selector.items()):
        return []
    name = f"{pod.hostname}.{pod.subdomain}"
    in_namespace = f"{name}.{pod.namespace}"
    return [f"{in_namespace}.svc.{CLUSTER_DOMAIN}", f"{in_namespace}.svc", in_namespace, name]


def hosts_file(own: PodDns, peers: Iterable[PodDns], headless: Mapping[tuple[str, str], Mapping[str, str]]) -> str:
    """The kubelet's header and own entry, then one line per peer (the pod itself included) that DNS would answer."""
    lines = [HEADER.rstrip("\n")]
    own_fqdn = f"{own.hostname}.{own.subdomain}.{own.namespace}.svc.{CLUSTER_DOMAIN}" if own.subdomain else None
    lines.append("\t".join([LOOPBACK, *([own_fqdn] if own_fqdn else []), own.hostname]))
    seen: set[str] = {own.hostname, *([own_fqdn] if own_fqdn else [])}
    for peer in sorted(peers, key=lambda p: (p.namespace, p.subdomain or "", p.hostname)):
        names = [n for n in dns_names(peer, headless) if n not in seen]
        if names:
            lines.append("\t".join([LOOPBACK, *names]))
            seen.update(names)
    return "\n".join(lines) + "\n"
