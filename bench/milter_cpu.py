"""CPU per message of a running `sealgate milter`, driven over the milter
protocol (bench/milterclient.py) through a unix socket: the CPU time of the
milter process (from /proc) and of the processes it starts. GPGME starts
gpg detached (a double fork), so this script makes itself their reaper
(PR_SET_CHILD_SUBREAPER), reaps them and counts them and their CPU time.
gpg-agent keeps running and is not counted.

  pass      to a partner without a key under encrypt-if-key (sent plain)
  internal  to an internal address (passes)
  openpgp   encrypted to a partner's OpenPGP key

Usage: bench/milter_cpu.py SEALGATE_BIN [MESSAGES]
"""
import ctypes
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import milter
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "lib"))
import milterclient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PR_SET_CHILD_SUBREAPER = 36


class Reaper:
    """Reaps the orphans the milter leaves to this process (not the
    milter itself) and counts them."""

    def __init__(self):
        self.milter = None
        self.reaped = 0
        self.lock = threading.Lock()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                time.sleep(0.01)
                continue
            if info is None or info.si_pid == self.milter:
                time.sleep(0.01)
                continue
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                continue
            with self.lock:
                self.reaped += 1

    def count(self):
        with self.lock:
            return self.reaped


def cpu_seconds(pid):
    """CPU of pid (and of the children it waited for itself), and of the
    processes this script reaped."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / os.sysconf("SC_CLK_TCK"), ru.ru_utime + ru.ru_stime


def wait_listening(sock, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            milterclient.Connection(sock, timeout=1).sock.close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("sealgate milter did not start listening (see its log)")


def run_messages(address, count, rcpt, encrypted):
    for n in range(count):
        answer, mods = milterclient.send_message(
            address, "alice@example.com", [rcpt], milter.message(n),
            queue_id="C%d" % n)
        if answer != "accept" or any(c == b"b" for c, _d in mods) != encrypted:
            sys.exit("message %d to %s: %s %r" % (n, rcpt, answer, mods[:2]))


def main():
    binary = os.path.abspath(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    tmp = tempfile.mkdtemp(prefix="sgbenchc.", dir="/tmp")
    proc = None
    try:
        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write("version: 1\n"
                    "gateway: { keystore: store, spool_dir: spool }\n"
                    "internal_domains: [example.com]\n"
                    "outbound:\n"
                    "  default: { action: encrypt-if-key, methods: [openpgp] }\n")
        milter.run(binary, "keys", "-c", policy, "import",
                   os.path.join(ROOT, "keys-example/openpgp/carol.pub.asc"))
        reaper = Reaper()
        sock = os.path.join(tmp, "m.sock")
        # The log goes to a file: a pipe nobody reads would stop the
        # milter once it is full.
        with open(os.path.join(tmp, "milter.log"), "wb") as log:
            proc = subprocess.Popen([binary, "milter", "-c", policy, "-s",
                                     "unix:" + sock, "-f"] + milter.run_as(),
                                    stdout=subprocess.DEVNULL, stderr=log)
        reaper.milter = proc.pid
        wait_listening(sock, proc)
        cases = [("pass (encrypt-if-key, no key)", "zoe@nokey.example", False),
                 ("internal recipient", "bob@example.com", False),
                 ("openpgp encrypt", "carol@partner.example", True)]
        print("sealgate milter CPU per message, %d messages each: the milter, "
              "the processes it started, how many" % count)
        for name, rcpt, enc in cases:
            run_messages(sock, 3, rcpt, enc)            # warm up
            time.sleep(0.2)
            own0, kids0 = cpu_seconds(proc.pid)
            n0 = reaper.count()
            run_messages(sock, count, rcpt, enc)
            time.sleep(0.2)
            own1, kids1 = cpu_seconds(proc.pid)
            n1 = reaper.count()
            print("%-32s %6.2f ms  + processes %6.2f ms  (%.1f processes)"
                  % (name, (own1 - own0) * 1000 / count,
                     (kids1 - kids0) * 1000 / count, (n1 - n0) / count))
    finally:
        if proc is not None:
            milter.stop_milter(proc)
        subprocess.run(["gpgconf", "--homedir", os.path.join(tmp, "store/openpgp"),
                        "--kill", "all"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
