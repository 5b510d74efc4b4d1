"""Every outbound action with each method, end to end through one real Postfix.

One private Postfix (tests/lib/postfix.py) calls one `sealgate milter` from
its smtpd and relays what it accepts to smtp-sink. Between the cases the
policy is switched either by rewriting the policy file and sending SIGUSR1
(the milter logs "policy FILE reloaded" and keeps its process id) or by
restarting the milter with the new file. Each policy is

    outbound.default: { action: ACTION, methods: [METHOD, ...] }

with internal_domains [example.com] and trusted_networks [127.0.0.0/8]
(Postfix connects from 127.0.0.1, so alice's mail is outbound), and
signing_networks [127.0.0.0/8]: the Postfix on loopback is a submission host
allowed to sign for its senders without SMTP AUTH (who may sign as whom is
tested in test_postfix_envelope.py).

Keys (the gateway's keystore, filled with `sealgate keys import`):
  alice@example.com      sender: OpenPGP secret key (alice.sec.asc) and an
                         S/MIME certificate + key from the test CA, imported
                         as a PKCS#12 file with --passphrase-file;
  carol@partner.example  OpenPGP public key only;
  dave@partner.example   S/MIME certificate (test CA) only;
  erin@other.example     nothing;
  the test CA            --trust-anchor.

Independent checkers, never sealgate's own code:
  - gpg --decrypt in carol's GnuPG home (which also holds alice's public key);
  - gpg --verify in a home that holds only alice's public key;
  - openssl cms -decrypt with dave's certificate and key;
  - openssl cms -verify with the test CA as the only trust anchor (detached
    signature over the exact first part, and the whole message), and gpgsm
    --verify in a home that trusts the test CA.

Cases (the switch used to reach the policy in brackets):
  a) encrypt / openpgp to carol [SIGUSR1]: PGP/MIME; gpg decrypts it to the
     original entity; no signature inside.
  b) encrypt / smime to dave [restart]: application/pkcs7-mime,
     smime-type=enveloped-data (AES-256-CBC: dave's capabilities are
     unknown); openssl decrypts it with dave's key to the original entity.
  c) sign / openpgp to erin [restart]: multipart/signed (pgp-sha256), gpg
     verifies alice's signature over the unchanged original entity.
  d) sign / smime to erin [SIGUSR1]: multipart/signed (sha-256), openssl and
     gpgsm verify alice's signature (chain to the test CA).
  e) sign-encrypt / openpgp to carol [restart]: PGP/MIME; gpg --decrypt
     reports a good signature by alice's key and yields the original entity.
  f) sign-encrypt / smime to dave [SIGUSR1]: enveloped-data; openssl
     decrypts it to a multipart/signed entity that openssl cms -verify (and
     gpgsm) verify as alice's, carrying the original entity.
  g) encrypt with methods [openpgp, smime] [SIGUSR1]: dave (S/MIME
     certificate only) gets S/MIME, carol (OpenPGP key only) gets PGP/MIME.
Every delivered copy keeps the outer Subject, From, To and Message-ID; the
body's marker never appears in the delivered bytes of an encrypted message,
nor in sealgate's log. sealgate's log line for the message names the action,
the method and the fingerprints of the keys used.
"""

import os
import re
import signal
import unittest

import miltertest
import sgtest
import signtest
import smimetest
from miltertest import ALICE, CAROL, header, make_msg, marker, strip_added_received, \
    with_diagnostics
from sgtest import canon, split_header_body

DAVE = "dave@partner.example"       # S/MIME certificate only
ERIN = "erin@other.example"         # no key, no certificate
P12_PASSPHRASE = "p12-Sgtest-Passw0rd"
KEPT_FIELDS = ("Subject", "From", "To", "Message-ID")
SIGN_STATUS = ("NEWSIG", "GOODSIG", "VALIDSIG", "BADSIG", "ERRSIG", "EXPSIG",
               "EXPKEYSIG", "REVKEYSIG")
ENV_OID = "pkcs7-envelopedData"

STATE = {}

BINARY = miltertest.require_tools()
for _prog in ("swaks", "openssl", "gpgsm"):
    sgtest.require_program(_prog)


# --------------------------------------------------------------------------
# Policies


def policy(action, methods):
    return ("version: 1\n"
            "gateway: { keystore: \"store\", spool_dir: \"spool\", "
            "trusted_networks: [127.0.0.0/8], signing_networks: [127.0.0.0/8] }\n"
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { action: %s, methods: [%s] }\n"
            % (action, ", ".join(methods)))


