"""Messages that `sealgate process` must accept and write out byte for byte.

Already encrypted mail (PGP/MIME, inline PGP, S/MIME enveloped and
auth-enveloped data), internal-only recipients, external recipients without a
key, senders outside the internal domains, and a policy whose default action is
`none`. A control case checks that the same gateway does encrypt a plain
message to the same recipient, so a pass here is not a gateway that never
encrypts.
"""

import base64
import os
import shutil
import subprocess
import unittest

import sgtest
from sgtest import BOB, CAROL, ERIN, MARKER, SENDER, canon, make_message, std_headers

# Keys in the keystore: BOB (internal) and CAROL (external); ERIN (external)
# has none.


class Passthrough(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgpass", CAROL, BOB)
        (cls.carol, _fpr), (cls.bob, _fpr) = homes
        cls.gw = cls._gateway("gw", "encrypt-if-key")

    @classmethod
    def _gateway(cls, name, action):
        gw = sgtest.Gateway(os.path.join(cls.tmp, name), default_action=action)
        sgtest.import_public_keys(gw, cls.tmp, [(cls.carol, CAROL), (cls.bob, BOB)])
        return gw

    def assert_untouched(self, msg, sender, rcpts, gw=None, expect=None):
        """The message passes byte for byte (or becomes exactly expect)."""
        gw = gw or self.gw
        rc, out, err = gw.process(msg, sender, rcpts)
        self.assertEqual(rc, 0, "exit %d: %s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        want = msg if expect is None else expect
        self.assertTrue(out == want, "message changed (%d bytes in, %d out); output starts: %r"
                        % (len(msg), len(out), out[:300]))
        self.assertNotIn(MARKER, err, "message content on stderr")
        self.assertEqual(gw.spool_entries(), [])

    def plain(self, to="Carol <%s>" % CAROL, eol=b"\r\n"):
        return make_message(std_headers(to=to) + [("Content-Type", "text/plain; charset=utf-8"),
                                                  ("Content-Transfer-Encoding", "8bit")],
                            ("Plain text ünïcode. %s\r\n" % MARKER).replace("\r\n", eol.decode()),
                            eol=eol)

    # -- control ---------------------------------------------------------

    def test_control_plain_message_to_keyed_recipient_is_encrypted(self):
        msg = self.plain()
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIsNotNone(out)
        self.assertNotEqual(out, msg)
        sgtest.pgp_mime_parts(out)

    # -- already encrypted -----------------------------------------------

    def test_pgp_mime_encrypted(self):
        inner = b"Content-Type: text/plain\r\n\r\nsecret " + MARKER.encode() + b"\r\n"
        armored = self.carol.encrypt(inner, [CAROL])
        body = (b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
                b"--enc42\r\n"
                b"Content-Type: application/pgp-encrypted\r\n"
                b"Content-Description: PGP/MIME version identification\r\n\r\n"
                b"Version: 1\r\n\r\n"
                b"--enc42\r\n"
                b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
                b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
                + canon(armored) +
                b"\r\n--enc42--\r\n")
        msg = make_message(std_headers() + [
            ("Content-Type", 'multipart/encrypted;\r\n protocol="application/pgp-encrypted";'
                             '\r\n boundary="enc42"')], body)
        self.assert_untouched(msg, SENDER, [CAROL])

    def test_inline_pgp(self):
        armored = self.carol.encrypt(("inline secret %s\n" % MARKER).encode(), [CAROL])
        msg = make_message(std_headers() + [("Content-Type", "text/plain; charset=us-ascii"),
                                            ("Content-Transfer-Encoding", "7bit")],
                           canon(armored))
        self.assertIn(b"\r\n\r\n-----BEGIN PGP MESSAGE-----", msg)
        self.assert_untouched(msg, SENDER, [CAROL])

    def _smime(self, cipher):
        openssl = shutil.which("openssl")
        if not openssl:
            self.skipTest("openssl not installed")
        d = os.path.join(self.tmp, "smime")
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        if not os.path.exists(cert):
            os.makedirs(d, mode=0o700, exist_ok=True)
            subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                            "-out", cert, "-days", "2", "-subj",
                            "/CN=Carol Partner/emailAddress=" + CAROL],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        content = ("Content-Type: text/plain\r\n\r\nS/MIME secret %s\r\n" % MARKER).encode()
        cp = subprocess.run([openssl, "cms", "-encrypt", cipher, "-outform", "SMIME", cert],
                            input=content, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            check=True, timeout=60)
        # openssl writes its own MIME-Version and Content-* fields first.
        fields, body = sgtest.split_header_body(canon(cp.stdout))
        content_fields = [(n, v) for n, v in fields if sgtest.is_content_field(n)]
        return make_message(std_headers() + content_fields, body)

    def test_smime_enveloped_data(self):
        msg = self._smime("-aes-256-cbc")
        self.assertRegex(msg, rb"application/(x-)?pkcs7-mime;.*smime-type=\"?enveloped-data")
        self.assert_untouched(msg, SENDER, [CAROL])

    def test_smime_auth_enveloped_data(self):
        msg = self._smime("-aes-256-gcm")
        self.assertRegex(msg, rb"smime-type=\"?authEnveloped-data")
        self.assert_untouched(msg, SENDER, [CAROL])

    def test_smime_enveloped_data_hand_written_headers(self):
        # The usual header spelling of mail programs, with a folded parameter
        # list, around real EnvelopedData (the content decides, not the label).
        self._smime("-aes-256-cbc")
        cp = subprocess.run([shutil.which("openssl"), "cms", "-encrypt", "-aes-256-cbc",
                             "-outform", "DER", os.path.join(self.tmp, "smime", "c.pem")],
                            input=b"Content-Type: text/plain\r\n\r\nhi\r\n",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            check=True, timeout=60)
        blob = base64.encodebytes(cp.stdout).replace(b"\n", b"\r\n")
        msg = make_message(std_headers() + [
            ("Content-Type", 'application/pkcs7-mime; name="smime.p7m";\r\n'
                             '\tsmime-type=enveloped-data'),
            ("Content-Transfer-Encoding", "base64"),
            ("Content-Disposition", 'attachment; filename="smime.p7m"'),
            ("Content-Description", "S/MIME Encrypted Message")], blob)
        self.assert_untouched(msg, SENDER, [CAROL])

    # -- routing decisions -----------------------------------------------

    def test_internal_only_recipients(self):
        # Not encrypted, only the inbound status fields are added.
        msg = self.plain(to="Bob <%s>" % BOB)
        self.assert_untouched(msg, SENDER, [BOB], expect=sgtest.with_fields_appended(msg))

    def test_internal_only_several_recipients(self):
        msg = self.plain(to="Bob <%s>, Team <team@example.com>" % BOB)
        self.assert_untouched(msg, SENDER, [BOB, "team@example.com"],
                              expect=sgtest.with_fields_appended(msg))

    def test_external_recipient_without_key(self):
        self.assert_untouched(self.plain(to="Erin <%s>" % ERIN), SENDER, [ERIN])

    def test_external_recipient_without_key_lf_line_endings(self):
        msg = self.plain(to="Erin <%s>" % ERIN, eol=b"\n")
        self.assertNotIn(b"\r", msg)
        self.assert_untouched(msg, SENDER, [ERIN])

    def test_sender_outside_internal_domains(self):
        self.assert_untouched(self.plain(), "mallory@elsewhere.example", [CAROL])

    def test_policy_action_none(self):
        gw = self._gateway("gwnone", "none")
        self.assert_untouched(self.plain(), SENDER, [CAROL], gw=gw)


if __name__ == "__main__":
    unittest.main()
