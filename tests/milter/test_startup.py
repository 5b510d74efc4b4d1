"""`sealgate milter` start-up, shutdown and policy reload, without an MTA.

- a missing or invalid policy file: exit 1 with the file name or the
  FILE:LINE:COL message, nothing listening;
- a valid policy: listening within seconds; SIGTERM stops it with exit 0;
- SIGUSR1 with a broken file logs the errors and keeps running;
  with a good file it logs the reload;
- on an OpenSSL release below the security floor (chosen with the
  LD_PRELOAD shim of tests/shim/) it names the CVEs and exits 1 without
  listening, unless gateway.allow_vulnerable_openssl is true;
- SIGUSR1 sent the moment the port first accepts a connection reloads
  (signals are blocked before the socket listens), 20 starts in a row.
"""
import os
import signal
import socket
import subprocess
import time
import unittest

import sgtest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def fake_openssl(release):
    """Environment in which OpenSSL_version_num() answers release."""
    shim = os.environ.get("SEALGATE_FAKE_OPENSSL")
    if not shim or not os.path.isfile(shim):
        raise unittest.SkipTest("the OpenSSL version shim is not built (run under ctest)")
    env = dict(os.environ)
    env["LD_PRELOAD"] = shim
    env["SEALGATE_FAKE_OPENSSL_VERSION"] = release
    return env


def wait_for(path, text, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        with open(path, encoding="utf-8", errors="replace") as f:
            if text in f.read():
                return True
        time.sleep(0.1)
    return False


class MilterStartup(unittest.TestCase):
    def setUp(self):
        self.tmp = sgtest.tmpdir("sgst")
        self.port = free_port()
        self.gw = sgtest.Gateway(self.tmp, socket="inet:%d@127.0.0.1" % self.port)
        os.makedirs(self.gw.keystore, mode=0o700, exist_ok=True)
        self.log = os.path.join(self.tmp, "milter.log")
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def start(self, policy, *extra, env=None):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sgtest.sealgate_bin(), "milter", "-c", policy, "-f"] +
            sgtest.milter_user_args() + list(extra),
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env)
        logf.close()
        return self.proc

    def read_log(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def test_missing_policy_exits_1(self):
        missing = os.path.join(self.tmp, "nope.yaml")
        proc = self.start(missing)
        self.assertEqual(proc.wait(timeout=20), 1)
        self.assertIn(missing + ": cannot open", self.read_log())

    def test_invalid_policy_exits_1_with_position(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("version: 1\ngateway:\n  keystore: store\n  colour: blue\n")
        proc = self.start(bad)
        self.assertEqual(proc.wait(timeout=20), 1)
        self.assertIn(bad + ':4:3: unknown key "colour" in "gateway"',
                      self.read_log())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()

    def test_unsafe_keystore_exits_1(self):
        os.chmod(self.gw.keystore, 0o755)
        proc = self.start(self.gw.policy)
        self.assertEqual(proc.wait(timeout=20), 1)
        self.assertIn("chmod 700", self.read_log())

    def test_listens_and_stops_on_sigterm(self):
        proc = self.start(self.gw.policy)
        self.assertTrue(wait_listening(self.port, proc), self.read_log())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=20), 0, self.read_log())

    def test_reload_keeps_old_policy_on_error(self):
        proc = self.start(self.gw.policy)
        self.assertTrue(wait_listening(self.port, proc), self.read_log())
        with open(self.gw.policy) as f:
            good = f.read()
        with open(self.gw.policy, "w") as f:
            f.write(good + "bogus: [\n")
        proc.send_signal(signal.SIGUSR1)
        self.assertTrue(wait_for(self.log, "previous policy stays in force"),
                        self.read_log())
        self.assertIn(self.gw.policy + ":", self.read_log())
        self.assertIsNone(proc.poll())
        self.assertTrue(wait_listening(self.port, proc))

        with open(self.gw.policy, "w") as f:
            f.write(good)
        proc.send_signal(signal.SIGUSR1)
        self.assertTrue(wait_for(self.log, "reloaded"), self.read_log())
        self.assertIsNone(proc.poll())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=20), 0)

    def test_vulnerable_openssl_refused(self):
        proc = self.start(self.gw.policy, env=fake_openssl("3.0.19"))
        self.assertEqual(proc.wait(timeout=20), 1, self.read_log())
        log = self.read_log()
        self.assertIn("OpenSSL 3.0.19 in use has known flaws", log)
        self.assertIn("CVE-2026-34182", log)
        self.assertIn("CVE-2026-45447", log)
        self.assertIn("upgrade to 3.0.21 or later", log)
        self.assertNotIn("listening on", log)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()

    def test_vulnerable_openssl_allowed_by_policy(self):
        with open(self.gw.policy) as f:
            text = f.read()
        with open(self.gw.policy, "w") as f:
            f.write(text.replace('  spool_dir: "spool"\n',
                                 '  spool_dir: "spool"\n  allow_vulnerable_openssl: true\n'))
        proc = self.start(self.gw.policy, env=fake_openssl("3.0.20"))
        self.assertTrue(wait_listening(self.port, proc), self.read_log())
        log = self.read_log()
        self.assertIn("OpenSSL 3.0.20 in use has known flaws", log)
        self.assertIn("running anyway because gateway.allow_vulnerable_openssl is true", log)

    def test_fixed_openssl_starts_quietly(self):
        proc = self.start(self.gw.policy, env=fake_openssl("3.0.21"))
        self.assertTrue(wait_listening(self.port, proc), self.read_log())
        self.assertNotIn("known flaws", self.read_log())

    def test_sigusr1_at_first_accept(self):
        # The earliest moment an administrator's reload (or logrotate) can
        # reach a fresh daemon: the first connection it accepts.
        for run in range(20):
            with self.subTest(run=run):
                port = free_port()
                self.log = os.path.join(self.tmp, "milter-%d.log" % run)
                proc = self.start(self.gw.policy, "-s", "inet:%d@127.0.0.1" % port)
                end = time.time() + 15
                while time.time() < end and proc.poll() is None:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.001)
                proc.send_signal(signal.SIGUSR1)
                self.assertTrue(wait_for(self.log, "reloaded"),
                                "no reload logged: exit %r\n%s" % (proc.poll(), self.read_log()))
                self.assertIsNone(proc.poll(), self.read_log())
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sgtest.require_binary()
    unittest.main()
