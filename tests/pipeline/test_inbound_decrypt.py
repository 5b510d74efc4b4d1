"""Inbound decryption with `sealgate process` (DESIGN.md §3, §4 rule 3).

Mail from carol@partner.example (outside) to internal recipients. Every
encrypted input is made with the real tools -- gpg in carol's GnuPG home,
`openssl cms -encrypt` -- and every adversarial one too: no MDC
(`gpg --rfc2440`), a flipped byte in a real ciphertext or GCM tag, a cut
armor or CMS object, a disallowed cipher, a compression bomb, an encrypted
part between HTML parts (EFAIL). Before sealgate sees an adversarial
message, gpg or openssl is shown to reject it (by exit status and status
lines, never by what a tool wrote before refusing, which differs between
their versions), so that each test is about a real hazard.

Checked every time:
  - decrypted: outer fields other than Content-* kept in order, Content-*
    fields exactly the decrypted entity's, the body the entity's body, and
    exactly one X-Sealgate-Decrypted and one X-Sealgate-Signature field,
    the last two of the header;
  - not decrypted: the original byte for byte (forged status fields removed)
    plus sealgate's two fields, and the plaintext marker nowhere: not in
    the output (raw or decoded), not on stderr, not in a file left in the
    gateway's directory; the spool directory is empty.
"""

import base64
import os
import subprocess
import unittest

import sgtest
import smimetest
import inboundtest
from inboundtest import ALICE, BOB, CAROL, DAVE, InboundCase, alternative_entity, \
    cms_encrypt, efail_message, expected_passthrough, flip, flip_pgp, gpg_encrypt, \
    inbound_policy, inline_message, new_marker, outer_headers, pgp_mime_message, \
    pgp_mime_part, process, smime_message, smime_part, status_fields, text_entity, \
    truncate_armor

OPENPGP_YES = "yes; method=openpgp; integrity=mdc"
SMIME_GCM_YES = "yes; method=smime; integrity=aead"
SMIME_CBC_YES = "yes; method=smime; integrity=none"
NOT_FOR = "no; reason=not-for-recipient"
PARTIAL = "no; reason=partial-encryption"
MALFORMED = "no; reason=malformed"

FORGED = [("X-Sealgate-Decrypted", "yes; method=openpgp; integrity=mdc"),
          ("x-sealgate-decrypted", "yes;\r\n method=smime;\r\n\tintegrity=aead"),
          ("X-SEALGATE-SIGNATURE", "valid; method=smime; signer=ceo@example.com"),
          ("X-Sealgate-Decrypted-By", "an unrelated field that stays"),
          ("X-Sealgate-Signature", "valid;\r\n\tsigner=ceo@example.com")]


def setUpModule():
    global IDS, GW, TMP
    smimetest.require_tools()
    sgtest.require_program("gpg")
    TMP = sgtest.tmpdir("sgin")
    IDS = inboundtest.Identities(TMP)
    GW = IDS.gateway(os.path.join(TMP, "gw"), inbound_policy())


def tearDownModule():
    IDS.kill_agents()


def gateway_with(name, **inbound):
    """A copy of the module's gateway with other inbound settings."""
    return inboundtest.variant(GW, os.path.join(TMP, name), inbound_policy(**inbound))


class Base(unittest.TestCase, InboundCase):

    def setUp(self):
        self.marker = new_marker()
        self.entity = alternative_entity(self.marker)
        self.alice_cert = IDS.smime[ALICE].cert
        self.bob_cert = IDS.smime[BOB].cert

    def gpg_refuses(self, armored):
        """gpg (holding alice's key) refuses armored: its exit status and
        status lines say so. What gpg wrote before it refused differs
        between its versions and is not looked at."""
        rc, _plain, err = IDS.alice.decrypt(armored)
        self.assertFalse(sgtest.decryption_succeeded(rc, err), err)
        return err


# --------------------------------------------------------------------------


