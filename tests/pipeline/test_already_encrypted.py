"""Outbound mail passes untouched as "already encrypted" only when its
content is encrypted, whatever its Content-Type says.

Under `action: encrypt`, each message below carries an "encrypted" label
around content anyone can read (a signed but readable PGP MESSAGE, plaintext
in multipart/encrypted, application/pgp-encrypted, pkcs7-mime "enveloped-data"
holding signed-data or plain bytes, opaque signed-data, OpenPGP packets that
are not session keys + one integrity-protected encrypted data packet). Each
must be encrypted to carol's key -- gpg in her own home decrypts the result to
the original entity -- and refused (550) for erin, who has no key. Mail that
really is encrypted (PGP/MIME, inline, symmetric, hidden key ids, CMS
EnvelopedData and AuthEnvelopedData) still passes byte for byte. A second
gateway encrypts with S/MIME: its results are decrypted with `openssl cms
-decrypt` and carol's own key.
"""

import base64
import os
import shutil
import subprocess
import unittest

import sgtest
import smimetest
from sgtest import CAROL, ERIN, MARKER, SENDER, canon, make_message, std_headers

OPENSSL = shutil.which("openssl")


def armor(packets):
    """ASCII armor of binary packets (as gpg writes it, without checksum)."""
    b64 = base64.b64encode(packets).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN PGP MESSAGE-----\r\n\r\n" + "\r\n".join(lines)
            + "\r\n-----END PGP MESSAGE-----\r\n").encode()


def pgp_mime(control, payload, preamble=b"", extra=b"", control_fields=b"",
             payload_fields=b""):
    body = (preamble + b"--enc42\r\n"
            b"Content-Type: application/pgp-encrypted\r\n" + control_fields + b"\r\n"
            + control + b"\r\n"
            b"--enc42\r\n"
            b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            + payload_fields + b"\r\n" + payload + b"\r\n" + extra + b"--enc42--\r\n")
    return make_message(std_headers() + [
        ("Content-Type", 'multipart/encrypted;\r\n protocol="application/pgp-encrypted";'
                         '\r\n boundary="enc42"')], body)


def single(ctype, body, cte=None):
    fields = [("Content-Type", ctype)]
    if cte:
        fields.append(("Content-Transfer-Encoding", cte))
    return make_message(std_headers() + fields, body)


def b64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


