"""Runs a command (the milter) as a child subreaper, for bench/bench.py.

GPGME starts gpg detached (it forks twice and waits only for the middle
process), so the daemon never waits for gpg and gpg's CPU time never shows
in the daemon's cutime/cstime. Run under this process, such orphans are
reparented here instead of to init, and waited for here: their CPU time
then adds up in this process's cutime/cstime (/proc/PID/stat), which
bench.py reads together with the daemon's own and that of the processes
still running below (gpg-agent). This process itself only waits.

Usage: subreaper.py COMMAND [ARG...]; SIGTERM and SIGINT are passed on to
the command; exits with its exit code when it has ended.
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed")
    child = os.fork()
    if child == 0:
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            sys.exit(1)
        except InterruptedError:
            continue
        if pid == child:
            sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
