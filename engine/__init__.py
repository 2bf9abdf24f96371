"""suture's engine: playbooks, rules, decisions, fixes and their history.

Pure with respect to time and threads: no loops, no sleeps, no sockets; the
clock is a parameter. ``suture.sidecar`` owns every wait.
"""
