"""The moltconsole backend: sandbox, logs, storage, AI gateway, browser, auth and the API."""
