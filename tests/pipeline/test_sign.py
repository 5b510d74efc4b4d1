"""Outbound signing (sign, sign-encrypt) through `sealgate process`, every
signature checked by an independent implementation.

Per run: a test CA (RSA, openssl ca) with an intermediate CA (EC P-256)
below it. Internal senders and their signing material in the gateway's
keystore:
  alice@example.com  S/MIME RSA-2048 certificate from the root CA, imported
                     as an OpenSSL 3 PKCS#12 file with a passphrase file;
                     OpenPGP ed25519 secret key (gpg, unprotected);
  bob@example.com    S/MIME EC P-256 certificate from the intermediate CA,
                     imported as PEM certificate + intermediate + PEM key;
  frank@example.com  nothing;
  gina, hank, ivan, judy @example.com: S/MIME certificate and key that must
                     not be used for signing: expired; keyUsage without
                     digitalSignature/nonRepudiation; extendedKeyUsage without
                     emailProtection; issued by a CA that is no trust anchor.
External recipients: carol@partner.example (OpenPGP key and S/MIME
certificate in the keystore), erin@other.example (nothing).

Checkers (tests/lib/signtest.py):
  - `openssl cms -verify -binary` with the root CA as the only trust anchor,
    on the detached signature with the first part's exact bytes as content,
    and `openssl cms -verify` on the whole message;
  - `gpgsm --verify SIG DATA` in a gpgsm home that trusts the root CA;
  - `gpg --verify SIG DATA` in a GnuPG home holding alice's PUBLIC key only;
  - sign-encrypt: `gpg --decrypt` in carol's home (a good signature by alice
    inside), `openssl cms -decrypt` with carol's key and then the checks
    above on the decrypted multipart/signed entity.
The signed content must be 7-bit safe: content that already was is left
byte for byte, 8-bit, binary and over-long-line leaves are re-encoded
(quoted-printable or base64) and decode to the original bytes.
"""

import base64
import os
import unittest

import signtest
import sgtest
import smimetest
from sgtest import MARKER, canon, make_message, split_header_body, std_headers
from signtest import PGP_SIG, SMIME_SIG

ALICE = "alice@example.com"
BOB = "bob@example.com"
FRANK = "frank@example.com"          # internal, no signing material
GINA = "gina@example.com"            # expired certificate
HANK = "hank@example.com"            # keyUsage keyEncipherment only
IVAN = "ivan@example.com"            # extendedKeyUsage serverAuth only
JUDY = "judy@example.com"            # certificate from an untrusted CA
CAROL = "carol@partner.example"
ERIN = "erin@other.example"

SIGN_STATUS = ("NEWSIG", "GOODSIG", "VALIDSIG", "BADSIG", "ERRSIG", "EXPSIG",
               "EXPKEYSIG", "REVKEYSIG")


