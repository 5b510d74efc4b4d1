"""The demo of `make run` and `make demo` (scripts/demo.py).

`demo.py run` is started as `make run` starts it, on free ports, with a
copy of policy.yaml.example; the test reads what it prints and keeps it to
its contract:

- the line `sealgate demo: SMTP 127.0.0.1:PORT, delivered mail in DIR`;
- the printed OpenPGP `swaks` command, run as printed, delivers a file into
  DIR that gpg decrypts with carol's example key; the printed `[secure]`
  command is refused with 550 at SMTP time and delivers nothing;
- `demo.py send` (`make demo`) against the running demo prints one line per
  message, each with what arrived: encrypted (openpgp), encrypted (smime),
  refused: 550, signed, decrypted;
- Ctrl-C (SIGINT to its process group) stops it with exit 0, and nothing
  it started is left: no process works in its Postfix queue, the SMTP and
  milter ports are closed, no process names its directory or keystore.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import unittest

import postfix
import sgtest

ROOT = sgtest.src_dir()
DEMO = os.path.join(ROOT, "scripts", "demo.py")
KEYS = os.path.join(ROOT, "keys-example")
START_TIMEOUT = 120


class Output:
    """The lines a process prints, collected by a thread."""

    def __init__(self, stream):
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for raw in stream:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)     # end of output
            self.cond.notify_all()

    def wait_line(self, pattern, timeout):
        """The first line matching pattern (a match object); fails the
        wait at end of output or after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if line is None:
                        break
                    m = re.search(pattern, line)
                    if m:
                        return m
                if None in self.lines or time.monotonic() > deadline:
                    raise AssertionError("no line matching %r in:\n%s" % (
                        pattern, self.text()))
                self.cond.wait(deadline - time.monotonic())

    def text(self):
        return "\n".join(line for line in self.lines if line is not None)


def processes_mentioning(*needles):
    """(pid, cmdline or cwd) of processes whose command line or working
    directory contains one of needles."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        for n in needles:
            if n in cmd or cwd.startswith(n):
                out.append((int(pid), cmd or cwd))
    return out


class Demo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, why = postfix.can_run()
        if not ok:
            sgtest.skip_file(why)
        cls.bin = sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgdemo")
        os.chmod(cls.tmp, 0o755)            # the postfix user works in it
        cls.policy = os.path.join(cls.tmp, "policy.yaml")
        shutil.copy(os.path.join(ROOT, "policy.yaml.example"), cls.policy)
        cls.dir = os.path.join(cls.tmp, "demo")
        cls.keystore = os.path.join(cls.tmp, "keys-example", "store")
        cls.port = postfix.free_port()
        cls.milter_port = postfix.free_port()
        cls.proc = subprocess.Popen(
            cls.demo_argv("run"), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ROOT)
        cls.out = Output(cls.proc.stdout)

    @classmethod
    def demo_argv(cls, command):
        return ["python3", DEMO, command, "--bin", cls.bin, "--policy",
                cls.policy, "--dir", cls.dir, "--port", str(cls.port),
                "--milter-port", str(cls.milter_port)]

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            os.killpg(cls.proc.pid, signal.SIGKILL)
            cls.proc.wait()

    def printed_command(self, comment):
        """The swaks command printed under the comment line naming it."""
        lines = self.out.text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("#") and comment in line:
                return shlex.split(lines[i + 1])
        self.fail("no command under %r in:\n%s" % (comment, self.out.text()))

    def delivered(self, count, timeout=60):
        mail = os.path.join(self.dir, "mail")
        deadline = time.monotonic() + timeout
        while True:
            names = sorted(n for n in os.listdir(mail)
                           if n.endswith(".eml") and not n.startswith("."))
            if len(names) >= count or time.monotonic() > deadline:
                return [os.path.join(mail, n) for n in names]
            time.sleep(0.1)

    def test_demo(self):
        m = self.out.wait_line(r"^sealgate demo: SMTP 127\.0\.0\.1:(\d+), "
                               r"delivered mail in (\S+)$", START_TIMEOUT)
        self.assertEqual(int(m.group(1)), self.port)
        self.assertEqual(m.group(2), os.path.join(self.dir, "mail"))
        self.out.wait_line(r"^== The gateway's log", 10)

        with self.subTest("the printed OpenPGP command"):
            cp = sgtest.run(self.printed_command("OpenPGP"))
            self.assertEqual(cp.returncode, 0, cp.stdout)
            (path,) = self.delivered(1)
            with open(path, "rb") as f:
                raw = f.read()
            self.assertIn(b"multipart/encrypted", raw)
            home = sgtest.GpgHome(os.path.join(self.tmp, "carol"))
            home.gpg("--import", os.path.join(KEYS, "openpgp", "carol.sec.asc"))
            dec = home.gpg("--decrypt", input_bytes=raw)
            self.assertIn(b"This is a test mailing", dec.stdout)

        with self.subTest("the printed [secure] command"):
            cp = sgtest.run(self.printed_command("[secure]"))
            self.assertNotEqual(cp.returncode, 0, cp.stdout)
            self.assertRegex(cp.stdout.decode(), r"<\*\* 550 5\.7\.1 ")
            self.assertEqual(len(self.delivered(1, timeout=0)), 1)

        with self.subTest("make demo"):
            cp = sgtest.run(self.demo_argv("send"))
            text = cp.stdout.decode("utf-8", "replace")
            self.assertEqual(cp.returncode, 0, text)
            rows = {line.split()[0]: line for line in text.splitlines()[2:]
                    if line.strip()}
            expected = {
                "openpgp": "encrypted (openpgp); gpg decrypts",
                "smime": "encrypted (smime); openssl decrypts",
                "[secure]": "refused: 550 5.7.1",
                "signed": "signed (openpgp); gpg verifies",
                "inbound": "decrypted (yes; method=openpgp",
            }
            self.assertEqual(set(rows), set(expected), text)
            for name, arrived in expected.items():
                self.assertIn(arrived, rows[name], text)
                self.assertNotIn("UNEXPECTED", rows[name], text)

        with self.subTest("Ctrl-C stops everything"):
            os.killpg(self.proc.pid, signal.SIGINT)
            self.assertEqual(self.proc.wait(120), 0, self.out.text())
            self.out.wait_line(r"^sealgate demo: stopped", 10)
            for port in (self.port, self.milter_port):
                self.assertFalse(postfix.port_open(port), port)
            self.assertEqual(processes_mentioning(self.dir, self.keystore), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
