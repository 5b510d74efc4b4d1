"""OpenSSL's security floor (README, "Security floor").

sealgate reads the OpenSSL release in use at run time. Below the first
fixed release of its branch (3.0.21 for 3.0) `sealgate process` names the
CVEs and refuses to run, unless the policy says
`gateway.allow_vulnerable_openssl: true`; `sealgate version` says which.
The release a test runs on is chosen with an LD_PRELOAD shim
(tests/shim/fake_openssl_version.c) that answers OpenSSL_version_num();
everything else is the machine's real OpenSSL.
"""
import os
import unittest

import sgtest
from sgtest import CAROL, SENDER

CVES = ("CVE-2026-34182", "CVE-2026-45447")
MESSAGE = (b"From: alice@example.com\r\nTo: carol@partner.example\r\n"
           b"Subject: hello\r\n\r\nHello.\r\n")


def shim():
    path = os.environ.get("SEALGATE_FAKE_OPENSSL")
    if not path or not os.path.isfile(path):
        sgtest.skip_file("the OpenSSL version shim is not built (run under ctest)")
    return path


def env_for(release):
    env = dict(os.environ)
    env["LD_PRELOAD"] = shim()
    env["SEALGATE_FAKE_OPENSSL_VERSION"] = release
    # Under AddressSanitizer the shim loads before the ASan runtime.
    env["ASAN_OPTIONS"] = "verify_asan_link_order=0:" + env.get("ASAN_OPTIONS", "")
    return env


class SecurityFloor(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = sgtest.tmpdir("sgfl")
        cls.strict = sgtest.Gateway(os.path.join(cls.tmp, "strict"))
        cls.allow = sgtest.Gateway(os.path.join(cls.tmp, "allow"), extra_yaml="")
        with open(cls.allow.policy) as f:
            text = f.read()
        with open(cls.allow.policy, "w") as f:
            f.write(text.replace('  spool_dir: "spool"\n',
                                 '  spool_dir: "spool"\n  allow_vulnerable_openssl: true\n'))
        cls.allow.check_policy()
        for gw in (cls.strict, cls.allow):
            os.makedirs(gw.keystore, mode=0o700, exist_ok=True)

    def process(self, gw, release):
        out = os.path.join(gw.dir, "out.eml")
        if os.path.exists(out):
            os.unlink(out)
        cp = sgtest.run([sgtest.sealgate_bin(), "process", "-c", gw.policy,
                         "--from", SENDER, "--to", CAROL, "--client-ip", "127.0.0.1",
                         "-o", out], input_bytes=MESSAGE, env=env_for(release))
        written = None
        if os.path.exists(out):
            with open(out, "rb") as f:
                written = f.read()
        return cp.returncode, written, cp.stderr.decode("utf-8", "replace")

    def test_process_refuses_vulnerable_releases(self):
        for release, fixed in (("3.0.19", "upgrade to 3.0.21 or later"),
                               ("3.0.20", "upgrade to 3.0.21 or later"),
                               ("3.0.0", "upgrade to 3.0.21 or later"),
                               ("3.4.5", "upgrade to 3.4.6 or later"),
                               ("3.2.4", "no release of this branch is fixed"),
                               ("4.0.0", "upgrade to 4.0.1 or later")):
            with self.subTest(release=release):
                rc, out, err = self.process(self.strict, release)
                self.assertEqual(rc, 1, err)
                self.assertIsNone(out, "a message was written")
                self.assertIn("OpenSSL %s in use has known flaws" % release, err)
                for cve in CVES:
                    self.assertIn(cve, err)
                self.assertIn(fixed, err)
                self.assertIn("refusing to run", err)
                self.assertNotIn("verdict:", err)

    def test_process_runs_on_fixed_releases(self):
        for release in ("3.0.21", "3.0.22", "3.4.6", "3.5.7", "3.6.3", "4.0.1", "4.1.0"):
            with self.subTest(release=release):
                rc, out, err = self.process(self.strict, release)
                self.assertEqual(rc, 0, err)
                self.assertEqual(out, MESSAGE)
                self.assertNotIn("known flaws", err)
                self.assertIn("verdict: accept", err)

    def test_allow_vulnerable_openssl_runs_and_says_so(self):
        rc, out, err = self.process(self.allow, "3.0.19")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, MESSAGE)
        self.assertIn("OpenSSL 3.0.19 in use has known flaws", err)
        self.assertIn("running anyway because gateway.allow_vulnerable_openssl is true", err)

    def test_version_reports_the_floor(self):
        for release, expected in (("3.0.19", "VULNERABLE: CVE-2026-34182"),
                                  ("3.0.21", "security floor: ok")):
            with self.subTest(release=release):
                cp = sgtest.run([sgtest.sealgate_bin(), "version"], env=env_for(release))
                self.assertEqual(cp.returncode, 0)
                line = [ln for ln in cp.stdout.decode().splitlines()
                        if ln.startswith("OpenSSL ")]
                self.assertEqual(len(line), 1, cp.stdout)
                self.assertIn(expected, line[0])

    def test_allow_key_must_be_a_boolean(self):
        gw = sgtest.Gateway(os.path.join(self.tmp, "typo"))
        with open(gw.policy) as f:
            text = f.read()
        with open(gw.policy, "w") as f:
            f.write(text.replace('  spool_dir: "spool"\n',
                                 '  spool_dir: "spool"\n  allow_vulnerable_openssl: sure\n'))
        cp = gw.run("policy", "check", "-c", gw.policy)
        self.assertEqual(cp.returncode, 1)
        self.assertIn(gw.policy + ":6:29:", cp.stdout + cp.stderr)


if __name__ == "__main__":
    sgtest.require_binary()
    unittest.main()