def policy(keystore, default, rules=""):
    # The runs play a submission host on loopback that may sign for its
    # users without SMTP AUTH (gateway.signing_networks); who may sign as
    # whom is tested in test_sign_owner.py.
    text = ("version: 1\n"
            "gateway:\n"
            "  keystore: \"%s\"\n"
            "  spool_dir: \"spool\"\n"
            "  signing_networks: [127.0.0.0/8, \"::1\"]\n"
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { %s }\n" % (keystore, default))
    if rules:
        text += "  rules:\n" + rules
    return text


MISSING_RULES = """\
    - name: sign-or-reject
      when: { recipient: [reject@other.example] }
      action: sign
      on_missing_key: reject
    - name: sign-or-tempfail
      when: { recipient: [tempfail@other.example] }
      action: sign
      on_missing_key: tempfail
    - name: sign-or-plain
      when: { recipient: [plain@other.example] }
      action: sign
      on_missing_key: send-plain
"""

POLICIES = {
    "smime": ("action: sign, methods: [smime]", MISSING_RULES),
    "pgp": ("action: sign, methods: [openpgp]", ""),
    "both": ("action: sign, methods: [openpgp, smime]", ""),
    "se-pgp": ("action: sign-encrypt, methods: [openpgp], on_missing_key: send-plain", ""),
    "se-smime": ("action: sign-encrypt, methods: [smime]", ""),
}


# --------------------------------------------------------------------------
# Test messages (CRLF line ends: `sealgate process` keeps them)


def ascii_message(to=ERIN, sender="Alice Example <%s>" % ALICE):
    return make_message(
        std_headers(sender=sender, to=to, subject="Figures")
        + [("Content-Type", "text/plain;\r\n\tcharset=us-ascii;\r\n\tformat=flowed"),
           ("Content-Transfer-Encoding", "7bit")],
        "Hello,\r\n\r\nthe figures: %s\r\nFrom the desk of Alice.\r\n"
        ".\r\n..two dots\r\ntrailing space \r\n\r\n-- \r\nAlice\r\n" % MARKER)


UTF8_TEXT = ("Grüße aus Köln! Çà et là, ½ € — ありがとう. %s\r\n"
             "Zweite Zeile mit Umlauten: äöüÄÖÜß\r\n"
             "=3D is not an escape here, tab\tand trailing space \r\n" % MARKER)


def utf8_message(to=ERIN):
    return make_message(
        std_headers(to=to, subject="Grüße")
        + [("Content-Type", "text/plain; charset=utf-8"),
           ("Content-Transfer-Encoding", "8bit")],
        UTF8_TEXT)


BLOB = bytes(b for b in range(256) if b not in (0, 10, 13)) * 12   # one 3036-byte "line"
BLOB = BLOB[:1500] + b"\r\n" + BLOB[1500:] + b"\r\n" + b"\xff\xfe\x80 end"
B64_BLOB = os.urandom(700)


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


def multipart_message(to=ERIN):
    body = (b"This is a multi-part message in MIME format.\r\n"
            b"--mix-b0undary\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            + UTF8_TEXT.encode() +
            b"--mix-b0undary\r\n"
            b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n"
            + BLOB + b"\r\n"
            b"--mix-b0undary\r\n"
            b"Content-Type: application/pdf; name=\"already.pdf\"\r\n"
            b"Content-Disposition: attachment; filename=\"already.pdf\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + b64_lines(B64_BLOB) +
            b"--mix-b0undary--\r\n")
    return make_message(std_headers(to=to, subject="Attachment")
                        + [("Content-Type", 'multipart/mixed;\r\n boundary="mix-b0undary"')],
                        body)


LONG_LINE = ("%s " % MARKER + "".join("word%04d " % i for i in range(250))).rstrip()
assert len(LONG_LINE) > 1500


def long_line_message(to=ERIN):
    return make_message(
        std_headers(to=to, subject="One long line")
        + [("Content-Type", "text/plain; charset=us-ascii"),
           ("Content-Transfer-Encoding", "7bit")],
        "Short first line.\r\n" + LONG_LINE + "\r\nShort last line.\r\n")


MESSAGES = [("ascii", ascii_message, True),
            ("utf8", utf8_message, False),
            ("multipart-binary", multipart_message, False),
            ("long-line", long_line_message, False)]


# --------------------------------------------------------------------------


class Sign(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        for prog in ("openssl", "gpg", "gpgsm"):
            sgtest.require_program(prog)
        cls.tmp = tmp = sgtest.tmpdir("sgsig")
        cls.scratch = signtest.Scratch(os.path.join(tmp, "chk"))

        # X.509: root CA, intermediate, identities.
        ca = cls.ca = smimetest.TestCA(os.path.join(tmp, "ca"), key="rsa:2048")
        sub = cls.sub = smimetest.TestCA(os.path.join(tmp, "sub"), name="sealgate Test Sub CA",
                                         key="ec:P-256", parent=ca)
        other = smimetest.TestCA(os.path.join(tmp, "other"), name="Untrusted CA",
                                 key="ec:P-256")
        now = smimetest.utcnow()
        cls.alice_x = ca.issue("Alice Example", [ALICE], key="rsa:2048")
        cls.bob_x = sub.issue("Bob Example", [BOB], key="ec:P-256")
        cls.carol_x = ca.issue("Carol Partner", [CAROL], key="rsa:2048")
        unusable = [ca.issue("Gina Example", [GINA], key="ec:P-256",
                             start=now - smimetest.days(400), end=now - smimetest.days(2)),
                    ca.issue("Hank Example", [HANK], key="rsa:2048",
                             ku="critical, keyEncipherment"),
                    ca.issue("Ivan Example", [IVAN], key="ec:P-256", eku="serverAuth"),
                    other.issue("Judy Example", [JUDY], key="ec:P-256")]

        # OpenPGP: alice's and carol's keys; a verifier that knows only
        # alice's public key; carol's home also knows alice's public key.
        cls.alice_pgp = sgtest.GpgHome(os.path.join(tmp, "alice"))
        cls.alice_fpr = cls.alice_pgp.gen_key("Alice Example", ALICE)
        cls.carol_pgp, cls.carol_fpr = sgtest.new_key_home(tmp, CAROL)
        alice_pub = cls.alice_pgp.export_public(ALICE)
        cls.verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
        cls.verifier.import_keys(alice_pub)
        cls.carol_pgp.import_keys(alice_pub)
        secret = signtest.write(os.path.join(tmp, "alice.sec.asc"),
                                cls.alice_pgp.export_secret(ALICE))
        carol_pub = sgtest.export_public_key(tmp, cls.carol_pgp, CAROL)
        # The signing key must come from the keystore, not from a home
        # that happens to be around.
        cls.alice_pgp.kill()

        # gpgsm trusts the root CA only.
        cls.gpgsm = signtest.gpgsm_home(os.path.join(tmp, "gsm"), ca)

        # One keystore, one gateway directory per policy.
        cls.keystore = os.path.join(tmp, "keys", "store")
        cls.gw = {}
        for name, (default, rules) in POLICIES.items():
            gw = sgtest.policy_gateway(os.path.join(tmp, "gw-" + name),
                                       policy(cls.keystore, default, rules))
            gw.check_policy()
            cls.gw[name] = gw
        gw = cls.gw["smime"]
        cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", ca.cert)
        if cp.returncode != 0:
            raise RuntimeError("trust anchor import failed: %s%s" % (cp.stdout, cp.stderr))
        pw = signtest.write(os.path.join(tmp, "p12.pw"), "p12-Passw0rd\n")
        p12 = cls.alice_x.pkcs12("p12-Passw0rd")
        cp = gw.run("keys", "-c", gw.policy, "import", p12, "--passphrase-file", pw)
        if cp.returncode != 0:
            raise RuntimeError("PKCS#12 import failed: %s%s" % (cp.stdout, cp.stderr))
        gw.import_keys_checked(cls.bob_x.cert, sub.cert, cls.bob_x.key)
        gw.import_keys_checked(cls.carol_x.cert, secret, carol_pub)
        cls.unusable_import = []
        for ident in unusable:
            if ident.addr == GINA:
                # `keys import` refuses an expired certificate; a store
                # holds one once time has passed.
                smimetest.place_identity(cls.keystore, ident)
                cls.unusable_import.append((ident.addr, gw.list_keys()))
                continue
            cls.unusable_import.append((ident.addr, gw.import_keys(ident.cert, ident.key)))

    # -- helpers ---------------------------------------------------------

    def process(self, gwname, msg, sender=ALICE, rcpts=(ERIN,), client_ip="127.0.0.1",
                extra_args=()):
        gw = self.gw[gwname]
        rc, out, err = gw.process(msg, sender, list(rcpts), client_ip=client_ip,
                                  extra_args=extra_args)
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        self.assertEqual(gw.spool_entries(), [], "spool not empty")
        return rc, out, err

    def process_ok(self, gwname, msg, **kw):
        rc, out, err = self.process(gwname, msg, **kw)
        self.assertEqual(rc, 0, "sealgate process exit %d: %s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        return out, err

    def assert_refused(self, gwname, msg, sender, rcpt, rc_want, reply_rx):
        rc, out, err = self.process(gwname, msg, sender=sender, rcpts=[rcpt])
        self.assertEqual(rc, rc_want, err)
        self.assertIsNone(out, "a message was written although refused")
        self.assertRegex(err, reply_rx)
        return err

    def check_content(self, original, content, identical):
        """The signed content is 7-bit safe and carries the original: byte
        for byte when it was 7-bit already, else leaf by leaf with the same
        fields apart from the transfer encoding and the same decoded bytes."""
        signtest.assert_7bit_safe(self, content)
        expected = sgtest.expected_entity(original)
        if identical:
            ef, eb = split_header_body(expected)
            cf, cb = split_header_body(content)
            self.assertEqual(sgtest.norm_fields(cf), sgtest.norm_fields(ef),
                             "Content-* fields of the signed part differ")
            self.assertTrue(cb == eb, "7-bit body changed inside the signature")
            return
        want = signtest.leaves(expected)
        got = signtest.leaves(content)
        self.assertEqual(len(got), len(want), "number of leaf parts")
        self.assertEqual(signtest.without_cte(signtest.content_fields(content)),
                         signtest.without_cte(signtest.content_fields(expected)))
        for i, ((wf, wb), (gf, gb)) in enumerate(zip(want, got)):
            nwf, ngf = sgtest.norm_fields(wf), sgtest.norm_fields(gf)
            self.assertEqual(signtest.without_cte(ngf), signtest.without_cte(nwf),
                             "fields of leaf %d" % i)
            orig_7bit = all(c < 0x80 and c != 0 for c in wb) and \
                max(len(x) for x in wb.split(b"\r\n")) <= signtest.MAX_LINE
            if orig_7bit and signtest.cte(wf) in ("7bit", "base64", "quoted-printable"):
                self.assertEqual(ngf, nwf, "fields of 7-bit leaf %d changed" % i)
                self.assertTrue(gb == wb, "7-bit leaf %d changed" % i)
            else:
                self.assertIn(signtest.cte(gf), ("quoted-printable", "base64"),
                              "leaf %d not re-encoded" % i)
                self.assertTrue(signtest.decode_body(gf, gb) == signtest.decode_body(wf, wb),
                                "leaf %d does not decode to the original bytes" % i)

    def verify_smime(self, msg, signer, original=None, identical=True, check_outer=True):
        """msg is S/MIME multipart/signed by signer (an Identity), verified
        by openssl (detached and whole message) and gpgsm, and carries the
        original. Returns the Signed."""
        if check_outer:
            signtest.assert_outer_fields_kept(self, original, msg)
        s = signtest.assert_smime_verifies(self, self.scratch, msg, self.ca, self.gpgsm, signer)
        if original is not None:
            self.check_content(original, s.content, identical)
        return s

    def verify_pgp(self, msg, original, identical=True):
        """msg is OpenPGP multipart/signed by alice, verified by gpg in a
        home with only her public key, and carries the original."""
        signtest.assert_outer_fields_kept(self, original, msg)
        s = signtest.assert_pgp_verifies(self, self.scratch, msg, self.verifier, self.alice_fpr)
        self.check_content(original, s.content, identical)
        return s

    # -- S/MIME sign -------------------------------------------------------

    def test_smime_sign(self):
        for who, ident in ((ALICE, self.alice_x), (BOB, self.bob_x)):
            for name, make, identical in MESSAGES:
                with self.subTest(sender=who, message=name):
                    msg = make()
                    out, err = self.process_ok("smime", msg, sender=who)
                    self.assertIn("action: sign method=smime", err.splitlines())
                    s = self.verify_smime(out, ident, msg, identical)
                    _d, ncerts, text = signtest.cms_signer_info(
                        signtest.smime_signature(self, s))
                    # bob's intermediate travels with the signature (the
                    # checkers trust only the root).
                    self.assertGreaterEqual(ncerts, 2 if who == BOB else 1, text)

    def test_smime_sign_decoded_text(self):
        """The 8-bit text decodes to the original characters."""
        out, _err = self.process_ok("smime", utf8_message())
        s = signtest.signed_parts(self, out, SMIME_SIG, "sha-256")
        ((fields, body),) = signtest.leaves(s.content)
        self.assertEqual(signtest.decode_body(fields, body).decode("utf-8"), UTF8_TEXT)
        ctype, ct = sgtest.parse_content_type(sgtest.header_values(fields, "Content-Type")[0])
        self.assertEqual((ctype, ct.get_param("charset").lower()), ("text/plain", "utf-8"))

    def test_smime_tampering_is_detected(self):
        """The checkers do check: one changed byte in the signed part makes
        openssl and gpgsm fail."""
        out, _err = self.process_ok("smime", ascii_message())
        s = signtest.signed_parts(self, out, SMIME_SIG, "sha-256")
        der = signtest.smime_signature(self, s)
        bad = s.content.replace(b"figures", b"fiGures", 1)
        self.assertNotEqual(bad, s.content)
        rc, err, _f = signtest.openssl_verify_detached(self.scratch, bad, der, self.ca.cert)
        self.assertNotEqual(rc, 0, err)
        rc, text = signtest.gpgsm_verify(self.gpgsm, self.scratch, der, bad)
        self.assertNotEqual(rc, 0, text)
        self.assertFalse(signtest.status_args(text, "GOODSIG"), text)
        # openssl refuses a signer outside the trusted CA too.
        other = os.path.join(self.tmp, "other", "ca.pem")
        rc, err, _f = signtest.openssl_verify_detached(self.scratch, s.content, der, other)
        self.assertNotEqual(rc, 0, err)

    # -- OpenPGP sign ------------------------------------------------------

    def test_openpgp_sign(self):
        for name, make, identical in MESSAGES:
            with self.subTest(message=name):
                msg = make()
                out, err = self.process_ok("pgp", msg)
                self.assertIn("action: sign method=openpgp", err.splitlines())
                self.verify_pgp(out, msg, identical)

    def test_openpgp_tampering_is_detected(self):
        out, _err = self.process_ok("pgp", ascii_message())
        s = signtest.signed_parts(self, out, PGP_SIG, "pgp-sha256")
        sig = signtest.pgp_signature(self, s)
        bad = s.content.replace(b"figures", b"fiGures", 1)
        rc, text = signtest.gpg_verify(self.verifier, self.scratch, sig, bad)
        self.assertNotEqual(rc, 0, text)
        self.assertTrue(signtest.status_args(text, "BADSIG"), text)

    def test_method_preference(self):
        """methods: [openpgp, smime]: alice has an OpenPGP key and signs with
        it; bob has only S/MIME and signs with that."""
        msg = ascii_message()
        out, _err = self.process_ok("both", msg, sender=ALICE)
        self.verify_pgp(out, msg)
        msg = ascii_message(sender="Bob Example <%s>" % BOB)
        out, _err = self.process_ok("both", msg, sender=BOB)
        self.verify_smime(out, self.bob_x, msg)

    def test_authenticated_or_trusted_client_signs(self):
        """SMTP AUTH without a trusted network, or ::1 (trusted by default):
        outbound, signed."""
        msg = ascii_message()
        out, _err = self.process_ok("smime", msg, client_ip=None, extra_args=["--auth", ALICE])
        self.verify_smime(out, self.alice_x, msg)
        out, _err = self.process_ok("smime", msg, client_ip="::1")
        self.verify_smime(out, self.alice_x, msg)

    def test_lf_input_file(self):
        """A message file with LF line ends: the signature is over the
        canonical CRLF form that goes over SMTP."""
        for gwname, make in (("smime", ascii_message), ("smime", utf8_message),
                             ("pgp", utf8_message)):
            with self.subTest(policy=gwname, message=make.__name__):
                msg = make().replace(b"\r\n", b"\n")
                out, _err = self.process_ok(gwname, msg)
                identical = make is ascii_message
                if gwname == "smime":
                    self.verify_smime(canon(out), self.alice_x, canon(msg), identical)
                else:
                    self.verify_pgp(canon(out), canon(msg), identical)

    # -- sign-encrypt ------------------------------------------------------

    def test_sign_encrypt_openpgp(self):
        msg = ascii_message(to="Carol Partner <%s>" % CAROL)
        out, err = self.process_ok("se-pgp", msg, rcpts=[CAROL])
        self.assertNotIn(MARKER.encode(), out, "plaintext in the result")
        self.assertNotIn(b"multipart/signed", out)
        signtest.assert_outer_fields_kept(self, msg, out, "multipart/encrypted")
        _control, armored = sgtest.pgp_mime_parts(canon(out))
        rc, plain, text = self.carol_pgp.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, text), text)
        self.assertEqual(rc, 0, text)
        self.assertEqual(len(signtest.status_args(text, "GOODSIG")), 1,
                         "no good signature inside: %s" % text)
        valid = signtest.status_args(text, "VALIDSIG")
        self.assertEqual([v[9].upper() for v in valid], [self.alice_fpr], text)
        # gpg prints the original entity (combined signing and encryption,
        # RFC 3156 section 6.2), byte for byte apart from header folding.
        self.check_content(msg, plain, True)

    def test_sign_encrypt_smime(self):
        msg = ascii_message(to="Carol Partner <%s>" % CAROL)
        out, err = self.process_ok("se-smime", msg, rcpts=[CAROL])
        self.assertNotIn(MARKER.encode(), out, "plaintext in the result")
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        rc, plain, derr = smimetest.cms_decrypt(der, self.carol_x)
        self.assertEqual(rc, 0, "openssl cms -decrypt failed: %s" % derr)
        self.assertEqual(plain, canon(plain))
        # The decrypted entity is a multipart/signed entity that verifies.
        self.verify_smime(plain, self.alice_x, msg, True, check_outer=False)
        fields, _ = split_header_body(plain)
        self.assertTrue(all(sgtest.is_content_field(n) for n, _v in fields),
                        "non-Content fields in the inner entity: %r" % fields)

    def test_sign_encrypt_utf8_smime(self):
        msg = utf8_message(to=CAROL)
        out, _err = self.process_ok("se-smime", msg, rcpts=[CAROL])
        der = smimetest.smime_der(self, msg, out, "enveloped-data")
        rc, plain, derr = smimetest.cms_decrypt(der, self.carol_x)
        self.assertEqual(rc, 0, derr)
        self.verify_smime(plain, self.alice_x, msg, False, check_outer=False)

    # -- no usable signing key ---------------------------------------------

    def test_missing_signing_key(self):
        # The From: field says alice; the envelope sender frank has no key:
        # sealgate signs only as the envelope sender.
        msg = ascii_message()
        err = self.assert_refused(
            "smime", msg, FRANK, "reject@other.example", 2,
            r"(?m)^550 5\.7\.1 signing required by rule \"sign-or-reject\"; "
            r"no usable signing key for: <?reject@other\.example>?")
        self.assertEqual(sgtest.verdict(err), "reject")
        err = self.assert_refused(
            "smime", msg, FRANK, "tempfail@other.example", 3,
            r"(?m)^451 4\.7\.1 signing required by rule \"sign-or-tempfail\"; "
            r"no usable signing key for: <?tempfail@other\.example>?")
        self.assertEqual(sgtest.verdict(err), "tempfail")
        # The default rule of this policy is mandatory too.
        self.assert_refused("smime", msg, FRANK, ERIN, 2,
                            r"(?m)^550 5\.7\.1 signing required by rule \"outbound\.default\"; "
                            r"no usable signing key for: <?erin@other\.example>?")
        # send-plain: the message goes out unchanged.
        out, _err = self.process_ok("smime", msg, sender=FRANK, rcpts=["plain@other.example"])
        self.assertEqual(out, msg)
        # OpenPGP only: bob has no OpenPGP key.
        self.assert_refused("pgp", ascii_message(sender=BOB), BOB, ERIN, 2,
                            r"(?m)^550 5\.7\.1 signing required by rule \"outbound\.default\"; "
                            r"no usable signing key for: <?erin@other\.example>?")

    def test_unusable_signing_certificates(self):
        for addr, cp in self.unusable_import:
            with self.subTest(sender=addr):
                self.assertEqual(cp.returncode, 0, "import of %s's certificate and key "
                                 "failed: %s%s" % (addr, cp.stdout, cp.stderr))
                self.assert_refused(
                    "smime", ascii_message(sender=addr), addr, ERIN, 2,
                    r"(?m)^550 5\.7\.1 signing required by rule \"outbound\.default\"; "
                    r"no usable signing key for: <?erin@other\.example>?")
                text = self.explain("smime", addr, ERIN)
                self.assertIn("  missing: signing key\n", text)
                self.assertNotIn("signing key: ", text)

    def test_sign_encrypt_without_signing_key(self):
        msg = ascii_message(to=CAROL)
        # send-plain: encrypted to carol, but not signed.
        out, _err = self.process_ok("se-pgp", msg, sender=FRANK, rcpts=[CAROL])
        self.assertNotIn(MARKER.encode(), out)
        plain = sgtest.assert_decrypts_to_original(self, self.carol_pgp, msg, canon(out))
        self.assertIn(MARKER.encode(), plain)
        _c, armored = sgtest.pgp_mime_parts(canon(out))
        _rc, _p, text = self.carol_pgp.decrypt(armored)
        self.assertFalse([kw for kw, _a in signtest.status_lines(text) if kw in SIGN_STATUS],
                         "a signature although the sender has no key: %s" % text)
        self.assertNotIn(b"multipart/signed", plain)
        # reject (default): refused, naming the recipient.
        self.assert_refused("se-smime", msg, FRANK, CAROL, 2,
                            r"(?m)^550 5\.7\.1 signing required by rule \"outbound\.default\"; "
                            r"no usable signing key for: <?carol@partner\.example>?")

    # -- not outbound: nothing signed -------------------------------------

    def test_untrusted_client_not_signed(self):
        msg = ascii_message()
        for kw in ({"client_ip": "unknown"}, {"client_ip": "192.0.2.1"}):
            with self.subTest(**kw):
                out, _err = self.process_ok("smime", msg, **kw)
                self.assertEqual(out, msg, "message changed for an untrusted client")
        # An external sender from a trusted client is not outbound either.
        msg = ascii_message(sender="Erin <%s>" % ERIN, to=CAROL)
        out, _err = self.process_ok("smime", msg, sender=ERIN, rcpts=[CAROL])
        self.assertEqual(out, msg)

    # -- policy explain ----------------------------------------------------

    def explain(self, gwname, sender, rcpt):
        gw = self.gw[gwname]
        cp = gw.run("policy", "explain", "-c", gw.policy, "--from", sender, "--to", rcpt,
                    "--client-ip", "127.0.0.1")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        block = cp.stdout.split("recipient: %s\n" % rcpt, 1)
        self.assertEqual(len(block), 2, cp.stdout)
        return block[1]

    def test_explain(self):
        text = self.explain("smime", ALICE, ERIN)
        self.assertIn("  signing key: %s\n" % self.alice_x.fpr, text)
        self.assertIn("  outcome: sign\n", text)
        self.assertNotIn("missing:", text)
        text = self.explain("smime", BOB, ERIN)
        self.assertIn("  signing key: %s\n" % self.bob_x.fpr, text)
        text = self.explain("pgp", ALICE, ERIN)
        self.assertIn("  signing key: %s\n" % self.alice_fpr, text)
        self.assertIn("  outcome: sign\n", text)
        text = self.explain("se-pgp", ALICE, CAROL)
        self.assertIn("  signing key: %s\n" % self.alice_fpr, text)
        self.assertIn("  outcome: sign-encrypt\n", text)
        text = self.explain("se-smime", ALICE, CAROL)
        self.assertIn("  signing key: %s\n" % self.alice_x.fpr, text)
        self.assertIn("  key: %s\n" % self.carol_x.fpr, text)
        self.assertIn("  outcome: sign-encrypt\n", text)
        text = self.explain("smime", FRANK, "reject@other.example")
        self.assertIn("  missing: signing key\n", text)
        self.assertIn("  outcome: reject\n", text)
        self.assertNotIn("signing key: ", text)
        text = self.explain("smime", FRANK, "tempfail@other.example")
        self.assertIn("  outcome: tempfail\n", text)
        self.assertIn("  missing: signing key\n", text)


if __name__ == "__main__":
    unittest.main()
