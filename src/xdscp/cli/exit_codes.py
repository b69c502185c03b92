"""The exit codes every ``xdscp`` command uses (docs/operations.md lists them)."""

from __future__ import annotations

OK = 0
# What was checked is wrong: validate found a problem, status a node rejecting its config,
# serve could not start (a port taken, unusable TLS files).
FAILED = 1
# Could not run as asked: bad arguments, a config serve cannot load, an unreadable template,
# an admin API that cannot be reached, a type dump does not find.
USAGE = 2
