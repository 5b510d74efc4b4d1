"""Error paths of `sealgate process` and `sealgate keys`.

Malformed MIME where encryption applies is rejected (5.6.x, "malformed"),
recipients of different classes are answered 452 4.5.3, configuration errors
exit 1 with the file (and line/column) named, and key import errors leave the
keystore unchanged. No message is ever written on reject or tempfail, and no
message content ever reaches stderr.
"""

import os
import re
import unittest

import sgtest
from sgtest import BOB, CAROL, ERIN, MARKER, SENDER, make_message, std_headers

MALFORMED_RE = re.compile(r"^5\d\d 5\.6\.\d+ .*malformed", re.M | re.I)
MIXED_RE = re.compile(r"^452 4\.5\.3( .*)?$", re.M)


class Errors(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgerr", CAROL, BOB)
        (cls.carol, cls.carol_fpr), (cls.bob, cls.bob_fpr) = homes
        cls.carol_asc = sgtest.export_public_key(cls.tmp, cls.carol, CAROL)
        cls.bob_gpg = sgtest.export_public_key(cls.tmp, cls.bob, BOB, armor=False)
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"))
        cls.gw.import_keys_checked(cls.carol_asc, cls.bob_gpg)

    # -- helpers ---------------------------------------------------------

    def assert_refused(self, msg, rcpts, code, reply_re, word):
        rc, out, err = self.gw.process(msg, SENDER, rcpts)
        self.assertEqual(rc, code, "exit %d, stderr: %s" % (rc, err))
        self.assertIsNone(out, "a message was written on %s" % word)
        self.assertRegex(err, reply_re)
        self.assertEqual(sgtest.verdict(err), word, err)
        self.assertNotIn(MARKER, err, "message content on stderr")
        self.assertEqual(self.gw.spool_entries(), [])
        return err

    def assert_malformed(self, msg):
        return self.assert_refused(msg, [CAROL], 2, MALFORMED_RE, "reject")

    @staticmethod
    def text_part(n=0):
        return "Content-Type: text/plain\r\n\r\npart %d %s\r\n" % (n, MARKER)

    # -- malformed MIME ----------------------------------------------------

    def test_multipart_without_boundary_rejected(self):
        msg = make_message(std_headers() + [("Content-Type", "multipart/mixed")],
                           "--x\r\n" + self.text_part() + "--x--\r\n")
        self.assert_malformed(msg)

    def test_two_content_type_fields_rejected(self):
        msg = make_message(std_headers() + [("Content-Type", "text/plain"),
                                            ("Content-Type", "multipart/mixed; boundary=x")],
                           "--x\r\n" + self.text_part() + "--x--\r\n")
        self.assert_malformed(msg)

    @staticmethod
    def nested(levels):
        """A message whose multipart/mixed nesting is `levels` deep."""
        body = Errors.text_part(levels)
        for i in range(levels - 1, 0, -1):
            body = ("Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n"
                    "--b%d\r\n%s--b%d--\r\n" % (i, i, body, i))
        return make_message(std_headers() + [("Content-Type", "multipart/mixed; boundary=\"b0\"")],
                            "--b0\r\n" + body + "--b0--\r\n")

    def test_nesting_deeper_than_32_rejected(self):
        self.assert_malformed(self.nested(40))

    def test_nesting_well_within_limit_is_encrypted(self):
        # The depth bound must not refuse ordinary nesting.
        msg = self.nested(20)
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIsNotNone(out)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    # -- recipients of different classes ---------------------------------

    def plain(self, to):
        return make_message(std_headers(to=to) + [("Content-Type", "text/plain")],
                            "mixed classes %s\r\n" % MARKER)

    def test_internal_and_external_with_key_tempfail(self):
        self.assert_refused(self.plain("%s, %s" % (BOB, CAROL)), [BOB, CAROL],
                            3, MIXED_RE, "tempfail")

    def test_external_with_key_and_external_without_key_tempfail(self):
        self.assert_refused(self.plain("%s, %s" % (CAROL, ERIN)), [CAROL, ERIN],
                            3, MIXED_RE, "tempfail")

    def test_external_without_key_first_then_with_key_tempfail(self):
        self.assert_refused(self.plain("%s, %s" % (ERIN, CAROL)), [ERIN, CAROL],
                            3, MIXED_RE, "tempfail")

    def test_every_deferred_recipient_named(self):
        # Internal first: the partner with a key and the one without are
        # both of another class, and the reply names each of them.
        err = self.assert_refused(self.plain("%s, %s, %s" % (BOB, CAROL, ERIN)),
                                  [BOB, CAROL, ERIN], 3, MIXED_RE, "tempfail")
        replies = [line for line in err.splitlines() if MIXED_RE.match(line)]
        for rcpt in (CAROL, ERIN):
            self.assertTrue(any("<%s>" % rcpt in line for line in replies), err)
        self.assertFalse(any("<%s>" % BOB in line for line in replies), err)

    # -- configuration errors --------------------------------------------

    def test_missing_policy_file(self):
        path = os.path.join(self.tmp, "no-such-dir", "policy.yaml")
        inp = os.path.join(self.tmp, "in-missing.eml")
        outp = os.path.join(self.tmp, "out-missing.eml")
        with open(inp, "wb") as f:
            f.write(self.plain(CAROL))
        cp = self.gw.run("process", "-c", path, "--from", SENDER, "--to", CAROL,
                         "-i", inp, "-o", outp)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(path, cp.stderr)
        self.assertFalse(os.path.exists(outp) and os.path.getsize(outp) > 0)

    def write_bad_policy(self):
        d = sgtest.tmpdir("sgbad")
        path = os.path.join(d, "policy.yaml")
        with open(path, "w") as f:
            f.write("version: 1\n"
                    "internal_domains: [example.com]\n"
                    "bogus: 1\n"
                    "gateway:\n"
                    "  keystore: \"store\"\n"
                    "  spool_dir: \"spool\"\n"
                    "outbound:\n"
                    "  default: { action: encrypt-if-key }\n")
        os.makedirs(os.path.join(d, "spool"), mode=0o700)
        return d, path

    def test_invalid_policy_unknown_key_process(self):
        d, path = self.write_bad_policy()
        inp = os.path.join(d, "in.eml")
        outp = os.path.join(d, "out.eml")
        with open(inp, "wb") as f:
            f.write(self.plain(CAROL))
        cp = self.gw.run("process", "-c", path, "--from", SENDER, "--to", CAROL,
                         "-i", inp, "-o", outp)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertRegex(cp.stderr, re.escape(path) + r':3:1: .*unknown key "bogus"')
        self.assertFalse(os.path.exists(outp) and os.path.getsize(outp) > 0)

    def test_invalid_policy_unknown_key_keys_list(self):
        _d, path = self.write_bad_policy()
        cp = self.gw.run("keys", "-c", path, "list")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertRegex(cp.stderr, re.escape(path) + r':3:1: .*unknown key "bogus"')

    # -- key import --------------------------------------------------------

    def test_keys_list_shows_imported_identities(self):
        cp = self.gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for addr, fpr in ((CAROL, self.carol_fpr), (BOB, self.bob_fpr)):
            lines = [l for l in cp.stdout.splitlines() if addr in l]
            self.assertEqual(len(lines), 1, "expected one line for %s in:\n%s"
                             % (addr, cp.stdout))
            self.assertIn("openpgp", lines[0])
            self.assertIn(fpr, lines[0].upper().replace(" ", ""))

    def test_import_prints_address_and_fingerprint(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgimp"))
        cp = gw.import_keys(self.carol_asc, self.bob_gpg)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for addr, fpr in ((CAROL, self.carol_fpr), (BOB, self.bob_fpr)):
            self.assertTrue(any(addr in l and fpr in l.upper() for l in cp.stdout.splitlines()),
                            "no line with %s and %s in:\n%s" % (addr, fpr, cp.stdout))

    def test_reimport_says_unchanged(self):
        before = self.gw.list_keys()
        cp = self.gw.import_keys(self.carol_asc)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("unchanged", cp.stdout + cp.stderr)
        after = self.gw.list_keys()
        self.assertEqual(after.returncode, 0, after.stderr)
        self.assertEqual(after.stdout, before.stdout)

    def test_import_of_non_key_file_fails_and_changes_nothing(self):
        before = self.gw.list_keys()
        self.assertEqual(before.returncode, 0, before.stderr)
        junk = os.path.join(self.tmp, "not-a-key.txt")
        with open(junk, "wb") as f:
            f.write(b"This is not an OpenPGP key.\n" + os.urandom(64).hex().encode() + b"\n")
        cp = self.gw.import_keys(junk)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(junk, cp.stderr)
        after = self.gw.list_keys()
        self.assertEqual(after.stdout, before.stdout, "keystore changed by a failed import")

    def test_import_of_non_key_file_into_empty_keystore(self):
        gw = sgtest.Gateway(sgtest.tmpdir("sgimp"))
        junk = os.path.join(gw.dir, "junk.asc")
        with open(junk, "wb") as f:
            f.write(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!\n"
                    b"-----END PGP PUBLIC KEY BLOCK-----\n")
        cp = gw.import_keys(junk)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertIn(junk, cp.stderr)
        listed = gw.list_keys()
        self.assertNotIn("openpgp", listed.stdout)


if __name__ == "__main__":
    unittest.main()
