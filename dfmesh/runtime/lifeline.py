"""Stop a service when the process that started it is gone (DFMESH_EXIT_WITH_PID).

Test and benchmark meshes start each service in its own session, so a launcher that dies
without cleaning up (a segfault, SIGKILL, a CI timeout) would leave them running and holding
ports. With `exit_with_pid` set, a daemon thread checks that process every second and, once it
has gone, sends this process SIGTERM (the normal drain) and hard-exits if draining hangs.
`dfmesh up` leaves it unset: its services outlive the command that started them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """Whether `pid` still exists (a zombie counts as gone only once it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with(pid: int, grace_seconds: float, interval: float = 1.0) -> threading.Thread:
    """Watch `pid` from a daemon thread; SIGTERM ourselves when it is gone."""

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval)
        log.warning("launcher process %d is gone; stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_seconds + 5.0)
        os._exit(1)  # draining hung; nothing is left to serve

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread
