"""Inbound signature verification: X-Sealgate-Signature on mail from outside.

Every signed message is made by the real tools -- gpg (detached signatures
in RFC 3156 multipart/signed, or `gpg --sign --encrypt`) and `openssl cms
-sign` (detached multipart/signed, opaque signed-data) -- and adversarial
ones are real signed messages with bytes changed afterwards. `sealgate
process` runs them as mail from carol@partner.example to an internal
recipient, and the tests check the one X-Sealgate-Signature field it adds
(DESIGN.md, "Headers sealgate writes on inbound mail"):

  valid; method=openpgp|smime; signer=ADDR; key=FPR   only for a whole
      message signed by a usable key of the From address;
  invalid / expired / revoked / unknown-key / signer-mismatch with
      method, key and reason; none for unsigned and partly signed mail;

and that nothing else changes: a multipart/signed message is delivered byte
for byte (only the status fields differ), opaque signed-data with a holding
signature is replaced by the signed entity, a signature inside decrypted
mail is reported next to `X-Sealgate-Decrypted: yes`. Also: subject tags,
require_integrity for S/MIME without integrity protection, forged status
fields, and sanitised values from keys and certificates.
"""

import base64
import email
import email.policy
import os
import re
import subprocess
import unittest

import inboundtest
import sgtest
import smimetest
import verifytest as vt
from inboundtest import ALICE, CAROL
from verifytest import DECRYPTED, NOT_ENCRYPTED, SIGNATURE, parse_status

DAVE_EXT = "dave@other.example"
STRANGER = "stranger@partner.example"
OLD = "old@partner.example"
GONE = "gone@partner.example"
SUBJECT = "Quarterly figures"
PGP_BAD = "reason=Bad signature"


def pgp_valid(addr, fpr):
    return "valid; method=openpgp; signer=%s; key=%s" % (addr, fpr)


def smime_valid(addr, fpr):
    return "valid; method=smime; signer=%s; key=%s" % (addr, fpr)


def mismatch(method, fpr):
    return "signer-mismatch; method=%s; key=%s; reason=signer is not the From address" \
        % (method, fpr)


def base64_lines(data):
    b64 = base64.b64encode(data)
    return b"".join(b64[i:i + 76] + b"\r\n" for i in range(0, len(b64), 76))


def signed_parts_only(signed):
    """A signed S/MIME entity as sealgate delivers it under
    integrity=signature: its Content-Type; for multipart/signed the signed
    part as it was signed and a signature part made anew from the decoded
    signature, without preamble and epilogue; for opaque signed-data the
    DER in base64 of sealgate's making."""
    head, body = signed.split(b"\r\n\r\n", 1)
    ctype = re.search(rb"(?im)^content-type:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head).group(0)
    if b"multipart/signed" not in ctype.lower():
        return (ctype + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + base64_lines(base64.b64decode(body)))
    delim = b"--" + re.search(rb'boundary="?([^";\r\n]+)', ctype).group(1)
    inner = body[body.index(delim + b"\r\n") + len(delim) + 2:]
    part1, rest = inner.split(b"\r\n" + delim + b"\r\n", 1)
    part2 = rest.split(b"\r\n" + delim + b"--", 1)[0]
    sig = base64.b64decode(part2.split(b"\r\n\r\n", 1)[1])
    return (ctype + b"\r\n\r\n" + delim + b"\r\n" + part1 + b"\r\n" + delim + b"\r\n"
            + b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
            + b"Content-Transfer-Encoding: base64\r\n"
            + b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
            + base64_lines(sig) + b"\r\n" + delim + b"--\r\n")


class InboundVerify(vt.VerifyCase, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgvf")
        cls.scratch = vt.Scratch(os.path.join(cls.tmp, "scratch"))
        # alice/bob (internal, OpenPGP and S/MIME keys in the gateway),
        # carol's GnuPG home (the external signer), the test CA.
        cls.ids = inboundtest.Identities(cls.tmp)
        cls.carol = cls.ids.sender
        cls.carol_fpr = cls.carol.fingerprint(CAROL)
        cls.homes = []

        # A key the gateway never sees.
        cls.stranger = cls._home("st")
        cls.stranger_fpr = cls.stranger.gen_key("Stranger", STRANGER)
        cls.stranger.import_keys(cls.ids.alice.export_public(ALICE))
        # A key that expired long ago; it signed while it was valid.
        cls.old = cls._home("old")
        cls.old.gpg("--faked-system-time", "20200101T000000", "--quick-gen-key",
                    "Old Key <%s>" % OLD, "future-default", "default", "1d")
        cls.old_fpr = cls.old.fingerprint(OLD)
        # A key that gets revoked (revocation certificate made by gpg).
        cls.gone = cls._home("gone")
        cls.gone_fpr = cls.gone.gen_key("Gone Partner", GONE)
        rev = vt.Scratch(cls.tmp)
        text = smimetest.read_file(os.path.join(cls.gone.path, "openpgp-revocs.d",
                                                cls.gone_fpr + ".rev"))
        cls.gone_rev = rev.file("rev.asc", text.replace(b":-----BEGIN PGP", b"-----BEGIN PGP"))

        # S/MIME signers.
        ca = cls.ids.ca
        cls.carol_rsa = ca.issue("Carol Partner", [CAROL], basename="carol-rsa")
        cls.carol_ec = ca.issue("Carol Partner EC", [CAROL], key="ec", basename="carol-ec")
        # Further certificates for Carol's RSA key: expired two days ago, and
        # one from a CA the gateway does not trust.
        cls.carol_expired = ca.issue("Carol Partner", [CAROL], basename="carol-expired",
                                     start=smimetest.utcnow() - smimetest.days(400),
                                     end=smimetest.utcnow() - smimetest.days(2),
                                     keyfile=cls.carol_rsa.key)
        cls.other_ca = smimetest.TestCA(os.path.join(cls.tmp, "otherca"), name="Other CA",
                                        key="ec")
        cls.carol_other = cls.other_ca.issue("Carol Partner", [CAROL], basename="carol-other",
                                             keyfile=cls.carol_rsa.key)

        cls.gw = cls.ids.gateway(os.path.join(cls.tmp, "gw"), inboundtest.inbound_policy())
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL), (cls.gone, GONE)])
        # `keys import` refuses keys that have already expired; a key that
        # expired after it was imported is what a keystore holds in practice,
        # so it is put there the way the passing of time would.
        expired = sgtest.export_public_key(cls.tmp, cls.old, OLD)
        # gpg may also ask the keystore's agent about secret keys and exit 2
        # when that agent is busy starting: the import itself is what counts.
        cp = subprocess.run(["gpg", "--homedir", os.path.join(cls.gw.keystore, "openpgp"),
                             "--batch", "--status-fd", "2", "--import", expired],
                            capture_output=True)
        if b"[GNUPG:] IMPORT_OK" not in cp.stderr:
            raise RuntimeError("gpg --import of the expired key failed (%d): %s"
                               % (cp.returncode, cp.stderr.decode("utf-8", "replace")))
        cls.tags = inboundtest.variant(cls.gw, os.path.join(cls.tmp, "gwtags"),
                                       inboundtest.inbound_policy(subject_tags="true"))
        cls.integrity = inboundtest.variant(
            cls.gw, os.path.join(cls.tmp, "gwint"),
            inboundtest.inbound_policy(require_integrity="true"))

    @classmethod
    def _home(cls, name):
        home = sgtest.GpgHome(os.path.join(cls.tmp, name))
        cls.homes.append(home)
        return home

    @classmethod
    def tearDownClass(cls):
        cls.ids.kill_agents()
        for home in cls.homes:
            home.kill()

    # ------------------------------------------------------------------
    # Message builders

    def entity(self, text="Hello Alice, the figures are attached."):
        return vt.text_entity(text + "\r\nGr\u00fc\u00dfe, Carol\r\n")

    def pgp_msg(self, home=None, sender="Carol Partner <%s>" % CAROL, entity=None,
                signer=None, extra=()):
        return vt.pgp_signed_message(home or self.carol, entity or self.entity(),
                                     vt.outer(sender=sender), signer=signer, extra=extra)

    def smime_msg(self, ident=None, sender="Carol Partner <%s>" % CAROL, entity=None,
                  opaque=False, md="sha256"):
        return vt.smime_signed_message(self.scratch, ident or self.carol_rsa,
                                       entity or self.entity(),
                                       vt.outer(sender=sender, mime_version=False),
                                       opaque=opaque, md=md)

    def assert_status(self, gw, msg, want, unchanged=True, dec=NOT_ENCRYPTED, **kw):
        out, err, d, sig = self.run_inbound(gw, msg, **kw)
        self.assertEqual(d, dec, err)
        self.assertEqual(sig, want, err)
        if unchanged:
            self.assert_unchanged(msg, out, dec, want)
        return out

    # ------------------------------------------------------------------
    # OpenPGP, RFC 3156 multipart/signed

    def test_pgp_valid(self):
        msg = self.pgp_msg()
        self.assert_status(self.gw, msg, pgp_valid(CAROL, self.carol_fpr))

    def test_pgp_valid_independent_check(self):
        # The test message itself is right: gpg verifies the signature over
        # the first body part, as RFC 3156 says.
        home = self._home("chk")
        home.import_keys(self.carol.export_public(CAROL))
        entity = self.entity()
        signed = vt.pgp_signed_entity(self.carol, entity)
        b = re.search(rb'boundary="([^"]+)"', signed).group(1)
        parts = sgtest.split_multipart(signed.split(b"\r\n\r\n", 1)[1], b.decode())
        ok, text = vt.gpg_verifies(home, self.scratch, parts[1].split(b"\r\n\r\n", 1)[1],
                                   parts[0])
        self.assertTrue(ok, text)
        self.assertEqual(parts[0], entity)

    def test_pgp_valid_from_other_case_and_multipart_content(self):
        msg = self.pgp_msg(sender="Carol Partner <Carol@PARTNER.example>",
                           entity=vt.mixed_entity("Hello Alice, see the attachment."))
        self.assert_status(self.gw, msg, pgp_valid(CAROL, self.carol_fpr))

    def test_pgp_valid_lf_only(self):
        # The same message stored with LF line ends (as Postfix and many
        # mail stores keep it): the signature is over the CRLF form.
        msg = self.pgp_msg().replace(b"\r\n", b"\n")
        self.assert_status(self.gw, msg, pgp_valid(CAROL, self.carol_fpr))

    def test_pgp_tampered(self):
        msg = self.pgp_msg(entity=self.entity("Please pay invoice 4711 to account 12345."))
        variants = {
            "body": vt.flip_in_signed_text(msg, b"12345"),
            "content header": msg.replace(b"charset=utf-8", b"charset=latin1", 1),
            "line added": msg.replace(b"Carol\r\n\r\n--sig-", b"Carol\r\nP.S. new account 666\r\n"
                                      b"\r\n--sig-", 1),
        }
        for name, bad in variants.items():
            with self.subTest(name):
                self.assertNotEqual(bad, msg)
                self.assert_status(self.gw, bad, "invalid; method=openpgp; key=%s; %s"
                                   % (self.carol_fpr, PGP_BAD))

    def test_pgp_signer_mismatch(self):
        fpr = self.carol_fpr
        for name, sender in (("other address", "Dave Other <%s>" % DAVE_EXT),
                             ("signer in the display name",
                              '"%s" <%s>' % (CAROL, DAVE_EXT)),
                             ("same local part, other domain",
                              "Carol <carol@partner.example.net>"),
                             ("two mailboxes", "%s, %s" % (CAROL, DAVE_EXT))):
            with self.subTest(name):
                self.assert_status(self.gw, self.pgp_msg(sender=sender),
                                   mismatch("openpgp", fpr))

    def test_pgp_no_from(self):
        msg = self.pgp_msg()
        msg = re.sub(rb"(?m)^From: [^\r\n]*\r\n", b"", msg, count=1)
        out, err, _d, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(sig, mismatch("openpgp", self.carol_fpr), err)

    def test_pgp_unknown_key(self):
        msg = self.pgp_msg(home=self.stranger, sender=STRANGER)
        self.assert_status(self.gw, msg, "unknown-key; method=openpgp; key=%s; reason=No public key"
                           % self.stranger_fpr)

    def test_pgp_expired_key(self):
        msg = self.pgp_msg(home=self.old, sender="Old Key <%s>" % OLD,
                           extra=("--faked-system-time", "20200101T120000"))
        self.assert_status(self.gw, msg, "expired; method=openpgp; key=%s; reason=Key expired"
                           % self.old_fpr)
        lines = [l for l in self.gw.list_keys().stdout.splitlines() if OLD in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(" expired ", lines[0])

    def test_pgp_revoked_key(self):
        gw = smimetest.clone_gateway(self.gw, os.path.join(self.tmp, "gwrev"))
        msg = self.pgp_msg(home=self.gone, sender="Gone Partner <%s>" % GONE)
        self.assert_status(gw, msg, pgp_valid(GONE, self.gone_fpr))
        gw.import_keys(self.gone_rev)
        lines = [l for l in gw.list_keys().stdout.splitlines() if GONE in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(" revoked ", lines[0])
        want = "revoked; method=openpgp; key=%s; reason=Certificate revoked" % self.gone_fpr
        self.assert_status(gw, msg, want)
        tags = inboundtest.variant(gw, os.path.join(self.tmp, "gwrevtags"),
                                   inboundtest.inbound_policy(subject_tags="true"))
        out, err, _d, sig = self.run_inbound(tags, msg)
        self.assertEqual(sig, want)
        self.assertEqual(vt.subject(out), ["[signature INVALID] " + SUBJECT])

    def test_revocation_import_is_reported_consistently(self):
        # Importing a revocation certificate either succeeds (exit 0) or
        # is refused and then changes nothing.
        gw = smimetest.clone_gateway(self.gw, os.path.join(self.tmp, "gwrev2"))
        cp = gw.import_keys(self.gone_rev)
        lines = [l for l in gw.list_keys().stdout.splitlines() if GONE in l]
        if cp.returncode != 0:
            self.assertTrue(lines and " active " in lines[0],
                            "`keys import` of a revocation certificate exited %d (%s) but "
                            "the key is now: %r" % (cp.returncode, cp.stderr.strip(), lines))
        else:
            self.assertIn(" revoked ", lines[0])

    # ------------------------------------------------------------------
    # S/MIME multipart/signed

    def test_smime_valid_rsa_and_ec(self):
        for ident, md in ((self.carol_rsa, "sha256"), (self.carol_rsa, "sha384"),
                          (self.carol_rsa, "sha512"), (self.carol_ec, "sha256")):
            with self.subTest(key=ident.name, md=md):
                msg = self.smime_msg(ident, md=md)
                ok, text = vt.openssl_verifies(self.scratch, msg, self.ids.ca.cert)
                self.assertTrue(ok, "openssl does not verify the test message: " + text)
                self.assert_status(self.gw, msg, smime_valid(CAROL, ident.fpr))

    def test_smime_tampered(self):
        msg = self.smime_msg(entity=self.entity("Please pay invoice 4711 to account 12345."))
        for name, bad in (("body", vt.flip_in_signed_text(msg, b"12345")),
                          ("content header", msg.replace(b"charset=utf-8", b"charset=latin1", 1))):
            with self.subTest(name):
                ok, _text = vt.openssl_verifies(self.scratch, bad, self.ids.ca.cert)
                self.assertFalse(ok, "openssl verifies the tampered message")
                out, err, _d, sig = self.run_inbound(self.gw, bad)
                word, params, _names = parse_status(sig)
                self.assertEqual(word, "invalid", err)
                self.assertEqual(params.get("method"), "smime", sig)
                self.assertNotIn("signer", params, sig)
                self.assertTrue(params.get("reason"), sig)
                if "key" in params:
                    self.assertEqual(params["key"], self.carol_rsa.fpr, sig)
                self.assertEqual(sig, "invalid; method=smime; "
                                 "reason=signature does not match the content")
                self.assert_unchanged(bad, out, NOT_ENCRYPTED, sig)

    def test_smime_untrusted_ca(self):
        msg = self.smime_msg(self.carol_other)
        want = ("unknown-key; method=smime; key=%s; reason=unable to get local issuer "
                "certificate" % self.carol_other.fpr)
        self.assert_status(self.gw, msg, want)

    def test_smime_untrusted_ca_shipped_in_the_signature(self):
        # The sender puts its own root into the signature: still no anchor.
        entity = self.entity()
        signed = vt.smime_sign(self.scratch, self.carol_other, entity,
                               certfiles=[self.other_ca.cert])
        msg = vt.message(vt.outer(mime_version=False), signed)
        out, err, _d, sig = self.run_inbound(self.gw, msg)
        word, params, _n = parse_status(sig)
        self.assertEqual(word, "unknown-key", err)
        self.assertEqual(params.get("key"), self.carol_other.fpr)
        self.assert_unchanged(msg, out, NOT_ENCRYPTED, sig)

    def test_smime_expired_certificate(self):
        msg = self.smime_msg(self.carol_expired)
        self.assert_status(self.gw, msg, "expired; method=smime; key=%s; "
                           "reason=certificate has expired" % self.carol_expired.fpr)

    def test_smime_signer_mismatch(self):
        msg = self.smime_msg(sender="Dave Other <%s>" % DAVE_EXT)
        self.assert_status(self.gw, msg, mismatch("smime", self.carol_rsa.fpr))

    # ------------------------------------------------------------------
    # Opaque S/MIME signed-data

    def test_opaque_valid_is_unwrapped(self):
        entity = vt.mixed_entity("Opaque signed, with an attachment.")
        msg = self.smime_msg(entity=entity, opaque=True)
        self.assertIn(b"smime-type=signed-data", msg)
        out, err, dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(dec, NOT_ENCRYPTED)
        self.assertEqual(sig, smime_valid(CAROL, self.carol_rsa.fpr), err)
        self.assert_entity_delivered(msg, out, entity)
        self.assertNotIn(b"pkcs7", out.lower())

    def test_opaque_ec_valid_is_unwrapped(self):
        entity = self.entity()
        msg = self.smime_msg(self.carol_ec, entity=entity, opaque=True)
        out, err, _dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(sig, smime_valid(CAROL, self.carol_ec.fpr), err)
        self.assert_entity_delivered(msg, out, entity)

    def test_opaque_tampered_original_delivered(self):
        msg = self.smime_msg(opaque=True)
        bad = vt.opaque_content_flip(msg)
        ok, _t = vt.openssl_verifies(self.scratch, bad, self.ids.ca.cert)
        self.assertFalse(ok)
        out, err, _dec, sig = self.run_inbound(self.gw, bad)
        word, params, _n = parse_status(sig)
        self.assertEqual(word, "invalid", err)
        self.assertEqual(params.get("method"), "smime")
        self.assert_unchanged(bad, out, NOT_ENCRYPTED, sig)

    def test_opaque_not_valid_never_says_valid(self):
        # Untrusted, expired, other sender: the status says so; whatever is
        # delivered is either the original or exactly the signed entity.
        entity = self.entity()
        for name, ident, sender, word in (
                ("untrusted", self.carol_other, CAROL, "unknown-key"),
                ("expired", self.carol_expired, CAROL, "expired"),
                ("mismatch", self.carol_rsa, DAVE_EXT, "signer-mismatch")):
            with self.subTest(name):
                msg = self.smime_msg(ident, sender=sender, entity=entity, opaque=True)
                out, err, _dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(parse_status(sig)[0], word, sig)
                self.assertEqual(parse_status(sig)[1].get("key"), ident.fpr, sig)
                if b"signed-data" in out:
                    self.assert_unchanged(msg, out, NOT_ENCRYPTED, sig)
                else:
                    self.assert_entity_delivered(msg, out, entity)

    # ------------------------------------------------------------------
    # Signatures inside encrypted mail

    def smime_encrypted(self, inner, cipher="aes-256-gcm", sender="Carol Partner <%s>" % CAROL):
        der = inboundtest.cms_encrypt(inner, [self.ids.smime[ALICE].cert], cipher=cipher)
        kind = "authEnveloped-data" if cipher.endswith("gcm") else "enveloped-data"
        return inboundtest.smime_message(der, kind, headers=vt.outer(sender=sender))

    def test_smime_signed_then_encrypted(self):
        entity = self.entity()
        for opaque in (False, True):
            with self.subTest(opaque=opaque):
                inner = vt.smime_sign(self.scratch, self.carol_rsa, entity, opaque=opaque)
                msg = self.smime_encrypted(inner)
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(dec, "yes; method=smime; integrity=aead", err)
                self.assertEqual(sig, smime_valid(CAROL, self.carol_rsa.fpr), err)
                if opaque and b"signed-data" not in out:
                    self.assert_entity_delivered(msg, out, entity)
                else:
                    self.assert_entity_delivered(msg, out, inner)

    def test_smime_signed_then_encrypted_not_valid(self):
        entity = self.entity("Please pay invoice 4711 to account 12345.")
        tampered = vt.flip_in_signed_text(vt.smime_sign(self.scratch, self.carol_rsa, entity),
                                          b"12345")
        for name, inner, sender, word in (
                ("tampered", tampered, CAROL, "invalid"),
                ("untrusted", vt.smime_sign(self.scratch, self.carol_other, entity),
                 CAROL, "unknown-key"),
                ("mismatch", vt.smime_sign(self.scratch, self.carol_rsa, entity),
                 DAVE_EXT, "signer-mismatch")):
            with self.subTest(name):
                msg = self.smime_encrypted(inner, sender=sender)
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(dec, "yes; method=smime; integrity=aead", err)
                self.assertEqual(parse_status(sig)[0], word, sig)
                self.assertEqual(parse_status(sig)[1].get("method"), "smime", sig)
                self.assert_entity_delivered(msg, out, inner)

    def pgp_encrypted(self, armored, sender="Carol Partner <%s>" % CAROL):
        return inboundtest.pgp_mime_message(armored, headers=vt.outer(sender=sender))

    def test_pgp_sign_and_encrypt(self):
        entity = self.entity()
        msg = self.pgp_encrypted(vt.gpg_sign_encrypt(self.carol, entity, [ALICE]))
        out, err, dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
        self.assertEqual(sig, pgp_valid(CAROL, self.carol_fpr), err)
        self.assert_entity_delivered(msg, out, entity)

    def test_pgp_signed_mime_then_encrypted(self):
        # RFC 3156 section 6.1: a multipart/signed entity, then encrypted.
        inner = vt.pgp_signed_entity(self.carol, self.entity())
        msg = self.pgp_encrypted(inboundtest.gpg_encrypt(self.ids, inner, [ALICE]))
        out, err, dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
        self.assertEqual(sig, pgp_valid(CAROL, self.carol_fpr), err)
        self.assert_entity_delivered(msg, out, inner)

    def test_pgp_encrypted_signature_not_valid(self):
        entity = self.entity()
        for name, msg, want in (
                ("unknown key",
                 self.pgp_encrypted(vt.gpg_sign_encrypt(self.stranger, entity, [ALICE]),
                                    sender=STRANGER),
                 "unknown-key; method=openpgp; key=%s; reason=No public key"
                 % self.stranger_fpr),
                ("mismatch",
                 self.pgp_encrypted(vt.gpg_sign_encrypt(self.carol, entity, [ALICE]),
                                    sender=DAVE_EXT),
                 mismatch("openpgp", self.carol_fpr))):
            with self.subTest(name):
                out, err, dec, sig = self.run_inbound(self.gw, msg)
                self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
                self.assertEqual(sig, want, err)
                self.assert_entity_delivered(msg, out, entity)

    # ------------------------------------------------------------------
    # Subject tags

    def test_subject_tags(self):
        entity = self.entity()
        unsigned = vt.message(vt.outer(), entity)
        cases = (
            ("valid openpgp", self.pgp_msg(), "[signed OK] "),
            ("valid smime", self.smime_msg(), "[signed OK] "),
            ("valid opaque", self.smime_msg(opaque=True), "[signed OK] "),
            ("invalid", vt.flip_in_signed_text(self.pgp_msg(), b"attached"),
             "[signature INVALID] "),
            ("mismatch", self.pgp_msg(sender=DAVE_EXT), "[signature INVALID] "),
            ("expired", self.pgp_msg(home=self.old, sender=OLD,
                                     extra=("--faked-system-time", "20200101T120000")),
             "[signature INVALID] "),
            ("unknown key", self.pgp_msg(home=self.stranger, sender=STRANGER), ""),
            ("unsigned", unsigned, ""),
            ("decrypted and signed",
             self.pgp_encrypted(vt.gpg_sign_encrypt(self.carol, entity, [ALICE])),
             "[decrypted] [signed OK] "),
            ("decrypted, unsigned",
             self.pgp_encrypted(inboundtest.gpg_encrypt(self.ids, entity, [ALICE])),
             "[decrypted] "),
            ("decrypted, bad signer",
             self.pgp_encrypted(vt.gpg_sign_encrypt(self.carol, entity, [ALICE]),
                                sender=DAVE_EXT),
             "[decrypted] [signature INVALID] "),
        )
        for n, (name, msg, tag) in enumerate(cases):
            with self.subTest(name):
                out, err, _dec, sig = self.run_inbound(self.tags, msg)
                self.assertEqual(vt.subject(out), [tag + SUBJECT], "%s (%s)" % (sig, err))
                if n % 4:
                    continue
                out2, _e, _d, sig2 = self.run_inbound(self.gw, msg)
                self.assertEqual(sig2, sig, "subject_tags changed the status")
                self.assertEqual(vt.subject(out2), [SUBJECT], "tagged without subject_tags")

    def test_defaults_verify_on_tags_off(self):
        gw = inboundtest.variant(self.gw, os.path.join(self.tmp, "gwdef"),
                                 inboundtest.inbound_policy().split("inbound:")[0]
                                 + "inbound: { decrypt: true }\n")
        msg = self.pgp_msg()
        out = self.assert_status(gw, msg, pgp_valid(CAROL, self.carol_fpr))
        self.assertEqual(vt.subject(out), [SUBJECT])

    # ------------------------------------------------------------------
    # require_integrity: S/MIME CBC only with a valid signature inside

    def test_require_integrity(self):
        gw = self.integrity
        marker = inboundtest.new_marker()
        entity = self.entity("Figures: " + marker)
        signed = vt.smime_sign(self.scratch, self.carol_rsa, entity)
        opaque = vt.smime_sign(self.scratch, self.carol_rsa, entity, opaque=True)
        # Without a signature: not decrypted, original delivered, no leak.
        msg = self.smime_encrypted(entity, cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "failed; method=smime; reason=no-integrity", err)
        self.assertEqual(sig, "none")
        self.assert_unchanged(msg, out, dec, sig)
        self.assertNotIn(marker.encode(), out)
        self.assertNotIn(marker, err)
        # With a valid signature over the whole entity: decrypted, and
        # only what the signature covers is delivered.
        for name, inner in (("detached", signed), ("opaque", opaque)):
            with self.subTest(name):
                msg = self.smime_encrypted(inner, cipher="aes-256-cbc")
                out, err, dec, sig = self.run_inbound(gw, msg)
                self.assertEqual(dec, "yes; method=smime; integrity=signature", err)
                self.assertEqual(sig, smime_valid(CAROL, self.carol_rsa.fpr), err)
                self.assert_entity_delivered(msg, out, signed_parts_only(inner))
        # AES-GCM: decrypted without a signature.
        msg = self.smime_encrypted(entity, cipher="aes-256-gcm")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "yes; method=smime; integrity=aead", err)
        self.assert_entity_delivered(msg, out, entity)
        # OpenPGP with MDC: decrypted.
        msg = self.pgp_encrypted(inboundtest.gpg_encrypt(self.ids, entity, [ALICE]))
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "yes; method=openpgp; integrity=mdc", err)
        # The same CBC message without require_integrity: decrypted.
        msg = self.smime_encrypted(entity, cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(dec, "yes; method=smime; integrity=none", err)
        self.assert_entity_delivered(msg, out, entity)

    def test_require_integrity_is_the_default(self):
        gw = inboundtest.variant(self.gw, os.path.join(self.tmp, "gwdefault"),
                                 inboundtest.inbound_policy().replace(
                                     " require_integrity: false,", ""))
        self.assertNotIn("require_integrity", open(gw.policy).read())
        marker = inboundtest.new_marker()
        entity = self.entity("Figures: " + marker)
        msg = self.smime_encrypted(entity, cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "failed; method=smime; reason=no-integrity", err)
        self.assert_unchanged(msg, out, dec, sig)
        self.assertNotIn(marker.encode(), out)
        signed = vt.smime_sign(self.scratch, self.carol_rsa, entity)
        out, err, dec, sig = self.run_inbound(gw, self.smime_encrypted(signed,
                                                                      cipher="aes-256-cbc"))
        self.assertEqual(dec, "yes; method=smime; integrity=signature", err)

    def test_signature_integrity_delivers_only_what_is_signed(self):
        # CBC blocks outside the signed part (the entity's own header
        # fields, the preamble, the epilogue) can be rewritten by anyone
        # (EFAIL gadgets): none of them reaches the recipient.
        gw = self.integrity
        entity = self.entity("Figures: " + inboundtest.new_marker())
        signed = vt.smime_sign(self.scratch, self.carol_rsa, entity)
        head, body = signed.split(b"\r\n\r\n", 1)
        boundary = re.search(rb'boundary="?([^";\r\n]+)', head).group(1)
        first = body.index(b"--" + boundary)
        injected = (head + b"\r\nContent-Description: INJECTED-FIELD\r\n\r\n"
                    + b"INJECTED-PREAMBLE <a href='http://evil.example/'>\r\n"
                    + body[first:] + b"INJECTED-EPILOGUE\r\n")
        msg = self.smime_encrypted(injected, cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "yes; method=smime; integrity=signature", err)
        self.assertEqual(sig, smime_valid(CAROL, self.carol_rsa.fpr), err)
        for word in (b"INJECTED-FIELD", b"INJECTED-PREAMBLE", b"INJECTED-EPILOGUE"):
            self.assertNotIn(word, out)
        self.assert_entity_delivered(msg, out, signed_parts_only(signed))
        # openssl verifies what was delivered.
        ok, text = vt.openssl_verifies(self.scratch, out, self.ids.ca.cert)
        self.assertTrue(ok, text)

    def test_signature_integrity_content_type_is_the_verified_one(self):
        # A second Content-Type in front of the signed one: two readers
        # could take different ones (the one written vs the one verified).
        gw = self.integrity
        entity = self.entity("Figures: " + inboundtest.new_marker())
        signed = vt.smime_sign(self.scratch, self.carol_rsa, entity)
        opaque = vt.smime_sign(self.scratch, self.carol_rsa, entity, opaque=True)
        for name, inner in (
                ("text/html first", b"Content-Type: text/html\r\n" + signed),
                ("multipart/mixed first",
                 b"Content-Type: multipart/mixed; boundary=x\r\n" + signed),
                ("opaque, text/html first", b"Content-Type: text/html\r\n" + opaque),
                ("two transfer encodings",
                 opaque.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
                                1))):
            with self.subTest(name):
                msg = self.smime_encrypted(inner, cipher="aes-256-cbc")
                out, err, dec, sig = self.run_inbound(gw, msg)
                # Refused whichever check sees it first: the entity's
                # header, or the signature that no longer holds.
                self.assertIn(dec, ("failed; method=smime; reason=malformed",
                                    "failed; method=smime; reason=no-integrity"), err)
                self.assert_unchanged(msg, out, dec, sig)

    def test_signature_integrity_signature_part_made_anew(self):
        # The signature part's own fields and text are not signed: a label
        # or words put there never reach the recipient.
        gw = self.integrity
        entity = self.entity("Figures: " + inboundtest.new_marker())
        signed = vt.smime_sign(self.scratch, self.carol_rsa, entity)
        relabelled = re.sub(rb"(?i)content-type: application/(x-)?pkcs7-signature[^\r\n]*",
                            b"Content-Type: text/html; name=INJECTED", signed)
        self.assertNotEqual(relabelled, signed)
        msg = self.smime_encrypted(relabelled, cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "yes; method=smime; integrity=signature", err)
        self.assertNotIn(b"INJECTED", out)
        self.assertNotIn(b"text/html", out)
        self.assert_entity_delivered(msg, out, signed_parts_only(signed))
        # Bytes after the DER of opaque signed-data are covered by nothing:
        # the message is not delivered decrypted.
        opaque = vt.smime_sign(self.scratch, self.carol_rsa, entity, opaque=True)
        msg = self.smime_encrypted(opaque + b"<h1>INJECTED</h1>\r\n", cipher="aes-256-cbc")
        out, err, dec, sig = self.run_inbound(gw, msg)
        self.assertEqual(dec, "failed; method=smime; reason=no-integrity", err)
        self.assert_unchanged(msg, out, dec, sig)

    def test_require_integrity_signature_not_valid(self):
        gw = self.integrity
        marker = inboundtest.new_marker()
        entity = self.entity("Figures: " + marker + " account 12345")
        tampered = vt.flip_in_signed_text(vt.smime_sign(self.scratch, self.carol_rsa, entity),
                                          b"12345")
        for name, inner, sender in (
                ("tampered", tampered, CAROL),
                ("untrusted", vt.smime_sign(self.scratch, self.carol_other, entity), CAROL),
                ("mismatch", vt.smime_sign(self.scratch, self.carol_rsa, entity), DAVE_EXT),
                ("openpgp signature inside",
                 vt.pgp_signed_entity(self.stranger, entity), STRANGER)):
            with self.subTest(name):
                msg = self.smime_encrypted(inner, cipher="aes-256-cbc", sender=sender)
                out, err, dec, sig = self.run_inbound(gw, msg)
                self.assertEqual(dec, "failed; method=smime; reason=no-integrity", err)
                self.assertNotEqual(parse_status(sig)[0], "valid", sig)
                fields_before = vt.header_names(inboundtest.without_status_fields(msg))
                self.assertEqual(vt.header_names(out)[:-2], fields_before)
                self.assertEqual(out.split(b"\r\n\r\n", 1)[1], msg.split(b"\r\n\r\n", 1)[1],
                                 "the original body was not delivered")
                self.assertNotIn(marker.encode(), out)
                self.assertNotIn(marker, err)

    # ------------------------------------------------------------------
    # Only part of the message signed

    def test_partly_signed_is_none(self):
        pgp_part = vt.pgp_signed_entity(self.carol, self.entity("signed attachment"))
        smime_part = vt.smime_sign(self.scratch, self.carol_rsa, self.entity("signed part"))
        opaque_part = vt.smime_sign(self.scratch, self.carol_rsa, self.entity("opaque part"),
                                    opaque=True)
        whole = self.pgp_msg()
        for name, part in (("openpgp attachment", pgp_part),
                           ("smime attachment", smime_part),
                           ("opaque attachment", opaque_part),
                           ("forwarded signed message",
                            b"Content-Type: message/rfc822\r\n"
                            b"Content-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n"
                            + whole)):
            with self.subTest(name):
                b = "mixed-" + os.urandom(4).hex()
                body = ("--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                        "Unsigned text that anyone could have written.\r\n--%s\r\n"
                        % (b, b)).encode() + part.rstrip(b"\r\n") + \
                    ("\r\n--%s--\r\n" % b).encode()
                msg = vt.message(vt.outer(), ('Content-Type: multipart/mixed; boundary="%s"'
                                              '\r\n\r\n' % b).encode() + body)
                self.assert_status(self.gw, msg, "none")

    def test_inline_and_unsigned_are_none(self):
        text = self.carol.gpg("--clearsign", "--digest-algo", "SHA256",
                              input_bytes=b"Hello Alice, inline signed.\r\n").stdout
        inline = vt.message(vt.outer(), b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                            + sgtest.canon(text))
        plain = vt.message(vt.outer(), self.entity())
        for name, msg in (("inline cleartext signature", inline), ("unsigned", plain)):
            with self.subTest(name):
                self.assert_status(self.gw, msg, "none")

    # ------------------------------------------------------------------
    # MIME framing around a real signature

    def test_extra_unsigned_part_in_multipart_signed(self):
        # A third body part slipped in after the signature: not all of the
        # message is signed any more.
        msg = self.pgp_msg()
        b = re.search(rb'boundary="([^"]+)"', msg).group(1)
        close = b"\r\n--" + b + b"--\r\n"
        self.assertIn(close, msg)
        bad = msg.replace(close, b"\r\n--" + b + b"\r\nContent-Type: text/plain\r\n\r\n"
                          b"Unsigned: pay to account 666.\r\n" + close)
        out, err, _dec, sig = self.run_inbound(self.gw, bad)
        self.assertNotEqual(parse_status(sig)[0], "valid",
                            "a multipart/signed with an unsigned third part is reported %r"
                            % sig)

    def test_delimiter_line_going_on_after_cr(self):
        # A CR without LF after a delimiter: GMime reads the line on as
        # content, Python's email takes the CR as a line break. Text put
        # there is shown by some readers and covered by no signature.
        msg = self.pgp_msg()
        b = re.search(rb'boundary="([^"]+)"', msg).group(1)
        fields_end = msg.index(b"\r\n\r\n") + 4
        second = msg.index(b"\r\n--" + b + b"\r\n", msg.index(b"--" + b, fields_end) + 1)
        at = second + len(b"\r\n--" + b)
        bad = msg[:at] + b"\rPay invoice 4711 to account 666." + msg[at:]
        out, err, _dec, sig = self.run_inbound(self.gw, bad)
        self.assertNotEqual(parse_status(sig)[0], "valid",
                            "X-Sealgate-Signature %r on a message with unsigned text "
                            "on a delimiter line" % sig)

    def test_boundary_prefix_confusion(self):
        # The Content-Type names a boundary that is a prefix of the signed
        # message's real one. For a MIME parser (RFC 2046: the delimiter is
        # the boundary followed only by optional whitespace) the first part
        # is the attacker's text, over which the signature does not hold.
        real = self.pgp_msg()
        b = re.search(rb'boundary="([^"]+)"', real).group(1)
        short = b[:-4]
        fields_end = real.index(b"\r\n\r\n") + 4
        real_body = real[fields_end:]
        sig_part = real_body.split(b"\r\n--" + b + b"\r\n")[2].split(b"\r\n--" + b + b"--")[0]
        head = real[:fields_end].replace(b'boundary="' + b + b'"', b'boundary="' + short + b'"')
        body = (real_body.rstrip(b"\r\n") + b"\r\n"
                + b"--" + short + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                b"Pay invoice 4711 to account 666.\r\n"
                b"--" + short + b"\r\n" + sig_part + b"\r\n--" + short + b"--\r\n")
        bad = head + body
        parsed = email.message_from_bytes(bad, policy=email.policy.compat32)
        first = parsed.get_payload()[0]
        self.assertIn("account 666", first.get_payload(), "the test message is not what a "
                      "MIME parser reads")
        out, err, _dec, sig = self.run_inbound(self.gw, bad)
        self.assertNotEqual(parse_status(sig)[0], "valid",
                            "X-Sealgate-Signature %r on a message whose first MIME part is "
                            "unsigned text" % sig)

    # ------------------------------------------------------------------
    # Forged status fields

    FORGED = (
        ("plain", [b"X-Sealgate-Signature: valid; method=openpgp; signer=carol@partner.example;"
                   b" key=0000000000000000000000000000000000000000"]),
        ("lower case", [b"x-sealgate-signature: valid; method=smime; signer=carol@partner.example"]),
        ("upper case, no space", [b"X-SEALGATE-SIGNATURE:valid"]),
        ("folded", [b"X-Sealgate-Signature:\r\n valid;\r\n\tmethod=openpgp;\r\n"
                    b" signer=carol@partner.example"]),
        ("repeated", [b"X-Sealgate-Signature: valid", b"X-Sealgate-Signature: valid; x=1",
                      b"X-sealgate-signature:  valid"]),
        ("with decrypted", [b"X-Sealgate-Decrypted: yes; method=smime; integrity=aead",
                            b"X-Sealgate-Signature: valid; method=smime"]),
    )

    def forge(self, msg, lines, where="middle"):
        """msg with the forged lines inserted among its header fields: after
        the first field, at the very top, or just before the blank line."""
        if where == "top":
            return b"".join(l + b"\r\n" for l in lines) + msg
        if where == "end":
            i = msg.index(b"\r\n\r\n")
            return msg[:i + 2] + b"".join(l + b"\r\n" for l in lines) + msg[i + 2:]
        m = re.search(rb"\r\nFrom: ", msg)
        return msg[:m.start() + 2] + b"".join(l + b"\r\n" for l in lines) + msg[m.start() + 2:]

    def test_forged_status_removed_on_unsigned_mail(self):
        plain = vt.message(vt.outer(), self.entity())
        placed = [(name, lines, where) for name, lines in self.FORGED[:1]
                  for where in ("top", "middle", "end")]
        placed += [(name, lines, ("top", "middle", "end")[i % 3])
                   for i, (name, lines) in enumerate(self.FORGED[1:])]
        for name, lines, where in placed:
            with self.subTest(name, where=where):
                msg = self.forge(plain, lines, where)
                out = self.assert_status(self.gw, msg, "none")
                self.assertTrue(out == vt.expected_unchanged(plain),
                                "forged fields not removed exactly: %r" % out[:1500])
                self.assertNotIn(b"valid", out.lower().split(b"\r\n\r\n")[0]
                                 .replace(b"x-sealgate-signature: none", b""))

    def test_forged_status_removed_on_signed_mail(self):
        valid = self.pgp_msg()
        unknown = self.pgp_msg(home=self.stranger, sender=STRANGER)
        for n, (name, lines) in enumerate(self.FORGED):
            with self.subTest(name):
                self.assert_status(self.gw, self.forge(valid, lines),
                                   pgp_valid(CAROL, self.carol_fpr))
                if n % 2:
                    continue
                self.assert_status(self.gw, self.forge(unknown, lines, "end"),
                                   "unknown-key; method=openpgp; key=%s; reason=No public key"
                                   % self.stranger_fpr)

    def test_forged_status_removed_lf_only_and_tagged(self):
        plain = vt.message(vt.outer(), self.entity())
        msg = self.forge(plain, self.FORGED[3][1] + self.FORGED[4][1]).replace(b"\r\n", b"\n")
        out = self.assert_status(self.gw, msg, "none")
        self.assertNotIn(b"\r", out)
        out, _err, _d, _s = self.run_inbound(self.tags, msg)
        self.assertEqual(vt.subject(out), [SUBJECT])

    def test_forged_status_with_space_before_colon(self):
        # RFC 5322's obsolete syntax allows white space before the colon;
        # some readers take such a field for X-Sealgate-Signature.
        plain = vt.message(vt.outer(), self.entity())
        msg = self.forge(plain, [b"X-Sealgate-Signature : valid; method=openpgp"])
        out, err, _dec, sig = self.run_inbound(self.gw, msg)
        self.assertEqual(sig, "none")
        head = out.split(b"\r\n\r\n", 1)[0]
        self.assertNotRegex(head, rb"(?im)^x-sealgate-signature[ \t]*:[ \t]*valid")

    def test_forged_status_removed_when_verify_off(self):
        gw = inboundtest.variant(self.gw, os.path.join(self.tmp, "gwoff"),
                                 inboundtest.inbound_policy(verify="false"))
        plain = vt.message(vt.outer(), self.entity())
        for name, lines in self.FORGED[::2]:
            with self.subTest(name):
                msg = self.forge(plain, lines)
                rc, out, err = inboundtest.process(gw, msg, [ALICE])
                self.assertEqual(rc, 0, err)
                sigs = vt.values(out, SIGNATURE)
                self.assertLessEqual(len(sigs), 1, sigs)
                for v in sigs:
                    self.assertNotEqual(parse_status(v)[0], "valid", sigs)
                self.assertEqual(len(vt.values(out, DECRYPTED)), 1)
                self.assertNotIn(b"valid", out.split(b"\r\n\r\n")[0].lower())

    # ------------------------------------------------------------------
    # Values from keys and certificates are sanitised

    def signer_home(self, uid, name):
        home = self._home(name)
        home.gpg("--allow-freeform-uid", "--quick-gen-key", uid, "future-default",
                 "default", "never")
        fpr = home.fingerprint(uid.split("<", 1)[1].rstrip(">"))
        return home, fpr

    def test_sanitised_openpgp_user_ids(self):
        gw = smimetest.clone_gateway(self.gw, os.path.join(self.tmp, "gwsan"))
        cases = (
            ("semicolon", '"carol;signer=ceo@example.com"@partner.example'),
            ("tab", '"carol\tx"@partner.example'),
            ("long", "c" * 400 + "@partner.example"),
        )
        for name, addr in cases:
            with self.subTest(name):
                home, fpr = self.signer_home("Odd Partner <%s>" % addr, "odd%d" % len(name))
                path = vt.Scratch(os.path.join(self.tmp, "oddkeys")).file(
                    name + ".asc", home.export_public(addr))
                gw.import_keys_checked(path)
                msg = self.pgp_msg(home=home, sender="Odd <%s>" % addr)
                out, err, _dec, sig = self.run_inbound(gw, msg)
                word, params, names = parse_status(sig)
                self.assertEqual(word, "valid", sig)
                self.assertEqual(names, ["method", "signer", "key"], sig)
                self.assertEqual(params["key"], fpr)
                self.assertNotIn("ceo@example.com;", sig)
                self.assertEqual(vt.header_names(out)[:-2],
                                 vt.header_names(msg), "header fields added or lost")

    SIGNING_EXT = ("basicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature, keyEncipherment\n"
                   "extendedKeyUsage = emailProtection\n"
                   "subjectKeyIdentifier = hash\n"
                   "authorityKeyIdentifier = keyid\n")

    def test_sanitised_certificate_addresses(self):
        # Addresses a From field can name too (the signature is then valid
        # and the address is printed), and ones it cannot.
        ca = self.ids.ca
        cases = (
            ("semicolon in a quoted local part", '"carol;signer=ceo@example.com"@partner.example',
             "subjectAltName = email:\\\"carol;signer=ceo@example.com\\\"@partner.example\n",
             True),
            ("tab in a quoted local part", '"carol\tx"@partner.example',
             'subjectAltName = email:"\\"carol\tx\\"@partner.example"\n', True),
            ("long address", "c" * 400 + "@partner.example",
             "subjectAltName = email:%s@partner.example\n" % ("c" * 400), True),
            ("CR LF in the subject's emailAddress", CAROL + "\r\nX-Injected: yes", None, False),
            ("controls in the subject's emailAddress", CAROL + "\x01\x1b[2J\x7f", None, False),
        )
        for n, (name, addr, ext, valid) in enumerate(cases):
            with self.subTest(name):
                # Carol's RSA key, certified again with the odd address.
                if ext is not None:
                    ident = ca.issue("Odd Partner", [], basename="odd%d" % n,
                                     extensions=self.SIGNING_EXT + ext,
                                     keyfile=self.carol_rsa.key)
                else:
                    ident = ca.issue("Odd Partner", [addr], san=False, subject_email=True,
                                     basename="odd%d" % n, keyfile=self.carol_rsa.key)
                emails = smimetest.openssl("x509", "-in", ident.cert, "-noout",
                                           "-email").stdout.decode("utf-8", "replace")
                self.assertIn(addr.split("\r")[0], emails, "openssl wrote another address")
                msg = self.smime_msg(ident, sender="Odd <%s>" % addr.split("\r")[0])
                out, err, _dec, sig = self.run_inbound(self.gw, msg)
                word, params, names = parse_status(sig)
                if valid:
                    self.assertEqual(word, "valid", "%s (%s)" % (sig, err))
                    self.assertEqual(names, ["method", "signer", "key"], sig)
                    self.assertTrue(params["signer"], sig)
                else:
                    self.assertNotEqual(word, "valid", sig)
                    self.assertNotIn("X-Injected", sig)
                self.assertEqual(params.get("key"), ident.fpr, sig)
                self.assertEqual(vt.header_names(out)[:-2], vt.header_names(msg),
                                 "header fields added or lost")
                self.assertNotIn(b"\nX-Injected", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
