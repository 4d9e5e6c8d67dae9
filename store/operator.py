"""Who is running segsync, for run history and consent records."""

from __future__ import annotations

import getpass
import os


def current_operator() -> str:
    """Who is running segsync: the login behind sudo if any, plus the SSH
    client address when remote, so a shared server's history says who did it."""
    user = next(
        (os.environ[v] for v in ("SUDO_USER", "USER", "LOGNAME") if os.environ.get(v)), None
    )
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, e.g. in some containers
            user = f"uid {os.getuid()}"
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    return f"{user} (ssh from {ssh[0]})" if ssh else user
