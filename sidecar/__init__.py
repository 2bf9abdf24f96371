"""suture's sidecar: everything that waits on the world.

Sources (file tails, probes, metrics), signals, the playbook watcher, the
HTTP API, the CLI, and the runtime that ties them to the engine.
"""
