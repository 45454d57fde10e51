"""The I/O verbs, the only code that talks to the API server: the client and its protocol, applying children,
observing what status depends on, status writes and Events."""
