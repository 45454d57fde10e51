"""A minimal kubelet for the demo and end-to-end tests: it really runs pods, as local processes.

kwok only pretends pods run; to watch the real trainer train we need something that executes
the container command. This node registers itself, keeps its lease, runs each pod bound to it
in a private mount namespace where its volumes (ConfigMaps, emptyDirs, PVCs, the projected
ServiceAccount token) appear at their mountPaths, and reports pod status with exit codes and
termination messages like a kubelet would. Images are ignored: commands run from the project's
virtualenv. Pods run once (restartPolicy Never semantics), which is what Jobs use.
"""