POLICY_START = policy("none", ["openpgp"])
POLICY_ENCRYPT_PGP = policy("encrypt", ["openpgp"])
POLICY_ENCRYPT_SMIME = policy("encrypt", ["smime"])
POLICY_SIGN_PGP = policy("sign", ["openpgp"])
POLICY_SIGN_SMIME = policy("sign", ["smime"])
POLICY_SE_PGP = policy("sign-encrypt", ["openpgp"])
POLICY_SE_SMIME = policy("sign-encrypt", ["smime"])
POLICY_ENCRYPT_BOTH = policy("encrypt", ["openpgp", "smime"])
ALL_POLICIES = (POLICY_ENCRYPT_PGP, POLICY_ENCRYPT_SMIME, POLICY_SIGN_PGP,
                POLICY_SIGN_SMIME, POLICY_SE_PGP, POLICY_SE_SMIME,
                POLICY_ENCRYPT_BOTH)


# --------------------------------------------------------------------------
# Module set-up


def keys_import(gw, *args):
    cp = gw.run("keys", "-c", gw.policy, "import", *args)
    if cp.returncode != 0:
        raise RuntimeError("sealgate keys import %s failed (%d): %s%s"
                           % (" ".join(args), cp.returncode, cp.stdout, cp.stderr))
    return cp


def setUpModule():
    # tmp (0755), carol's GnuPG home with a new key, the gateway with her
    # public key; every policy of this file passes `sealgate policy check`.
    miltertest.set_up_gateway(STATE, "sgpa", POLICY_START, check=ALL_POLICIES)
    tmp, gw, carol = STATE["tmp"], STATE["gw"], STATE["carol"]

    ca = smimetest.TestCA(os.path.join(tmp, "ca"), key="rsa:2048")
    dave_x = ca.issue("Dave Partner", [DAVE], key="rsa:2048")
    alice_x = ca.issue("Alice Example", [ALICE], key="rsa:2048")

    alice_pgp = sgtest.GpgHome(os.path.join(tmp, "alice"))
    alice_fpr = alice_pgp.gen_key("Alice Example", ALICE)
    alice_pub = alice_pgp.export_public(ALICE)
    secret = signtest.write(os.path.join(tmp, "alice.sec.asc"),
                            alice_pgp.export_secret(ALICE))
    # The signing key must come from the keystore, not from this home.
    alice_pgp.kill()
    verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
    verifier.import_keys(alice_pub)
    carol.import_keys(alice_pub)

    keys_import(gw, "--trust-anchor", ca.cert)
    pw = signtest.write(os.path.join(tmp, "p12.pw"), P12_PASSPHRASE + "\n")
    keys_import(gw, alice_x.pkcs12(P12_PASSPHRASE), "--passphrase-file", pw)
    keys_import(gw, secret)
    keys_import(gw, dave_x.cert)

    STATE.update(ca=ca, dave_x=dave_x, alice_x=alice_x, alice_fpr=alice_fpr,
                 carol_fpr=carol.fingerprint(CAROL),
                 verifier=verifier,
                 gpgsm=signtest.gpgsm_home(os.path.join(tmp, "gsm"), ca),
                 scratch=signtest.Scratch(os.path.join(tmp, "chk")))
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    for name in ("verifier", "gpgsm"):
        home = STATE.get(name)
        if home is not None:
            sgtest.kill_agents_under(home.path)


# --------------------------------------------------------------------------


