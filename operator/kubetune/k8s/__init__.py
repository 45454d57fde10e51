"""The only code that talks to the API server: client, server-side apply, observation, status, Events."""