class NotEncrypted(Base):

    def test_plain_message_gets_status_fields_only(self):
        msg = sgtest.make_message(outer_headers() + [("Content-Type", "text/plain; charset=utf-8"),
                                                     ("Content-Transfer-Encoding", "8bit")],
                                  "Hallo, Gr\u00fc\u00dfe\r\n")
        self.assert_passthrough(GW, msg, [ALICE], "no; reason=not-encrypted")

    def test_lf_only_message_byte_identical(self):
        msg = sgtest.make_message(outer_headers() + [("Content-Type", "text/plain")],
                                  "line one\nline two\n", eol=b"\n")
        out, _err = self.assert_passthrough(GW, msg, [ALICE, BOB], "no; reason=not-encrypted")
        self.assertNotIn(b"\r", out)

    def test_signed_only_smime_is_not_encrypted(self):
        # Opaque signed-data is not encryption: nothing is decrypted.
        ident = IDS.smime[ALICE]
        der = smimetest.openssl("cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
                                "-signer", ident.cert, "-inkey", ident.key,
                                input_bytes=self.entity).stdout
        msg = smime_message(der, "signed-data")
        rc, out, err = process(GW, msg, [BOB])
        self.assertEqual(rc, 0, err)
        dec, sig, _last = status_fields(out)
        self.assertEqual(dec, ["no; reason=not-encrypted"])
        self.assertEqual(len(sig), 1)