class PostfixActions(miltertest.MilterTestCase):

    state = STATE

    def setUp(self):
        super().setUp()
        self.scratch = STATE["scratch"]
        self.ca = STATE["ca"]
        self.dave_x = STATE["dave_x"]
        self.alice_x = STATE["alice_x"]
        self.alice_fpr = STATE["alice_fpr"]
        self.carol_fpr = STATE["carol_fpr"]

    def extra_diagnostics(self):
        try:
            with open(self.gw.policy) as f:
                text = f.read()
        except OSError:
            text = ""
        return "--- policy file ---\n%s" % text

    # -- switching the policy -------------------------------------------

    def write_policy(self, text):
        tmp = self.gw.policy + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.gw.policy)

    def switch_by_reload(self, text):
        """Rewrite the policy file and send SIGUSR1; the same process logs
        "policy FILE reloaded"."""
        self.assertTrue(self.milter.running())
        pid = self.milter.proc.pid
        self.log_mark = self.milter.log_size()
        self.write_policy(text)
        self.milter.proc.send_signal(signal.SIGUSR1)
        m = self.wait_sealgate_log(r"policy %s reloaded" % re.escape(self.gw.policy),
                                   timeout=10)
        log = self.milter.log_since(self.log_mark)
        self.assertIsNotNone(m, "no reload logged after SIGUSR1:\n%s" % log)
        self.assertNotIn("previous policy stays in force", log)
        self.assertTrue(self.milter.running(), "sealgate exited on SIGUSR1:\n%s" % log)
        self.assertEqual(self.milter.proc.pid, pid, "sealgate was restarted, not reloaded")

    def switch_by_restart(self, text):
        """Stop the milter (SIGTERM), rewrite the policy file, start it."""
        old_pid = self.milter.proc.pid if self.milter.running() else None
        self.assertIn(self.milter.stop(), (0, None),
                      "sealgate did not exit cleanly on SIGTERM")
        self.write_policy(text)
        self.log_mark = self.milter.log_size()
        self.milter.start()
        self.assertNotEqual(self.milter.proc.pid, old_pid)
        m = self.wait_sealgate_log(r"listening on \S+, policy %s"
                                   % re.escape(self.gw.policy), timeout=10)
        self.assertIsNotNone(m, "no start-up line:\n%s"
                             % self.milter.log_since(self.log_mark))

    # -- delivering and common checks -----------------------------------

    def deliver(self, rcpt, msg):
        """Send msg from alice to rcpt through Postfix's smtpd (with the
        milter); return (queue id, the one copy the sink receives)."""
        self.pf.sink.clear()
        qid, _transcript = self.submit([rcpt], msg)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].mail_from, ALICE)
        self.assertEqual(msgs[0].rcpts, [rcpt])
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())
        return qid, msgs[0]

    def check_delivered(self, qid, orig, got, secret, action, method, keys, encrypted):
        """Outer fields kept, marker absent from encrypted copies (every
        byte smtp-sink wrote) and from sealgate's log, and sealgate's log
        line for qid names the action, the method and the fingerprints of
        the keys used (recipients' and signer's). Returns the delivered
        message without Postfix's Received: field, in CRLF form."""
        for name in KEPT_FIELDS:
            self.assertEqual(header(got, name), header(orig, name), "%s changed" % name)
        if encrypted:
            self.assertNotIn(secret.encode(), got.raw,
                             "plaintext marker in the delivered bytes")
            self.assertNotIn(b"BEGIN PGP SIGNED MESSAGE", got.raw)
        else:
            self.assertIn(secret.encode(), bytes(got))
        m = self.wait_sealgate_log(
            r"(?m)^[^\n]* %s: from=<%s> [^\n]*\bverdict=accept\b[^\n]*$"
            % (re.escape(qid), re.escape(ALICE)), timeout=10)
        log = self.milter.log_since(self.log_mark)
        self.assertIsNotNone(m, "no accept line for %s in sealgate's log:\n%s" % (qid, log))
        self.assertIn(" action=%s " % action, m.group(0))
        self.assertIn(" method=%s " % method, m.group(0))
        used = re.search(r" keys=(\S+) ", m.group(0))
        self.assertIsNotNone(used, m.group(0))
        self.assertEqual(set(used.group(1).upper().split(",")), set(keys), m.group(0))
        self.assertNotIn(secret, log, "message content in sealgate's log")
        return canon(strip_added_received(bytes(got)))

    def assert_same_entity(self, original, entity, what):
        """entity is the original's Content-* fields (modulo folding) and
        body, byte for byte (CRLF form)."""
        ef, eb = split_header_body(sgtest.expected_entity(original))
        gf, gb = split_header_body(entity)
        self.assertEqual(sgtest.norm_fields(gf), sgtest.norm_fields(ef),
                         "Content-* fields of the %s differ from the original" % what)
        self.assertTrue(gb == eb, "the %s body differs from the original body "
                        "(%d vs %d bytes)" % (what, len(gb), len(eb)))

    # -- OpenPGP checks ---------------------------------------------------

    def pgp_decrypt(self, out):
        """gpg --decrypt in carol's home of the PGP/MIME message out:
        (plaintext, status text)."""
        _control, armored = sgtest.pgp_mime_parts(out)
        rc, plain, text = self.carol.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, text),
                        "gpg --decrypt failed (%d): %s" % (rc, text))
        self.assertEqual(rc, 0, text)
        self.assertTrue(signtest.status_args(text, "DECRYPTION_OKAY"), text)
        return plain, text

    def assert_pgp_encrypted(self, orig, got, out, secret):
        signtest.assert_outer_fields_kept(self, canon(orig), out, "multipart/encrypted")
        self.assertNotIn(b"multipart/signed", got.raw.lower())
        plain, text = self.pgp_decrypt(out)
        self.assertIn(secret.encode(), plain)
        self.assert_same_entity(orig, plain, "decrypted entity")
        return plain, text

    # -- S/MIME checks ----------------------------------------------------

    def smime_decrypt(self, orig, out):
        """out is an enveloped-data S/MIME message (AES-256-CBC, one RSA
        key transport recipient info); openssl cms -decrypt with dave's key
        gives the plaintext, returned."""
        der = smimetest.smime_der(self, canon(orig), out, "enveloped-data")
        text = smimetest.cms_print(der)
        self.assertEqual(smimetest.cms_content_type(text), ENV_OID, text)
        self.assertEqual(smimetest.cms_content_cipher(text), "aes-256-cbc", text)
        self.assertEqual(smimetest.cms_recipient_infos(text),
                         [("ktri", "rsaEncryption")], text)
        rc, plain, err = smimetest.cms_decrypt(der, self.dave_x)
        self.assertEqual(rc, 0, "openssl cms -decrypt with dave's key failed: %s" % err)
        self.assertEqual(plain, canon(plain), "decrypted entity is not CRLF-canonical")
        return plain

    def assert_smime_encrypted(self, orig, out, secret):
        plain = self.smime_decrypt(orig, out)
        self.assertIn(secret.encode(), plain)
        self.assert_same_entity(orig, plain, "decrypted entity")
        return plain

    # -- a) encrypt / OpenPGP ----------------------------------------------

    @with_diagnostics
    def test_a_encrypt_openpgp(self):
        self.switch_by_reload(POLICY_ENCRYPT_PGP)
        secret = marker()
        orig = make_msg(CAROL, secret, subject="encrypt openpgp")
        qid, got = self.deliver(CAROL, orig)
        out = self.check_delivered(qid, orig, got, secret, "encrypt", "openpgp",
                                   [self.carol_fpr], True)
        # The shared check: PGP/MIME, other fields kept, decrypts to the
        # original in carol's home.
        self.assert_encrypted_copy(got, orig, secret)
        _plain, text = self.assert_pgp_encrypted(orig, got, out, secret)
        self.assertEqual([kw for kw, _a in signtest.status_lines(text)
                          if kw in SIGN_STATUS], [],
                         "action encrypt made a signature: %s" % text)

    # -- b) encrypt / S/MIME -----------------------------------------------

    @with_diagnostics
    def test_b_encrypt_smime(self):
        self.switch_by_restart(POLICY_ENCRYPT_SMIME)
        secret = marker()
        orig = make_msg(DAVE, secret, subject="encrypt smime")
        qid, got = self.deliver(DAVE, orig)
        out = self.check_delivered(qid, orig, got, secret, "encrypt", "smime",
                                   [self.dave_x.fpr], True)
        plain = self.assert_smime_encrypted(orig, out, secret)
        self.assertNotIn(b"multipart/signed", plain.lower(),
                         "action encrypt made a signature")

    # -- c) sign / OpenPGP -------------------------------------------------

    @with_diagnostics
    def test_c_sign_openpgp(self):
        self.switch_by_restart(POLICY_SIGN_PGP)
        secret = marker()
        orig = make_msg(ERIN, secret, subject="sign openpgp")
        qid, got = self.deliver(ERIN, orig)
        out = self.check_delivered(qid, orig, got, secret, "sign", "openpgp",
                                   [self.alice_fpr], False)
        signtest.assert_outer_fields_kept(self, canon(orig), out, "multipart/signed")
        s = signtest.assert_pgp_verifies(self, self.scratch, out, STATE["verifier"],
                                         self.alice_fpr)
        self.assert_same_entity(orig, s.content, "signed part")

    # -- d) sign / S/MIME --------------------------------------------------

    @with_diagnostics
    def test_d_sign_smime(self):
        self.switch_by_reload(POLICY_SIGN_SMIME)
        secret = marker()
        orig = make_msg(ERIN, secret, subject="sign smime")
        qid, got = self.deliver(ERIN, orig)
        out = self.check_delivered(qid, orig, got, secret, "sign", "smime",
                                   [self.alice_x.fpr], False)
        signtest.assert_outer_fields_kept(self, canon(orig), out, "multipart/signed")
        s = signtest.assert_smime_verifies(self, self.scratch, out, self.ca,
                                           STATE["gpgsm"], self.alice_x)
        self.assert_same_entity(orig, s.content, "signed part")

    # -- e) sign-encrypt / OpenPGP -----------------------------------------

    @with_diagnostics
    def test_e_sign_encrypt_openpgp(self):
        self.switch_by_restart(POLICY_SE_PGP)
        secret = marker()
        orig = make_msg(CAROL, secret, subject="sign-encrypt openpgp")
        qid, got = self.deliver(CAROL, orig)
        out = self.check_delivered(qid, orig, got, secret, "sign-encrypt", "openpgp",
                                   [self.carol_fpr, self.alice_fpr], True)
        _plain, text = self.assert_pgp_encrypted(orig, got, out, secret)
        good = signtest.status_args(text, "GOODSIG")
        self.assertEqual(len(good), 1, "no good signature inside: %s" % text)
        self.assertIn("<%s>" % ALICE, " ".join(good[0]), text)
        valid = signtest.status_args(text, "VALIDSIG")
        self.assertEqual([v[9].upper() for v in valid], [self.alice_fpr], text)
        self.assertFalse(signtest.status_args(text, "BADSIG")
                         or signtest.status_args(text, "ERRSIG"), text)

    # -- f) sign-encrypt / S/MIME ------------------------------------------

    @with_diagnostics
    def test_f_sign_encrypt_smime(self):
        self.switch_by_reload(POLICY_SE_SMIME)
        secret = marker()
        orig = make_msg(DAVE, secret, subject="sign-encrypt smime")
        qid, got = self.deliver(DAVE, orig)
        out = self.check_delivered(qid, orig, got, secret, "sign-encrypt", "smime",
                                   [self.dave_x.fpr, self.alice_x.fpr], True)
        plain = self.smime_decrypt(orig, out)
        # Inside: a multipart/signed entity (Content-* fields only) that
        # openssl cms -verify -CAfile (and gpgsm) verify as alice's.
        fields, _body = split_header_body(plain)
        self.assertTrue(all(sgtest.is_content_field(n) for n, _v in fields),
                        "non-Content fields in the inner entity: %r" % fields)
        s = signtest.assert_smime_verifies(self, self.scratch, plain, self.ca,
                                           STATE["gpgsm"], self.alice_x)
        self.assertIn(secret.encode(), s.content)
        self.assert_same_entity(orig, s.content, "signed part")

    # -- g) methods [openpgp, smime] -----------------------------------------

    @with_diagnostics
    def test_g_encrypt_method_by_recipient_key(self):
        self.switch_by_reload(POLICY_ENCRYPT_BOTH)
        listing = self.gw.list_keys()
        self.assertEqual(listing.returncode, 0, listing.stderr)
        dave_lines = [ln.split() for ln in listing.stdout.splitlines()
                      if ln.split()[:1] == [DAVE]]
        self.assertTrue(dave_lines, listing.stdout)
        self.assertEqual({ln[1] for ln in dave_lines}, {"smime"},
                         "dave should have an S/MIME certificate only:\n%s" % listing.stdout)

        # dave has only an S/MIME certificate: S/MIME.
        secret = marker()
        orig = make_msg(DAVE, secret, subject="encrypt either method (dave)")
        qid, got = self.deliver(DAVE, orig)
        out = self.check_delivered(qid, orig, got, secret, "encrypt", "smime",
                                   [self.dave_x.fpr], True)
        self.assertNotIn(b"-----BEGIN PGP", got.raw)
        self.assert_smime_encrypted(orig, out, secret)

        # carol has only an OpenPGP key: PGP/MIME.
        self.log_mark = self.milter.log_size()
        secret = marker()
        orig = make_msg(CAROL, secret, subject="encrypt either method (carol)")
        qid, got = self.deliver(CAROL, orig)
        out = self.check_delivered(qid, orig, got, secret, "encrypt", "openpgp",
                                   [self.carol_fpr], True)
        self.assertNotIn(b"pkcs7-mime", got.raw.lower())
        self.assert_pgp_encrypted(orig, got, out, secret)


if __name__ == "__main__":
    unittest.main()
