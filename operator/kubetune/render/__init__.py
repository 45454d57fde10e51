"""Pure builders: a validated model plus frozen settings in, plain Kubernetes manifests out."""
