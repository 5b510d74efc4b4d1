"""Inbound decryption under attack (DESIGN.md §4 rule 3), with `sealgate
process` and messages built with the real gpg and openssl.

Only the envelope recipient's own key opens a message, whatever key ids or
RecipientInfos it carries:
  - OpenPGP: a session key packet for alice (a real one copied from another
    message, or garbage carrying her key id) in front of a message that only
    bob's key opens; hidden key ids (throw-keyids) meant for bob alone;
    alice and bob as envelope recipients in either order;
  - S/MIME: a garbage RecipientInfo for alice, or a real one copied from
    another message, next to bob's real one.
In every case a shared keyring (gpg holding both secret keys) or openssl
with bob's key does read the message -- the hazard is real -- and sealgate
delivers it as it came, with the plaintext nowhere.

Integrity of everything decrypted:
  - CMS parameters are checked by sealgate before OpenSSL sees them
    (CVE-2026-34182): an AES-GCM ICV length rewritten to 1, a 1-byte tag
    tried with all 256 values on a modified ciphertext, a nonce of another
    length, AES-GCM inside EnvelopedData, CBC inside AuthEnvelopedData, a
    CBC IV of the wrong length: all `failed; method=smime;
    reason=malformed`, never decrypted;
  - header field names inside decrypted mail are validated: a CR, a space
    or a control character makes the whole message `failed;
    reason=malformed`, delivered as it came.
"""

import os
import unittest

import der
import inboundtest
import sgtest
import smimetest
from inboundtest import ALICE, BOB, InboundCase, alternative_entity, cms_encrypt, \
    garbled, gpg_encrypt, inbound_policy, new_marker, pgp_mime_message, pkesks, \
    process, recipient_info_of, smime_message, spliced, status_fields

OPENPGP_YES = "yes; method=openpgp; integrity=mdc"
SMIME_GCM_YES = "yes; method=smime; integrity=aead"
SMIME_MALFORMED = "failed; method=smime; reason=malformed"


def setUpModule():
    global IDS, GW, GW_CBC, TMP, SHARED
    smimetest.require_tools()
    sgtest.require_program("gpg")
    TMP = sgtest.tmpdir("sgiso")
    IDS = inboundtest.Identities(TMP)
    GW = IDS.gateway(os.path.join(TMP, "gw"), inbound_policy())
    # CBC accepted as it is: the recipients' plaintexts are compared.
    GW_CBC = inboundtest.variant(GW, os.path.join(TMP, "gwcbc"),
                                 inbound_policy(require_integrity="false"))
    # What a gateway with one keyring for everyone would do.
    SHARED = sgtest.GpgHome(os.path.join(TMP, "shared"))
    for addr in (ALICE, BOB):
        with open(IDS.sec_files[addr], "rb") as f:
            SHARED.import_keys(f.read())


def tearDownModule():
    IDS.kill_agents()
    SHARED.kill()