class ForgedStatusFields(Base):

    def test_forged_fields_removed_from_plain_message(self):
        msg = sgtest.make_message(outer_headers(extra=FORGED)
                                  + [("Content-Type", "text/plain; charset=us-ascii")],
                                  "hello\r\n")
        out, _err = self.assert_passthrough(GW, msg, [ALICE], "no; reason=not-encrypted")
        # The field that only starts with the same name stays.
        self.assertEqual(sgtest.field_values(out, "X-Sealgate-Decrypted-By"),
                         ["an unrelated field that stays"])

    def test_forged_fields_removed_when_decrypting(self):
        # A forged field inside the encrypted entity does not come out either.
        entity = b"X-Sealgate-Decrypted: yes; method=inner-forgery\r\n" + self.entity
        armored = gpg_encrypt(IDS, entity, [ALICE])
        msg = pgp_mime_message(armored, headers=outer_headers(extra=FORGED))
        out, _err = self.assert_decrypted(GW, msg, [ALICE], self.entity, OPENPGP_YES)
        self.assertNotIn(b"inner-forgery", out)
        self.assertEqual(sgtest.field_values(out, "X-Sealgate-Decrypted-By"),
                         ["an unrelated field that stays"])

    def test_forged_fields_removed_when_decryption_fails(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--rfc2440"])
        msg = pgp_mime_message(armored, headers=outer_headers(extra=FORGED))
        self.assert_passthrough(GW, msg, [ALICE], "failed; method=openpgp; reason=integrity",
                                marker=self.marker)


# --------------------------------------------------------------------------


class Decrypted(Base):

    def test_pgp_mime(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        # gpg with alice's key gets the same entity (the input is sound).
        rc, plain, err = IDS.alice.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        self.assertEqual(plain, self.entity)
        out, err = self.assert_decrypted(GW, pgp_mime_message(armored), [ALICE], self.entity,
                                         OPENPGP_YES)
        self.assertIn(self.marker.encode(), out)
        self.assertNotIn(self.marker, err, "plaintext on stderr")
        self.assertNotIn(b"-----BEGIN PGP MESSAGE-----", out)

    def test_pgp_mime_lf_line_ends(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        msg = pgp_mime_message(armored, eol=b"\n")
        self.assert_decrypted(GW, msg, [ALICE], self.entity, OPENPGP_YES)

    def test_pgp_mime_binary_compressed_and_uncompressed(self):
        for extra in (["--compress-algo", "zlib"], ["--compress-algo", "none"]):
            with self.subTest(extra=extra):
                armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=extra)
                self.assert_decrypted(GW, pgp_mime_message(armored), [ALICE], self.entity,
                                      OPENPGP_YES)

    def test_pgp_mime_to_every_envelope_recipient(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE, BOB])
        self.assert_decrypted(GW, pgp_mime_message(armored), [ALICE, BOB], self.entity,
                              OPENPGP_YES)

    def test_inline_ascii(self):
        text = ("Hello Alice,\r\nthe code is %s.\r\n" % self.marker).encode()
        armored = gpg_encrypt(IDS, text, [ALICE])
        msg = inline_message(armored)
        entity = (b"Content-Type: text/plain; charset=us-ascii\r\n"
                  b"Content-Transfer-Encoding: 7bit\r\n\r\n" + text)
        self.assert_decrypted(GW, msg, [ALICE], entity, OPENPGP_YES)

    def test_inline_utf8_is_8bit(self):
        text = ("Hallo Alice, sch\u00f6ne Gr\u00fc\u00dfe: %s\r\n" % self.marker).encode()
        armored = gpg_encrypt(IDS, text, [ALICE])
        msg = inline_message(armored, charset="utf-8")
        entity = (b"Content-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text)
        self.assert_decrypted(GW, msg, [ALICE], entity, OPENPGP_YES)

    def test_smime_aes_gcm(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-gcm")
        rc, plain, err = inboundtest.cms_decrypt(der, IDS.smime[ALICE])
        self.assertEqual((rc, plain), (0, self.entity), err)
        msg = smime_message(der, "authEnveloped-data")
        out, _err = self.assert_decrypted(GW, msg, [ALICE], self.entity, SMIME_GCM_YES)
        # The outer Content-Disposition/-Description of smime.p7m are gone.
        self.assertEqual(sgtest.field_values(out, "Content-Disposition"), [])

    def test_smime_aes_128_gcm(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-128-gcm")
        self.assert_decrypted(GW, smime_message(der, "authEnveloped-data"), [ALICE],
                              self.entity, SMIME_GCM_YES)

    def test_smime_aes_cbc(self):
        for cipher in ("aes-128-cbc", "aes-256-cbc"):
            with self.subTest(cipher=cipher):
                der = cms_encrypt(self.entity, [self.alice_cert], cipher)
                self.assert_decrypted(GW, smime_message(der, "enveloped-data"), [ALICE],
                                      self.entity, SMIME_CBC_YES)

    def test_smime_to_every_envelope_recipient(self):
        der = cms_encrypt(self.entity, [self.alice_cert, self.bob_cert])
        self.assert_decrypted(GW, smime_message(der), [ALICE, BOB], self.entity, SMIME_GCM_YES)

    def test_smime_text_entity(self):
        entity = text_entity(self.marker, charset="utf-8", cte="8bit")
        der = cms_encrypt(entity, [self.bob_cert])
        self.assert_decrypted(GW, smime_message(der), [BOB], entity, SMIME_GCM_YES)

    def test_3des_when_allowed(self):
        gw = gateway_with("gw3des", allow_3des="true")
        der = cms_encrypt(self.entity, [self.alice_cert], "des3")
        self.assert_decrypted(gw, smime_message(der, "enveloped-data"), [ALICE], self.entity,
                              SMIME_CBC_YES)
        # RC2 and DES stay refused.
        for cipher in ("des", "rc2-40", "rc2-128"):
            with self.subTest(cipher=cipher):
                der = cms_encrypt(self.entity, [self.alice_cert], cipher, legacy=True)
                self.assert_passthrough(gw, smime_message(der, "enveloped-data"), [ALICE],
                                        "failed; method=smime; reason=cipher-not-allowed",
                                        marker=self.marker)


# --------------------------------------------------------------------------


class NotForRecipient(Base):

    def test_openpgp_for_alice_delivered_to_bob(self):
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assert_passthrough(GW, msg, [BOB], NOT_FOR, marker=self.marker)

    def test_openpgp_for_alice_delivered_to_alice_and_bob(self):
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assert_passthrough(GW, msg, [ALICE, BOB], NOT_FOR, marker=self.marker)

    def test_openpgp_for_bob_delivered_to_alice(self):
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [BOB]))
        self.assert_passthrough(GW, msg, [ALICE], NOT_FOR, marker=self.marker)

    def test_openpgp_recipient_without_key(self):
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE, BOB]))
        self.assert_passthrough(GW, msg, [DAVE], NOT_FOR, marker=self.marker)

    def test_inline_for_alice_delivered_to_bob(self):
        armored = gpg_encrypt(IDS, ("text %s\r\n" % self.marker).encode(), [ALICE])
        self.assert_passthrough(GW, inline_message(armored), [BOB], NOT_FOR, marker=self.marker)

    def test_smime_for_alice_delivered_to_bob(self):
        msg = smime_message(cms_encrypt(self.entity, [self.alice_cert]))
        self.assert_passthrough(GW, msg, [BOB], NOT_FOR, marker=self.marker)

    def test_smime_for_alice_delivered_to_alice_and_bob(self):
        msg = smime_message(cms_encrypt(self.entity, [self.alice_cert]))
        self.assert_passthrough(GW, msg, [ALICE, BOB], NOT_FOR, marker=self.marker)

    def test_openpgp_hidden_recipient(self):
        # --throw-keyids: the message names no key. It is opened with the
        # envelope recipient's own key only.
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--throw-keyids"])
        self.assertEqual(set(sgtest.pkesk_keyids(IDS.alice.list_packets(armored))),
                         {"0000000000000000"})
        msg = pgp_mime_message(armored)
        self.assert_decrypted(GW, msg, [ALICE], self.entity, OPENPGP_YES)
        for rcpts in ([BOB], [ALICE, BOB], [DAVE]):
            with self.subTest(rcpts=rcpts):
                self.assert_passthrough(GW, msg, rcpts, NOT_FOR, marker=self.marker)
        both = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE, BOB],
                                            extra=["--throw-keyids"]))
        self.assert_decrypted(GW, both, [ALICE, BOB], self.entity, OPENPGP_YES)

    def test_openpgp_key_of_a_gateway_without_alice(self):
        # The gateway holds only bob's keys: alice's message stays closed.
        gw = IDS.gateway(os.path.join(TMP, "gwbob"), inbound_policy(), openpgp=(BOB,),
                         smime=(BOB,))
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assert_passthrough(gw, msg, [ALICE], NOT_FOR, marker=self.marker)
        msg = smime_message(cms_encrypt(self.entity, [self.alice_cert]))
        self.assert_passthrough(gw, msg, [ALICE], NOT_FOR, marker=self.marker)