class AlreadyEncrypted(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, [(cls.carol, _fpr)] = sgtest.class_set_up("sgenc", CAROL)
        cls.alice = sgtest.GpgHome(os.path.join(cls.tmp, "alice"))
        cls.alice.gen_key("Alice Example", SENDER)
        cls.alice.import_keys(cls.carol.export_public(CAROL))
        cls.gw = sgtest.policy_gateway(os.path.join(cls.tmp, "gw"), sgtest.policy_yaml(
            action="encrypt"))
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL)])
        cls.secret = ("Content-Type: text/plain\r\n\r\nsecret %s\r\n" % MARKER).encode()

    # -- helpers -----------------------------------------------------------

    def encrypt(self, data, *extra, armor_it=True):
        return self.alice.encrypt(data, [CAROL], armor=armor_it, extra=extra)

    def signed(self):
        return canon(self.alice.gpg("--sign", "--armor",
                                    input_bytes=("signed %s\n" % MARKER).encode()).stdout)

    def smime_material(self):
        if not OPENSSL:
            self.skipTest("openssl not installed")
        d = os.path.join(self.tmp, "smime")
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        if not os.path.exists(cert):
            os.makedirs(d, mode=0o700, exist_ok=True)
            subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                            "-out", cert, "-days", "2", "-subj",
                            "/CN=Carol Partner/emailAddress=" + CAROL],
                           check=True, capture_output=True, timeout=60)
        return key, cert

    def cms(self, *args, data=None):
        return subprocess.run([OPENSSL, "cms"] + list(args), input=data or self.secret,
                              check=True, capture_output=True, timeout=60).stdout

    def signed_der(self):
        key, cert = self.smime_material()
        return self.cms("-sign", "-nodetach", "-binary", "-outform", "DER",
                        "-signer", cert, "-inkey", key)

    def assert_encrypted(self, msg):
        """Encrypted to carol (gpg decrypts it to the original entity);
        refused with 550 for erin."""
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertNotIn("already protected", err)
        self.assertIsNotNone(out)
        self.assertNotEqual(out, msg, "passed untouched")
        self.assertNotIn(MARKER.encode(), out, "plaintext in the result")
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        rc, out, err = self.gw.process(msg, SENDER, [ERIN])
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"550 5\.7\.1 .*%s" % ERIN)
        self.assertIsNone(out)

    def assert_untouched(self, msg):
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIn("already protected", err)
        self.assertTrue(out == msg, "message changed")

    # -- labels around readable content ------------------------------------

    def test_signed_pgp_message_in_text_plain(self):
        self.assert_encrypted(single("text/plain; charset=us-ascii", self.signed(), "7bit"))

    def test_literal_packet_in_text_plain(self):
        stored = self.alice.gpg("--store", "--armor",
                                input_bytes=("stored %s\n" % MARKER).encode()).stdout
        self.assert_encrypted(single("text/plain", canon(stored)))

    def test_multipart_encrypted_around_plaintext(self):
        self.assert_encrypted(pgp_mime(b"Version: 1", ("secret %s" % MARKER).encode()))

    def test_multipart_encrypted_around_signed_message(self):
        self.assert_encrypted(pgp_mime(b"Version: 1", self.signed()))

    def test_multipart_encrypted_plaintext_in_control_part(self):
        self.assert_encrypted(pgp_mime(("Version: 1\r\n\r\n%s" % MARKER).encode(),
                                       canon(self.encrypt(self.secret))))

    def test_multipart_encrypted_empty_control_part(self):
        # RFC 3156: the control part says "Version: 1"; an empty one is no
        # PGP/MIME, whatever follows it.
        self.assert_encrypted(pgp_mime(b"", canon(self.encrypt(self.secret))))

    def test_multipart_encrypted_plaintext_before_armor(self):
        self.assert_encrypted(pgp_mime(b"Version: 1", ("%s\r\n" % MARKER).encode()
                                       + canon(self.encrypt(self.secret))))

    def test_multipart_encrypted_plaintext_in_preamble(self):
        preamble = ("This is an OpenPGP/MIME encrypted message.\r\n%s\r\n%s\r\n"
                    % (MARKER, "x" * 300)).encode()
        self.assert_encrypted(pgp_mime(b"Version: 1", canon(self.encrypt(self.secret)),
                                       preamble=preamble))

    def test_multipart_encrypted_plaintext_in_part_fields(self):
        # The header fields of the two parts go out in clear like the
        # preamble: readable text there is content.
        lines = b"".join(b"X-L%d: secret quarterly figures %s\r\n" % (i, MARKER.encode())
                         for i in range(300))
        folded = (b"Content-Description: " + b"\r\n ".join(
            (b"secret %s" % MARKER.encode(),) * 200) + b"\r\n")
        for name, kw in (("control part", {"control_fields": lines}),
                         ("payload part", {"payload_fields": folded})):
            with self.subTest(name):
                self.assert_encrypted(pgp_mime(b"Version: 1", canon(self.encrypt(self.secret)),
                                               **kw))
        # What mail programs write there still passes.
        self.assert_untouched(pgp_mime(
            b"Version: 1", canon(self.encrypt(self.secret)),
            control_fields=b"Content-Description: PGP/MIME version identification\r\n",
            payload_fields=(b"Content-Description: OpenPGP encrypted message\r\n"
                            b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n")))

    def test_multipart_encrypted_third_part(self):
        third = ("--enc42\r\nContent-Type: text/plain\r\n\r\n%s\r\n" % MARKER).encode()
        self.assert_encrypted(pgp_mime(b"Version: 1", canon(self.encrypt(self.secret)),
                                       extra=third))

    def test_application_pgp_encrypted_plaintext(self):
        self.assert_encrypted(single("application/pgp-encrypted",
                                     ("plain %s\r\n" % MARKER).encode()))

    def test_application_pgp_encrypted_signed_message(self):
        self.assert_encrypted(single("application/pgp-encrypted", self.signed()))

    def test_pkcs7_enveloped_label_holding_signed_data(self):
        self.assert_encrypted(single('application/pkcs7-mime; smime-type=enveloped-data; '
                                     'name="smime.p7m"', b64(self.signed_der()), "base64"))

    def test_pkcs7_enveloped_label_holding_plain_bytes(self):
        self.assert_encrypted(single('application/pkcs7-mime; smime-type=enveloped-data; '
                                     'name="smime.p7m"', b64(self.secret), "base64"))

    def test_pkcs7_auth_enveloped_label_holding_plain_bytes(self):
        self.assert_encrypted(single('application/pkcs7-mime; smime-type=authEnveloped-data',
                                     b64(self.secret), "base64"))

    def test_opaque_signed_data_without_smime_type(self):
        self.assert_encrypted(single('application/pkcs7-mime; name="smime.p7m"',
                                     b64(self.signed_der()), "base64"))

    def test_enveloped_data_followed_by_plaintext(self):
        _key, cert = self.smime_material()
        der = self.cms("-encrypt", "-aes-256-cbc", "-outform", "DER", cert)
        self.assert_encrypted(single('application/pkcs7-mime; smime-type=enveloped-data',
                                     b64(der + self.secret), "base64"))

    def test_inline_armor_with_text_after_it(self):
        body = canon(self.encrypt(self.secret)) + ("\r\n%s\r\n" % MARKER).encode()
        self.assert_encrypted(single("text/plain", body))

    def test_packets_that_are_not_session_keys_and_encrypted_data(self):
        real = self.encrypt(self.secret, armor_it=False)
        literal = b"\xcb" + bytes([len(MARKER) + 6]) + b"b\x00\x00\x00\x00\x00" + MARKER.encode()
        cases = {
            "marker only": b"\xa8\x03PGP",
            "literal then encrypted": literal + real,
            "encrypted then literal": real + literal,
            "encrypted then garbage": real + b"\x00",
            "encrypted data without session key": real[real.index(b"\xd2"):],
            "session keys only": real[:real.index(b"\xd2")],
        }
        for name, packets in cases.items():
            with self.subTest(name):
                self.assert_encrypted(single("text/plain", armor(packets)))

    def test_symmetric_encryption_without_mdc(self):
        sed = self.alice.gpg("--rfc2440", "--symmetric", "--armor", "--passphrase", "pw",
                             input_bytes=self.secret).stdout
        self.assertIn(":encrypted data packet:", self.alice.list_packets(sed))
        self.assert_encrypted(single("text/plain", canon(sed)))

    # -- really encrypted: untouched ------------------------------------------

    def test_real_pgp_mime(self):
        self.assert_untouched(pgp_mime(b"Version: 1", canon(self.encrypt(self.secret)),
                              preamble=b"This is an OpenPGP/MIME encrypted message "
                                       b"(RFC 4880 and 3156)\r\n"))

    def test_real_pgp_mime_binary_payload(self):
        payload = b64(self.encrypt(self.secret, armor_it=False))
        msg = pgp_mime(b"Version: 1", payload).replace(
            b"name=\"encrypted.asc\"\r\n", b"name=\"encrypted.asc\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n", 1)
        self.assert_untouched(msg)

    def test_real_pgp_mime_hidden_recipients(self):
        self.assert_untouched(pgp_mime(b"Version: 1", canon(
            self.encrypt(self.secret, "--throw-keyids"))))

    def test_real_inline(self):
        self.assert_untouched(single("text/plain; charset=us-ascii",
                                     canon(self.encrypt(("inline %s\n" % MARKER).encode())),
                                     "7bit"))

    def test_real_inline_transfer_encoded(self):
        armored = canon(self.encrypt(("inline %s\n" % MARKER).encode()))
        self.assert_untouched(single("text/plain; charset=us-ascii", b64(b"\r\n" + armored),
                                     "base64"))

    def test_real_symmetric_inline(self):
        sym = self.alice.gpg("--symmetric", "--armor", "--passphrase", "pw",
                             input_bytes=self.secret).stdout
        self.assert_untouched(single("text/plain", canon(sym)))

    def test_real_smime(self):
        _key, cert = self.smime_material()
        for cipher in ("-aes-256-cbc", "-aes-256-gcm"):
            with self.subTest(cipher):
                out = self.cms("-encrypt", cipher, "-outform", "SMIME", cert)
                fields, body = sgtest.split_header_body(canon(out))
                self.assert_untouched(make_message(
                    std_headers() + [(n, v) for n, v in fields if sgtest.is_content_field(n)],
                    body))

    def test_real_smime_der_hand_written_headers(self):
        _key, cert = self.smime_material()
        der = self.cms("-encrypt", "-aes-128-gcm", "-outform", "DER", cert)
        self.assert_untouched(single('application/pkcs7-mime; name="smime.p7m";\r\n'
                                     '\tsmime-type=authEnveloped-data', b64(der), "base64"))


class AlreadyEncryptedSmime(unittest.TestCase):
    """The same through the S/MIME method: the result is checked with
    `openssl cms -decrypt` and the recipient's own key."""

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgencs")
        ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"))
        cls.carol = ca.issue("Carol Partner", [CAROL])
        cls.gw = smimetest.smime_gateway(os.path.join(cls.tmp, "gw"), smimetest.smime_policy(
            action="encrypt"), anchors=[ca.cert], certs=[cls.carol.cert])
        cls.secret = ("Content-Type: text/plain\r\n\r\nsecret %s\r\n" % MARKER).encode()

    def assert_encrypted(self, msg):
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertNotIn("already protected", err)
        self.assertNotIn(MARKER.encode(), out)
        der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
        smimetest.assert_openssl_decrypts(self, der, self.carol, msg)

    def test_enveloped_label_holding_plain_bytes(self):
        self.assert_encrypted(single('application/pkcs7-mime; smime-type=enveloped-data; '
                                     'name="smime.p7m"', b64(self.secret), "base64"))

    def test_opaque_signed_data(self):
        der = smimetest.openssl("cms", "-sign", "-nodetach", "-binary", "-outform", "DER",
                                "-signer", self.carol.cert, "-inkey", self.carol.key,
                                input_bytes=self.secret).stdout
        self.assert_encrypted(single('application/pkcs7-mime; name="smime.p7m"',
                                     b64(der), "base64"))

    def test_real_enveloped_data_passes(self):
        der = smimetest.openssl_encrypt(self.secret, [self.carol])
        msg = single('application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
                     b64(der), "base64")
        rc, out, err = self.gw.process(msg, SENDER, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIn("already protected", err)
        self.assertTrue(out == msg, "message changed")


if __name__ == "__main__":
    unittest.main()
