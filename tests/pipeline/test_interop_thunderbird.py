"""Interoperability with keys and messages made by Mozilla Thunderbird.

Uses the OpenPGP sample identity bob@openpgp.example (RSA 3072) from
Thunderbird's test data under $SEALGATE_CORPORA/thunderbird: the gateway
encrypts to Bob's published certificate and gpg, holding Bob's secret key,
decrypts. Messages that Thunderbird already encrypted (PGP/MIME, inline PGP,
S/MIME) must pass through untouched. Skipped when SEALGATE_CORPORA is unset or
the files are missing.
"""

import os
import unittest

import sgtest
from sgtest import MARKER, SENDER, make_message, std_headers

BOB = "bob@openpgp.example"


def corpus_dir():
    root = os.environ.get("SEALGATE_CORPORA")
    if not root:
        sgtest.skip_file("SEALGATE_CORPORA is not set")
    tb = os.path.join(root, "thunderbird")
    if not os.path.isdir(tb):
        sgtest.skip_file("%s is missing" % tb)
    return tb


class ThunderbirdInterop(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        tb = corpus_dir()
        keys = os.path.join(tb, "mail/test/browser/openpgp/data/keys")
        cls.eml = os.path.join(tb, "mail/test/browser/openpgp/data/eml")
        cls.smime = os.path.join(tb, "mailnews/test/data/smime")
        cls.bob_pub = os.path.join(keys, "bob@openpgp.example-0xfbfcc82a015e7330-pub.asc")
        bob_sec = os.path.join(keys, "bob@openpgp.example-0xfbfcc82a015e7330-secret.asc")
        for p in (cls.bob_pub, bob_sec, cls.eml, cls.smime):
            if not os.path.exists(p):
                sgtest.skip_file("%s is missing" % p)
        cls.tmp = sgtest.tmpdir("sgtb")
        cls.bob = sgtest.GpgHome(os.path.join(cls.tmp, "gb"))
        with open(bob_sec, "rb") as f:
            cls.bob.import_keys(f.read())
        cls.bob_fpr = cls.bob.fingerprint(BOB)
        cls.bob_subkeys = cls.bob.encryption_keyids(BOB)
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"), internal_domains=("example.com",))
        cls.import_out = cls.gw.import_keys_checked(cls.bob_pub).stdout

    def test_bob_fingerprint_known(self):
        # The sample identity's published fingerprint.
        self.assertEqual(self.bob_fpr, "D1A66E1A23B182C9980F788CFBFCC82A015E7330")
        self.assertIn(BOB, self.import_out)
        self.assertIn(self.bob_fpr, self.import_out.upper())

    def test_keys_list_shows_bob(self):
        cp = self.gw.list_keys()
        self.assertEqual(cp.returncode, 0, cp.stderr)
        lines = [l for l in cp.stdout.splitlines() if BOB in l]
        self.assertEqual(len(lines), 1, cp.stdout)
        self.assertIn("openpgp", lines[0])
        self.assertIn(self.bob_fpr, lines[0].upper())

    def test_encrypt_to_thunderbird_key(self):
        body = ("--alt\r\n"
                "Content-Type: text/plain; charset=UTF-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                "Hallo Bob, schöne Grüße. %s\r\n"
                "--alt\r\n"
                "Content-Type: text/html; charset=UTF-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                "<p>Hallo Bob, sch&ouml;ne Gr&uuml;&szlig;e.</p>\r\n"
                "--alt--\r\n" % MARKER)
        msg = make_message(
            std_headers(to="Bob Babbage <%s>" % BOB)
            + [("Content-Type", 'multipart/alternative; boundary="alt"'),
               ("Content-Language", "de-DE")],
            body)
        rc, out, err = self.gw.process(msg, SENDER, [BOB])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out)
        self.assertNotIn(MARKER, err)
        _c, armored = sgtest.pgp_mime_parts(out)
        sgtest.assert_outer_headers_kept(self, msg, out)
        sgtest.assert_decrypts_to_original(self, self.bob, msg, out)
        self.assertEqual(sgtest.pkesk_keyids(self.bob.list_packets(armored)), self.bob_subkeys)
        self.assertEqual(self.gw.spool_entries(), [])

    # -- Thunderbird's own encrypted messages pass untouched --------------

    def assert_untouched_file(self, path):
        with open(path, "rb") as f:
            msg = f.read()
        if msg.startswith(b"From "):
            # An mbox separator line, not a header field.
            msg = msg.split(b"\n", 1)[1]
        rc, out, err = self.gw.process(msg, SENDER, [BOB])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out)
        self.assertTrue(out == msg, "%s changed; output starts %r"
                        % (os.path.basename(path), out[:300]))

    def test_thunderbird_pgp_mime_encrypted_passes(self):
        for name in ("unsigned-encrypted-to-0xf231550c4f47e38e-from-0xfbfcc82a015e7330.eml",
                     "encrypted-and-signed-alice-to-bob-nonascii.eml"):
            with self.subTest(name=name):
                self.assert_untouched_file(os.path.join(self.eml, name))

    def test_thunderbird_inline_pgp_passes(self):
        self.assert_untouched_file(os.path.join(self.eml, "bob-enc-inline-nbsp-qp.eml"))

    def test_thunderbird_smime_enveloped_passes(self):
        self.assert_untouched_file(os.path.join(self.smime, "alice.env.eml"))


if __name__ == "__main__":
    unittest.main()
