"""A minimal kubelet for the demo and end-to-end tests: it really runs pods, as local processes.

kwok only pretends pods run; to watch the real trainer train we need something that executes
the container command. This node registers itself, keeps its lease, runs each pod bound to it
in mount, UTS and PID namespaces of its own, where its volumes (ConfigMaps, emptyDirs, PVCs, the
projected ServiceAccount token) appear at their mountPaths, its hostname is the pod's and its
/etc/hosts resolves the headless-Service names of the pods on this node (multi-node rendezvous),
and reports pod status with exit codes and termination messages like a kubelet would. Images are
ignored: commands run from the project's virtualenv. Pods run once (restartPolicy Never
semantics), which is what Jobs use.
"""
