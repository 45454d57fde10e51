"""Development tooling that never ships: the local control plane, the local node that runs pods as
processes, the tiny models of tests and the demo, and the demo itself. Neither the wheel nor the images
contain this package; `import-linter` keeps the shipped packages from importing it."""
