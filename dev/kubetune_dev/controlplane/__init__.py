"""A real local Kubernetes control plane (etcd, kube-apiserver, and in Tier B controller-manager, scheduler
and kwok with fake GPU nodes) so tests, benchmarks and the demo never talk to a mocked API.

Binaries come from ``make binaries`` (hack/build-all.sh); see docs/development.md.
"""

from kubetune_dev.controlplane.cluster import ControlPlaneError, LocalControlPlane
from kubetune_dev.controlplane.components import Tier

__all__ = ["ControlPlaneError", "LocalControlPlane", "Tier"]
