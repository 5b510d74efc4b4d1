"""Human-readable output escapes what could drive a terminal (README,
"Commands"): control characters (ESC, CR, LF, DEL, C1), bytes that are not
UTF-8 and invisible format characters in values from key material,
certificates and file names are printed as \\xHH (\\uHHHH for format
characters), a backslash doubled. `keys list --json` stays valid JSON.

Keys and certificates are made by gpg and openssl with such bytes in the
user id, the certificate's address and subject; file names carry them too.
"""

import json
import os
import re
import unittest

import sgtest
import smimetest

EVIL = b"\x1b[2J\r\x7f\xff\xc2\x9b"                  # ESC, CR, DEL, non-UTF-8, C1 CSI
EVIL_TEXT = r"\x1b[2J\x0d\x7f\xff\xc2\x9b"
PGP_ADDR = b"ev\x1b[31mil@partner.example"
PGP_ADDR_TEXT = r"ev\x1b[31mil@partner.example"
SMIME_ADDR = b"sm\x1b[5mime\x7f@partner.example"
SMIME_ADDR_TEXT = r"sm\x1b[5mime\x7f@partner.example"
BAD_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")


class TerminalEscape(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgesc")
        cls.home = sgtest.GpgHome(os.path.join(cls.tmp, "h"))
        uid = b"Evil " + EVIL + b" <" + PGP_ADDR + b">"
        cp = sgtest.run(["gpg", "--homedir", cls.home.path, "--batch", "--no-tty",
                         "--pinentry-mode", "loopback", "--passphrase", "",
                         b"--quick-gen-key", uid, "future-default", "default", "never"])
        if cp.returncode != 0:
            raise RuntimeError(cp.stderr.decode("utf-8", "replace"))
        cls.pgp_key = os.path.join(cls.tmp, "evil.asc")
        cp = sgtest.run(["gpg", "--homedir", cls.home.path, "--batch", "--armor",
                         "--export"])
        with open(cls.pgp_key, "wb") as f:
            f.write(cp.stdout)
        ca = cls.ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"))
        cls.smime = ca.issue("SMIME evil", [], basename="smevil", extensions=(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = emailProtection\n"
            "subjectAltName = email:" + SMIME_ADDR.decode("latin-1") + "\n"))
        # No address, and a subject with control characters and bad UTF-8.
        cls.noaddr = os.path.join(cls.tmp, "noaddr.pem")
        key = smimetest.new_key(os.path.join(cls.tmp, "noaddr.key"))
        sgtest.run(["openssl", "req", "-x509", "-key", key, "-days", "30",
                    "-config", "/dev/null", "-subj", b"/CN=Evil" + EVIL + b"\n",
                    "-out", cls.noaddr])
        if not os.path.exists(cls.noaddr):
            raise RuntimeError("openssl req failed")

    @classmethod
    def tearDownClass(cls):
        cls.home.kill()

    def setUp(self):
        self.gw = sgtest.Gateway(sgtest.tmpdir("sgescgw"))

    def sealgate(self, *args):
        cp = sgtest.run([self.gw.bin] + list(args))
        return cp.returncode, cp.stdout, cp.stderr

    def assert_clean(self, data, *wanted):
        """data (bytes) has no control character but LF, is UTF-8 without C1
        controls, and holds each of wanted (escaped text)."""
        self.assertIsNone(BAD_BYTES.search(data), data)
        text = data.decode("utf-8")                  # raises when not UTF-8
        self.assertFalse(re.search("[\x80-\x9f\u200b-\u200f\u202a-\u202e]", text), text)
        for w in wanted:
            self.assertIn(w, text)

    def test_openpgp_user_id(self):
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import", self.pgp_key)
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err, PGP_ADDR_TEXT)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "list")
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err, PGP_ADDR_TEXT)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "list", "--json")
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err)
        rows = json.loads(out.decode("utf-8"))
        self.assertIn("ev\x1b[31mil@partner.example", [r["address"] for r in rows])

    def test_smime_address(self):
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import", "--trust-anchor",
                                     self.ca.cert)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import", self.smime.cert)
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err, SMIME_ADDR_TEXT)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "list")
        self.assert_clean(out + err, SMIME_ADDR_TEXT)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "list", "--json")
        self.assert_clean(out + err, r"\u001b[5mime\u007f@")
        self.assertIn(SMIME_ADDR.decode(), [r["address"] for r in json.loads(out)])
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "remove", self.smime.fpr)
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err)

    def test_certificate_subject(self):
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import", self.noaddr)
        self.assertEqual(rc, 1, err)
        self.assert_clean(out + err, "certificate without an email address", "Evil")

    def test_file_names(self):
        with open(self.pgp_key, "rb") as f:
            key = f.read()
        for stem, data, rc_want in ((b"garbage", b"not a key\n", 1), (b"key", key, 0)):
            with self.subTest(stem):
                path = os.path.join(os.fsencode(self.tmp), stem + b"-" + EVIL + b"\n.x")
                with open(path, "wb") as f:
                    f.write(data)
                rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import", path)
                self.assertEqual(rc, rc_want, err)
                self.assert_clean(out + err, stem.decode() + "-" + EVIL_TEXT + r"\x0a.x")
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "import",
                                     os.path.join(os.fsencode(self.tmp), b"missing\x1b[1m"))
        self.assertEqual(rc, 1, err)
        self.assert_clean(out + err, r"missing\x1b[1m")

    def test_arguments_echoed(self):
        evil = b"x\x1b[31m\x7f\xff@partner.example"
        want = r"x\x1b[31m\x7f\xff@partner.example"
        self.gw.import_keys_checked(self.pgp_key)
        for args in (("keys", "-c", self.gw.policy, "export", evil),
                     ("keys", "-c", self.gw.policy, "remove", evil),
                     ("policy", "explain", "-c", self.gw.policy, "--from",
                      "alice@example.com", "--to", evil)):
            with self.subTest(args[:2] + args[3:4]):
                rc, out, err = self.sealgate(*args)
                self.assert_clean(out + err, want)

    def test_policy_file_name(self):
        d = os.path.join(os.fsencode(self.tmp), b"pol-" + EVIL + b"\n")
        os.makedirs(d, exist_ok=True)
        with open(self.gw.policy, "rb") as f:
            text = f.read().replace(b'keystore: "store"',
                                    b'keystore: "' + self.gw.keystore.encode() + b'"')
        path = os.path.join(d, b"policy.yaml")
        with open(path, "wb") as f:
            f.write(text)
        rc, out, err = self.sealgate("policy", "check", "-c", path)
        self.assertEqual(rc, 0, err)
        self.assert_clean(out + err, "pol-" + EVIL_TEXT + r"\x0a/policy.yaml: OK")
        with open(path, "ab") as f:
            f.write(b'"colour\\e[31m\\x7f": red\n')            # YAML escapes
        rc, out, err = self.sealgate("policy", "check", "-c", path)
        self.assertEqual(rc, 1, err)
        self.assert_clean(out + err, r"colour\x1b[31m\x7f")

    def test_keystore_path(self):
        with open(self.gw.policy, "rb") as f:
            text = f.read()
        with open(self.gw.policy, "wb") as f:
            f.write(text.replace(b'keystore: "store"', b'keystore: "st\\e[8more"'))
        os.makedirs(os.path.join(os.fsencode(self.gw.dir), b"st\x1b[8more"), mode=0o755)
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "list")
        self.assertEqual(rc, 1, err)
        self.assert_clean(out + err, r"st\x1b[8more", "can be used by other users")


if __name__ == "__main__":
    unittest.main(verbosity=2)