class Isolation(unittest.TestCase, InboundCase):

    def setUp(self):
        self.marker = new_marker()
        self.entity = alternative_entity(self.marker)

    def assert_not_decrypted(self, msg, rcpts, gw=None):
        """sealgate delivers msg to rcpts as it came, not decrypted, with
        the plaintext nowhere; returns the X-Sealgate-Decrypted value."""
        gw = gw or GW
        rc, out, err = process(gw, msg, rcpts)
        self.assertEqual(rc, 0, err)
        self.assertIsNotNone(out, err)
        status = status_fields(out)[0]
        self.assertEqual(len(status), 1, status)
        self.assertFalse(status[0].startswith("yes"),
                         "decrypted for %s: %s" % (rcpts, status[0]))
        self.check_passthrough(out, msg, status[0], signature=None)
        self.assert_no_marker(self.marker, out, err, gw)
        return status[0]

    def shared_keyring_reads(self, armored):
        rc, plain, err = SHARED.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        self.assertIn(self.marker.encode(), plain)

    # ------------------------------------------------------------------
    # OpenPGP

    def test_real_session_key_packet_for_alice_spliced(self):
        for_bob = gpg_encrypt(IDS, self.entity, [BOB])
        other = gpg_encrypt(IDS, b"another message\r\n", [ALICE])
        attack = spliced(pkesks(other), for_bob)
        self.shared_keyring_reads(attack)
        msg = pgp_mime_message(attack)
        for rcpts in ([ALICE], [ALICE, BOB], [BOB, ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assert_not_decrypted(msg, rcpts)
        # The message itself is sound: bob, alone, reads it.
        self.assert_decrypted(GW, msg, [BOB], self.entity, OPENPGP_YES)

    def test_garbage_session_key_packet_for_alice(self):
        for_bob = gpg_encrypt(IDS, self.entity, [BOB])
        other = gpg_encrypt(IDS, b"another message\r\n", [ALICE])
        attack = spliced([garbled(p) for p in pkesks(other)], for_bob)
        self.shared_keyring_reads(attack)
        msg = pgp_mime_message(attack)
        for rcpts in ([ALICE], [ALICE, BOB], [BOB, ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assert_not_decrypted(msg, rcpts)

    def test_hidden_key_ids_for_bob_only(self):
        hidden = gpg_encrypt(IDS, self.entity, [BOB], extra=["--throw-keyids"])
        self.assertEqual(sgtest.pkesk_keyids(IDS.bob.list_packets(hidden)),
                         ["0000000000000000"])
        self.shared_keyring_reads(hidden)
        msg = pgp_mime_message(hidden)
        for rcpts in ([ALICE], [ALICE, BOB], [BOB, ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assertEqual(self.assert_not_decrypted(msg, rcpts),
                                 "no; reason=not-for-recipient")
        self.assert_decrypted(GW, msg, [BOB], self.entity, OPENPGP_YES)

    def test_hidden_key_ids_for_both(self):
        hidden = gpg_encrypt(IDS, self.entity, [ALICE, BOB], extra=["--throw-keyids"])
        msg = pgp_mime_message(hidden)
        for rcpts in ([ALICE, BOB], [BOB, ALICE], [ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assert_decrypted(GW, msg, rcpts, self.entity, OPENPGP_YES)

    def test_every_recipient_needs_their_own_key(self):
        for_alice = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        for rcpts in ([ALICE, BOB], [BOB, ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assertEqual(self.assert_not_decrypted(for_alice, rcpts),
                                 "no; reason=not-for-recipient")
        both = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE, BOB]))
        self.assert_decrypted(GW, both, [BOB, ALICE], self.entity, OPENPGP_YES)

    def test_passphrase_packet_next_to_the_recipients(self):
        # gpg --encrypt --symmetric: a passphrase's session key packet too;
        # it is never tried, alice's own key opens the message.
        both = gpg_encrypt(IDS, self.entity, [ALICE], extra=[
            "--symmetric", "--pinentry-mode", "loopback", "--passphrase", "not-used"])
        self.assertIn("symkey enc packet", IDS.alice.list_packets(both))
        self.assert_decrypted(GW, pgp_mime_message(both), [ALICE], self.entity, OPENPGP_YES)

    def test_a_recipient_named_twice(self):
        both = pgp_mime_message(gpg_encrypt(IDS, self.entity, [ALICE]))
        self.assert_decrypted(GW, both, [ALICE, ALICE, ALICE.upper()], self.entity,
                              OPENPGP_YES)
        der_bytes = cms_encrypt(self.entity, [IDS.smime[ALICE].cert])
        self.assert_decrypted(GW, smime_message(der_bytes), [ALICE, ALICE], self.entity,
                              SMIME_GCM_YES)

    # ------------------------------------------------------------------
    # S/MIME

    def smime_pair(self, cipher="aes-256-gcm"):
        return cms_encrypt(self.entity, [IDS.smime[BOB].cert, IDS.smime[ALICE].cert],
                           cipher)

    def openssl_as_bob_reads(self, der_bytes):
        rc, plain, err = inboundtest.cms_decrypt(der_bytes, IDS.smime[BOB])
        self.assertEqual(rc, 0, err)
        self.assertIn(self.marker.encode(), plain)

    def test_garbage_recipient_info_for_alice(self):
        cms = der.Cms(self.smime_pair())
        ri = cms.recipient_infos[recipient_info_of(cms, IDS.smime[ALICE])]
        key = ri.children[-1]                          # her encryptedKey
        key.value = bytes(b ^ 0x5A for b in key.value)
        attack = cms.encode()
        self.openssl_as_bob_reads(attack)
        msg = smime_message(attack)
        for rcpts in ([BOB, ALICE], [ALICE, BOB], [ALICE]):
            with self.subTest(rcpts=rcpts):
                self.assert_not_decrypted(msg, rcpts)
        self.assert_decrypted(GW, msg, [BOB], self.entity, SMIME_GCM_YES)

    def test_real_recipient_info_for_alice_spliced(self):
        for cipher, smime_type, gw in (("aes-256-gcm", "authEnveloped-data", GW),
                                       ("aes-256-cbc", "enveloped-data", GW_CBC)):
            with self.subTest(cipher=cipher):
                cms = der.Cms(self.smime_pair(cipher))
                other = der.Cms(cms_encrypt(b"Content-Type: text/plain\r\n\r\nother\r\n",
                                            [IDS.smime[ALICE].cert], cipher))
                cms.recipient_infos[recipient_info_of(cms, IDS.smime[ALICE])] = \
                    other.recipient_infos[0]
                attack = cms.encode()
                self.openssl_as_bob_reads(attack)
                msg = smime_message(attack, smime_type)
                for rcpts in ([BOB, ALICE], [ALICE, BOB], [ALICE]):
                    with self.subTest(rcpts=rcpts):
                        self.assert_not_decrypted(msg, rcpts, gw)

    # ------------------------------------------------------------------
    # CMS parameters (CVE-2026-34182)

    def gcm(self):
        return der.Cms(cms_encrypt(self.entity, [IDS.smime[ALICE].cert], "aes-256-gcm"))

    def assert_malformed(self, der_bytes, smime_type="authEnveloped-data"):
        msg = smime_message(der_bytes, smime_type)
        self.assertEqual(self.assert_not_decrypted(msg, [ALICE]), SMIME_MALFORMED)

    def test_streamed_ber_passes_the_checks(self):
        # Indefinite lengths (openssl -stream, as streaming senders write):
        # the parameter checks read BER too, and sound messages decrypt.
        for cipher, smime_type, gw, status in (
                ("aes-256-gcm", "authEnveloped-data", GW, SMIME_GCM_YES),
                ("aes-128-gcm", "authEnveloped-data", GW, SMIME_GCM_YES),
                ("aes-256-cbc", "enveloped-data", GW_CBC, "yes; method=smime; integrity=none")):
            with self.subTest(cipher=cipher):
                ber = smimetest.openssl("cms", "-encrypt", "-binary", "-stream", "-outform",
                                        "DER", "-" + cipher, IDS.smime[ALICE].cert,
                                        input_bytes=self.entity).stdout
                self.assertEqual(ber[1], 0x80, "not an indefinite length")
                self.assert_decrypted(gw, smime_message(ber, smime_type), [ALICE],
                                      self.entity, status)

    def test_gcm_icv_length_rewritten(self):
        cms = self.gcm()
        params = cms.algorithm[1]
        self.assertEqual(params[1].value, b"\x10")    # openssl writes 16
        params[1].value = b"\x01"
        self.assert_malformed(cms.encode())

    def test_one_byte_tag_tried_256_times(self):
        cms = self.gcm()
        cms.algorithm[1][1].value = b"\x01"
        body = bytearray(cms.ciphertext.value)
        body[len(body) // 2] ^= 0x01                   # the forged content
        cms.ciphertext.value = bytes(body)
        statuses = set()
        for tag in range(256):
            cms.mac.value = bytes([tag])
            msg = smime_message(cms.encode())
            rc, out, err = process(GW, msg, [ALICE])
            self.assertEqual(rc, 0, err)
            statuses.update(status_fields(out)[0])
            self.assertNotIn(self.marker.encode(), out)
        self.assertEqual(statuses, {SMIME_MALFORMED})

    def test_gcm_nonce_length(self):
        for nonce in (b"\x00" * 8, b"\x00" * 16, b""):
            with self.subTest(nonce=len(nonce)):
                cms = self.gcm()
                cms.algorithm[1][0].value = nonce
                self.assert_malformed(cms.encode())

    def test_gcm_mac_length_differs_from_icv_length(self):
        cms = self.gcm()
        cms.mac.value = cms.mac.value[:12]
        self.assert_malformed(cms.encode())

    def test_gcm_inside_enveloped_data(self):
        # No MAC field at all: a decryptor that takes the algorithm's word
        # for integrity would check no tag.
        cms = self.gcm()
        cms.root[0].value = der.ENVELOPED_DATA
        cms.body.children.pop()                        # the MAC
        for smime_type in ("enveloped-data", "authEnveloped-data"):
            with self.subTest(smime_type=smime_type):
                self.assert_malformed(cms.encode(), smime_type)

    def test_cbc_inside_auth_enveloped_data(self):
        cms = der.Cms(cms_encrypt(self.entity, [IDS.smime[ALICE].cert], "aes-256-cbc"))
        cms.root[0].value = der.AUTH_ENVELOPED_DATA
        cms.body.children.append(der.Node(der.OCTET_STRING, value=b"\x00" * 16))
        self.assert_malformed(cms.encode())

    def test_cbc_iv_length(self):
        cms = der.Cms(cms_encrypt(self.entity, [IDS.smime[ALICE].cert], "aes-256-cbc"))
        self.assertEqual(len(cms.algorithm[1].value), 16)
        cms.algorithm[1].value = cms.algorithm[1].value[:8]
        msg = smime_message(cms.encode(), "enveloped-data")
        self.assertEqual(self.assert_not_decrypted(msg, [ALICE], GW_CBC), SMIME_MALFORMED)

    # ------------------------------------------------------------------
    # Header fields inside decrypted mail

    def test_bad_field_names_inside(self):
        body = ("\r\nHello " + self.marker + "\r\n").encode()
        for name, head in (
                ("CR in a name", b"Content-Type: text/plain\r\nContent-Evil\rX-Injected: 1\r\n"),
                ("space in a name", b"Content Type: text/plain\r\n"),
                ("control character", b"Content-Type: text/plain\r\nContent-\x01Id: 1\r\n"),
                ("control in a value", b"Content-Type: text/plain\x0b; charset=utf-8\r\n"),
                ("DEL in a name", b"Content-Type\x7f: text/plain\r\n"),
                ("a line that is no field", b"Content-Type: text/plain\r\nno field here\r\n"),
                ("Content-Type twice",
                 b"Content-Type: text/html\r\nContent-Type: text/plain\r\n"),
                ("a value longer than an MTA takes",
                 b"Content-Type: text/plain\r\nContent-Description: " + b"x" * 120000
                 + b"\r\n")):
            with self.subTest(name):
                armored = gpg_encrypt(IDS, head + body, [ALICE])
                msg = pgp_mime_message(armored)
                self.assertEqual(self.assert_not_decrypted(msg, [ALICE]),
                                 "failed; method=openpgp; reason=malformed")


if __name__ == "__main__":
    sgtest.require_binary()
    unittest.main()