# --------------------------------------------------------------------------


class Failures(Base):

    def test_openpgp_without_mdc(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--rfc2440"])
        self.assertIn("encrypted data packet", IDS.alice.list_packets(armored))
        self.gpg_refuses(armored)
        self.assert_passthrough(GW, pgp_mime_message(armored), [ALICE],
                                "failed; method=openpgp; reason=integrity", marker=self.marker)

    def test_inline_without_mdc(self):
        text = ("Hello, %s\r\n" % self.marker).encode()
        armored = gpg_encrypt(IDS, text, [ALICE], extra=["--rfc2440"])
        self.assertIn("encrypted data packet", IDS.alice.list_packets(armored))
        self.gpg_refuses(armored)
        self.assert_passthrough(GW, inline_message(armored), [ALICE],
                                "failed; method=openpgp; reason=integrity", marker=self.marker)

    def test_openpgp_bad_mdc(self):
        # Uncompressed, one byte flipped near the end of the literal data:
        # gpg reports BADMDC (gpg 2.2 writes the plaintext first).
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--compress-algo", "none"])
        tampered = flip_pgp(armored, 40)
        err = self.gpg_refuses(tampered)
        self.assertIn("BADMDC", err)
        self.assert_passthrough(GW, pgp_mime_message(tampered), [ALICE],
                                "failed; method=openpgp; reason=decryption-error",
                                marker=self.marker)

    def test_openpgp_mdc_packet_flipped(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--compress-algo", "none"])
        tampered = flip_pgp(armored, 3)
        self.gpg_refuses(tampered)
        self.assert_passthrough(GW, pgp_mime_message(tampered), [ALICE],
                                "failed; method=openpgp; reason=decryption-error",
                                marker=self.marker)

    def test_openpgp_compressed_ciphertext_flipped(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE], extra=["--compress-algo", "zlib"])
        tampered = flip_pgp(armored, 60)
        rc, _plain, err = IDS.alice.decrypt(tampered)
        self.assertFalse(sgtest.decryption_succeeded(rc, err), err)
        self.assert_passthrough(GW, pgp_mime_message(tampered), [ALICE],
                                "failed; method=openpgp; reason=decryption-error",
                                marker=self.marker)

    def test_openpgp_truncated_armor(self):
        armored = truncate_armor(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assertNotIn(b"-----END PGP MESSAGE-----", armored)
        # sealgate's armor reader refuses it before gpg sees it.
        self.assert_passthrough(GW, pgp_mime_message(armored), [ALICE],
                                "failed; method=openpgp; reason=malformed",
                                marker=self.marker)

    def test_inline_truncated_armor_not_decrypted(self):
        # Without its END line the body is no longer one armored message.
        text = ("Hello, %s\r\n" % self.marker).encode() * 20
        armored = truncate_armor(gpg_encrypt(IDS, text, [ALICE], extra=["--compress-algo", "none"]))
        msg = inline_message(armored)
        rc, out, err = process(GW, msg, [ALICE])
        self.assertEqual(rc, 0, err)
        dec, _sig, _last = status_fields(out)
        self.assertEqual(len(dec), 1)
        self.assertIn(dec[0], ("no; reason=not-encrypted",
                               "failed; method=openpgp; reason=malformed",
                               "failed; method=openpgp; reason=decryption-error"))
        self.assertTrue(out == expected_passthrough(msg, dec[0]))
        self.assert_no_marker(self.marker, out, err, GW)

    def test_openpgp_armor_inside_armor(self):
        # The armor's content is itself an armored message: sealgate's
        # reader decodes one armor, and gpg must not decode the second
        # one with its own reader.
        inner = gpg_encrypt(IDS, self.entity, [ALICE])
        rc, _plain, err = IDS.alice.decrypt(inner)
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        b64 = base64.b64encode(sgtest.canon(inner))
        outer = (b"-----BEGIN PGP MESSAGE-----\r\n\r\n"
                 + b"\r\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
                 + b"\r\n-----END PGP MESSAGE-----\r\n")
        self.assert_passthrough(GW, pgp_mime_message(outer), [ALICE],
                                "failed; method=openpgp; reason=malformed",
                                marker=self.marker)

    def test_openpgp_not_an_openpgp_message(self):
        for armored in (b"-----BEGIN PGP MESSAGE-----\r\n\r\nAAAA\r\n-----END PGP MESSAGE-----\r\n",
                        b"hello there\r\n"):
            with self.subTest(armored=armored):
                self.assert_passthrough(GW, pgp_mime_message(armored), [ALICE],
                                        "failed; method=openpgp; reason=malformed")

    def test_smime_gcm_tag_flipped(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-gcm")
        tampered = flip(der, -1)            # the last byte of the 16-byte MAC
        # openssl refuses it (before 3.0.21 it writes the plaintext first).
        rc, _plain, _err = inboundtest.cms_decrypt(tampered, IDS.smime[ALICE])
        self.assertNotEqual(rc, 0)
        self.assert_passthrough(GW, smime_message(tampered), [ALICE],
                                "failed; method=smime; reason=integrity", marker=self.marker)

    def test_smime_gcm_ciphertext_flipped(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-gcm")
        tampered = flip(der, -40)           # inside the encrypted content
        rc, _plain, _err = inboundtest.cms_decrypt(tampered, IDS.smime[ALICE])
        self.assertNotEqual(rc, 0)
        self.assert_passthrough(GW, smime_message(tampered), [ALICE],
                                "failed; method=smime; reason=integrity", marker=self.marker)

    def test_smime_cbc_padding_broken(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-cbc")
        # The last byte of the second-to-last ciphertext block: CBC turns
        # it into the padding length inverted (P ^ 0xFF > 16), always bad.
        # (Inverting the last ciphertext byte gives random padding, valid
        # once in about 256 runs.)
        tampered = flip(der, -17)
        rc, _plain, _err = inboundtest.cms_decrypt(tampered, IDS.smime[ALICE])
        self.assertNotEqual(rc, 0)
        self.assert_passthrough(GW, smime_message(tampered, "enveloped-data"), [ALICE],
                                "failed; method=smime; reason=integrity", marker=self.marker)

    def test_smime_truncated(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-gcm")
        for cut in (der[:len(der) // 2], der[:-20]):
            with self.subTest(length=len(cut)):
                self.assert_passthrough(GW, smime_message(cut), [ALICE],
                                        "failed; method=smime; reason=malformed",
                                        marker=self.marker)

    def test_smime_3des_refused_by_default(self):
        der = cms_encrypt(self.entity, [self.alice_cert], "des3")
        rc, plain, err = inboundtest.cms_decrypt(der, IDS.smime[ALICE])
        self.assertEqual(rc, 0, err)
        self.assertIn(self.marker.encode(), plain)
        self.assert_passthrough(GW, smime_message(der, "enveloped-data"), [ALICE],
                                "failed; method=smime; reason=cipher-not-allowed",
                                marker=self.marker)

    def test_smime_rc2_and_des_refused(self):
        for cipher in ("rc2-40", "rc2-128", "des"):
            with self.subTest(cipher=cipher):
                der = cms_encrypt(self.entity, [self.alice_cert], cipher, legacy=True)
                # openssl (with its legacy provider) reads it: a real message.
                cp = smimetest.openssl("cms", "-decrypt", "-binary", "-inform", "DER",
                                       "-provider", "legacy", "-provider", "default",
                                       "-recip", self.alice_cert, "-inkey",
                                       IDS.smime[ALICE].key, input_bytes=der, check=False)
                self.assertIn(self.marker.encode(), cp.stdout)
                self.assert_passthrough(GW, smime_message(der, "enveloped-data"), [ALICE],
                                        "failed; method=smime; reason=cipher-not-allowed",
                                        marker=self.marker)

    def test_smime_cbc_refused_with_require_integrity(self):
        gw = gateway_with("gwint", require_integrity="true")
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-cbc")
        self.assert_passthrough(gw, smime_message(der, "enveloped-data"), [ALICE],
                                "failed; method=smime; reason=no-integrity", marker=self.marker)
        der = cms_encrypt(self.entity, [self.alice_cert], "aes-256-gcm")
        self.assert_decrypted(gw, smime_message(der), [ALICE], self.entity, SMIME_GCM_YES)

    def test_too_large(self):
        gw = gateway_with("gwsmall", max_decrypted_size="4K")
        big = text_entity(self.marker, extra_text="x" * 8000 + "\r\n")
        msg = pgp_mime_message(gpg_encrypt(IDS, big, [ALICE]))
        self.assert_passthrough(gw, msg, [ALICE], "failed; method=openpgp; reason=too-large",
                                marker=self.marker)
        msg = smime_message(cms_encrypt(big, [self.alice_cert]))
        self.assert_passthrough(gw, msg, [ALICE], "failed; method=smime; reason=too-large",
                                marker=self.marker)
        # Below the bound the same gateway decrypts.
        small = text_entity(self.marker)
        self.assert_decrypted(gw, pgp_mime_message(gpg_encrypt(IDS, small, [ALICE])), [ALICE],
                              small, OPENPGP_YES)

    def test_decryption_disabled(self):
        gw = gateway_with("gwoff", decrypt="false")
        msg = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assert_passthrough(gw, msg, [ALICE], "no; reason=disabled", marker=self.marker)


class CompressionBomb(Base):

    def test_one_gib_of_zeros(self):
        gw = gateway_with("gwbomb", max_decrypted_size="10M")
        cmd = ("head -c 1G /dev/zero | gpg --homedir %s --batch --no-tty --trust-model always "
               "--compress-algo zlib --compress-level 9 -z 9 --armor --encrypt -r '<%s>'"
               % (IDS.sender.path, ALICE))
        cp = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=120, check=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        armored = cp.stdout
        self.assertLess(len(armored), 4 * 1024 * 1024, "the bomb does not compress")
        msg = pgp_mime_message(armored)
        inp = os.path.join(gw.dir, "bomb.eml")
        outp = os.path.join(gw.dir, "bomb.out")
        with open(inp, "wb") as f:
            f.write(msg)
        try:
            rc, _stdout, err, maxrss_kib, seconds = inboundtest.run_measured(
                [gw.bin, "process", "-c", gw.policy, "--from", CAROL, "--to", ALICE,
                 "-i", inp, "-o", outp], timeout=120)
            self.assertEqual(rc, 0, err)
            with open(outp, "rb") as f:
                out = f.read()
        finally:
            os.unlink(inp)
            if os.path.exists(outp):
                os.unlink(outp)
        self.assertEqual(status_fields(out)[0], ["failed; method=openpgp; reason=too-large"])
        self.assertTrue(out == expected_passthrough(msg, "failed; method=openpgp; reason=too-large"))
        # sealgate and the gpg it ran stayed small (1 GiB would be needed
        # to hold the plaintext) and did not inflate it all.
        self.assertLess(maxrss_kib, 200 * 1024, "peak RSS %d KiB" % maxrss_kib)
        self.assertLess(seconds, 30, "took %.1f s" % seconds)
        self.assertEqual(gw.spool_entries(), [])


# --------------------------------------------------------------------------


class PartialEncryption(Base):
    """EFAIL: an encrypted part next to sender-controlled parts is never
    decrypted, even when it is for the envelope recipient."""

    def test_pgp_mime_between_html_parts(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        msg = efail_message(pgp_mime_part(armored))
        self.assert_passthrough(GW, msg, [ALICE], PARTIAL, marker=self.marker)

    def test_smime_between_html_parts(self):
        for cipher, stype in (("aes-256-gcm", "authEnveloped-data"),
                              ("aes-256-cbc", "enveloped-data")):
            with self.subTest(cipher=cipher):
                der = cms_encrypt(self.entity, [self.alice_cert], cipher)
                msg = efail_message(smime_part(der, stype))
                self.assert_passthrough(GW, msg, [ALICE], PARTIAL, marker=self.marker)

    def test_inline_armor_between_html_parts(self):
        armored = gpg_encrypt(IDS, ("secret %s\r\n" % self.marker).encode(), [ALICE])
        part = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + armored
        self.assert_passthrough(GW, efail_message(part), [ALICE], PARTIAL, marker=self.marker)

    def test_encrypted_message_attached(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        part = b"Content-Type: message/rfc822\r\n\r\n" + pgp_mime_message(armored)
        self.assert_passthrough(GW, efail_message(part), [ALICE], PARTIAL, marker=self.marker)

    def test_mixed_with_only_the_encrypted_part(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        msg = sgtest.make_message(outer_headers() + [("Content-Type",
                                                      'multipart/mixed; boundary="w"')],
                                  b"--w\r\n" + pgp_mime_part(armored) + b"\r\n--w--\r\n")
        self.assert_passthrough(GW, msg, [ALICE], PARTIAL, marker=self.marker)

    def test_inline_armor_with_text_around_it(self):
        # A text/plain body is inline PGP only when it is one armored
        # message; text before or after it comes from the sender.
        armored = gpg_encrypt(IDS, ("secret %s\r\n" % self.marker).encode(), [ALICE])
        for before, after in ((b"Please read:\r\n\r\n", b"\r\n<img src='http://x.example/\r\n"),
                              (b"", b"\r\nAdditional unexpected text\r\n")):
            with self.subTest(before=before, after=after):
                msg = inline_message(armored, before=before, after=after)
                self.assert_passthrough(GW, msg, [ALICE], PARTIAL, marker=self.marker)


class MalformedMime(Base):

    def test_multipart_without_boundary(self):
        msg = sgtest.make_message(outer_headers() + [("Content-Type", "multipart/mixed")],
                                  "--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n")
        self.assert_passthrough(GW, msg, [ALICE], MALFORMED)

    def test_conflicting_content_types(self):
        msg = sgtest.make_message(outer_headers() + [("Content-Type", "text/plain"),
                                                     ("Content-Type", "text/html")], "hi\r\n")
        self.assert_passthrough(GW, msg, [ALICE], MALFORMED)

    def test_conflicting_boundaries(self):
        msg = sgtest.make_message(
            outer_headers() + [("Content-Type", 'multipart/mixed; boundary="a"; boundary="b"')],
            "--a\r\nContent-Type: text/plain\r\n\r\nhi\r\n--a--\r\n")
        self.assert_passthrough(GW, msg, [ALICE], MALFORMED)

    def test_nesting_too_deep(self):
        depth = 40
        body = "".join('--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
                       % (i, i + 1) for i in range(depth))
        body += "--b%d\r\nContent-Type: text/plain\r\n\r\nhi\r\n" % depth
        body += "".join("--b%d--\r\n" % i for i in range(depth, -1, -1))
        msg = sgtest.make_message(outer_headers() + [("Content-Type",
                                                      'multipart/mixed; boundary="b0"')], body)
        # Too deep to judge: the original is delivered, marked as such.
        self.assert_passthrough(GW, msg, [ALICE], "failed; reason=too-deep")

    def test_pgp_mime_with_a_third_part(self):
        armored = gpg_encrypt(IDS, self.entity, [ALICE])
        msg = pgp_mime_message(armored)
        close = msg.rfind(b"\r\n--enc-")
        boundary = msg[close + 4:msg.index(b"--", close + 4)]
        msg = (msg[:close] + b"\r\n--" + boundary
               + b"\r\nContent-Type: text/html\r\n\r\n<img src=\"http://x.example/\r\n"
               + msg[close:])
        self.assert_passthrough(GW, msg, [ALICE], MALFORMED, marker=self.marker)


if __name__ == "__main__":
    unittest.main()
