"""Envelope forms and the signer check through a real Postfix (DESIGN.md §4
rules 7 and 8).

A private Postfix (tests/lib/postfix.py, smtputf8_enable = yes, SMTP AUTH
against a small Dovecot-protocol server: tests/lib/saslauth.py) calls
`sealgate milter` and relays to smtp-sink. The client here writes every
envelope command itself, byte for byte (smtplib's docmd), so that Postfix
gets exactly the forms below. What Postfix passes to the milter was measured
with a probe milter (Postfix 3.7): argv[0] of MAIL and RCPT is the client's
text as written (trailing dot, quotes, source route, letter case, U-label
all kept), while Postfix itself resolves and delivers the plain address --
so sealgate must canonicalise.

Keys: carol@partner.example and carol@xn--bcher-kva.example (public keys in
the keystore, secret keys in carol's home, where every copy is decrypted);
alice@example.com's OpenPGP secret key (her public key in a verifier home).
nokey@ at both partner domains has no key. Clients on 127.0.0.0/8 are
trusted; signing_networks is empty.

Policy: rule "partner" (recipient_domain partner.example, bücher.example)
encrypts and rejects without a key; "must-sign" (signed@other.example)
signs and rejects when it cannot.

  a) RCPT TO a keyless partner written with a trailing dot, quoted, with a
     source route, an upper-case domain, an IDN domain as U-label (SMTPUTF8)
     and as A-label: 550 5.7.1 after DATA naming the canonical address;
     nothing reaches the sink.
  b) the same forms for carol (except the U-label, see test_b): delivered
     encrypted to the plain address; gpg decrypts it to the original.
  c) MAIL FROM:<alice@example.com.> (and quoted, source-routed) counts as
     outbound: the keyless partner is refused, carol gets encrypted mail.
  d) a form Postfix accepts but that is no address sealgate can resolve (an
     invalid A-label) is refused with 553 5.1.3 at RCPT time, and so is a
     local part Postfix may route elsewhere (%, !, a quoted @).
  e) SMTP AUTH as bob with MAIL FROM alice: refused with 550 naming alice
     and why; AUTH as alice: signed, gpg verifies alice's signature; no
     AUTH from the trusted network: refused (not in signing_networks).
"""

import os
import re
import smtplib
import unittest

import miltertest
import signtest
import sgtest
from miltertest import ALICE, CAROL, make_msg, marker, with_diagnostics
from saslauth import DovecotAuthServer

CAROL_IDN = "carol@xn--bcher-kva.example"
NOKEY = "nokey@partner.example"
NOKEY_IDN = "nokey@xn--bcher-kva.example"
SIGNED = "signed@other.example"
PASSWORDS = {"alice": "alice-pw-sg", "bob": "bob-pw-sg"}

POLICY = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool", trusted_networks: [127.0.0.0/8] }
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp] }
  rules:
    - name: partner
      when: { recipient_domain: [partner.example, bücher.example] }
      action: encrypt
      on_missing_key: reject
    - name: must-sign
      when: { recipient: [signed@other.example] }
      action: sign
      on_missing_key: reject
"""

STATE = {}

BINARY = miltertest.require_tools()


def forms(local, domain):
    """(name, RCPT/MAIL argument) for each envelope form of local@domain."""
    return [("trailing dot", "<%s@%s.>" % (local, domain)),
            ("quoted local part", '<"%s"@%s>' % (local, domain)),
            ("source route", "<@relay.example:%s@%s>" % (local, domain)),
            ("upper-case domain", "<%s@%s>" % (local, domain.upper()))]


def setUpModule():
    miltertest.set_up_gateway(STATE, "sgpe", POLICY)
    tmp, gw, carol = STATE["tmp"], STATE["gw"], STATE["carol"]
    carol.gen_key("Carol Buecher", CAROL_IDN)
    alice = sgtest.GpgHome(os.path.join(tmp, "alice"))
    STATE["alice_fpr"] = alice.gen_key("Alice Example", ALICE)
    verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
    verifier.import_keys(alice.export_public(ALICE))
    secret = signtest.write(os.path.join(tmp, "alice.sec.asc"), alice.export_secret(ALICE))
    alice.kill()
    gw.import_keys_checked(secret, sgtest.export_public_key(tmp, carol, CAROL_IDN))
    auth = DovecotAuthServer(os.path.join(tmp, "auth"), PASSWORDS)
    STATE.update(auth=auth, verifier=verifier,
                 scratch=signtest.Scratch(os.path.join(tmp, "chk")))
    miltertest.start_milter_and_postfix(STATE, BINARY, extra_main={
        "smtputf8_enable": "yes",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": auth.path,
    })


def tearDownModule():
    miltertest.tear_down(STATE)
    if STATE.get("verifier") is not None:
        STATE["verifier"].kill()
    if STATE.get("auth") is not None:
        STATE["auth"].close()


class PostfixEnvelope(miltertest.MilterTestCase):

    state = STATE

    def transaction(self, mail, rcpt, msg, login=None, utf8=False):
        """One SMTP transaction with the envelope arguments exactly as given.
        Returns {"mail": (code, text), "rcpt": ..., "data": ... or None}."""
        out = {"data": None}
        s = smtplib.SMTP("127.0.0.1", self.pf.port, timeout=60)
        try:
            s.command_encoding = "utf-8"
            s.ehlo("client.example")
            if login is not None:
                s.login(login, PASSWORDS[login])
            out["mail"] = s.docmd("MAIL FROM:" + mail + (" SMTPUTF8" if utf8 else ""))
            out["rcpt"] = s.docmd("RCPT TO:" + rcpt)
            if out["mail"][0] == 250 and out["rcpt"][0] == 250:
                out["data"] = s.data(re.sub(rb"(?<!\r)\n", b"\r\n", msg))
            s.quit()
        finally:
            s.close()
        return {k: (v[0], v[1].decode("utf-8", "replace")) if v else v
                for k, v in out.items()}

    def assert_refused(self, mail, rcpt, reply, login=None, utf8=False, to=NOKEY):
        """Refused after DATA with exactly reply; nothing delivered or queued."""
        self.pf.sink.clear()
        secret = marker()
        r = self.transaction(mail, rcpt, make_msg(to, secret), login, utf8)
        self.assertEqual(r["mail"][0], 250, r)
        self.assertEqual(r["rcpt"][0], 250, r)
        self.assertEqual(r["data"], (550, reply), r)
        self.assertEqual(self.pf.queue(), [], "a refused message is queued")
        return secret

    def deliver(self, mail, rcpt, to, login=None, utf8=False):
        """Accepted and delivered once to the plain address; returns
        (original, delivered SinkMessage, marker)."""
        self.pf.sink.clear()
        secret = marker()
        orig = make_msg(to, secret)
        r = self.transaction(mail, rcpt, orig, login, utf8)
        self.assertEqual(r["data"][0], 250, r)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        # Postfix delivers every form to the plain mailbox.
        self.assertEqual([a.lower() for a in msgs[0].rcpts], [to.lower()])
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())
        return orig, msgs[0], secret

    def assert_nothing_delivered(self):
        # Refused at SMTP time: Postfix never queued it, so no queue run
        # can deliver it later.
        self.assertEqual(self.pf.queue(), [], "a refused message is queued")
        self.assertEqual(self.pf.sink.files(), [], "a refused message reached the sink")

    # -- a) keyless partner in every form ---------------------------------

    @with_diagnostics
    def test_a_keyless_partner_refused_in_every_form(self):
        reply = ('5.7.1 encryption required by rule "partner"; no usable key for: %s'
                 % NOKEY)
        for name, rcpt in forms("nokey", "partner.example"):
            with self.subTest(form=name):
                self.assert_refused("<%s>" % ALICE, rcpt, reply)
        reply_idn = reply.replace(NOKEY, NOKEY_IDN)
        self.assert_refused("<%s>" % ALICE, "<nokey@xn--bcher-kva.example>", reply_idn,
                            to=NOKEY_IDN)
        self.assert_refused("<%s>" % ALICE, "<nokey@bücher.example>", reply_idn,
                            utf8=True, to=NOKEY_IDN)
        self.assert_refused("<%s>" % ALICE, "<nokey@BÜCHER.example.>", reply_idn,
                            utf8=True, to=NOKEY_IDN)
        self.assert_nothing_delivered()

    # -- b) partner with a key in every form -------------------------------

    @with_diagnostics
    def test_b_partner_with_key_encrypted_in_every_form(self):
        for name, rcpt in forms("carol", "partner.example"):
            with self.subTest(form=name):
                orig, got, secret = self.deliver("<%s>" % ALICE, rcpt, CAROL)
                self.assert_encrypted_copy(got, orig, secret)
        orig, got, secret = self.deliver("<%s>" % ALICE, "<carol@XN--BCHER-KVA.example.>",
                                         CAROL_IDN)
        self.assert_encrypted_copy(got, orig, secret)
        # The U-label form needs SMTPUTF8 all the way; smtp-sink does not
        # offer it, so Postfix cannot deliver that copy. sealgate's part
        # (encrypting to the A-label key) is checked at the milter: the
        # message is accepted, and sealgate logs the encryption with
        # carol's key.
        self.log_mark = self.milter.log_size()
        self.pf.sink.clear()
        r = self.transaction("<%s>" % ALICE, "<carol@bücher.example>",
                             make_msg(CAROL_IDN, marker()), utf8=True)
        self.assertEqual(r["data"][0], 250, r)
        fpr = STATE["carol"].fingerprint(CAROL_IDN)
        m = self.wait_sealgate_log(r"verdict=accept rule=partner action=encrypt "
                                   r"method=openpgp keys=%s" % fpr, timeout=10)
        self.assertIsNotNone(m, self.milter.log_since(self.log_mark))

    # -- c) internal sender forms ------------------------------------------

    @with_diagnostics
    def test_c_internal_sender_forms_are_outbound(self):
        reply = ('5.7.1 encryption required by rule "partner"; no usable key for: %s'
                 % NOKEY)
        for name, mail in forms("alice", "example.com"):
            with self.subTest(form=name):
                self.assert_refused(mail, "<%s>" % NOKEY, reply)
                orig, got, secret = self.deliver(mail, "<%s>" % CAROL, CAROL)
                self.assert_encrypted_copy(got, orig, secret)

    # -- d) refused at RCPT ------------------------------------------------

    @with_diagnostics
    def test_d_unresolvable_form_refused_at_rcpt(self):
        self.pf.sink.clear()
        r = self.transaction("<%s>" % ALICE, "<nokey@xn--a.example>",
                             make_msg(NOKEY, marker()))
        self.assertEqual(r["rcpt"], (553, "5.1.3 recipient address not accepted: "
                                          "invalid A-label in the domain"), r)
        self.assertIsNone(r["data"])
        # Local parts Postfix may route to another domain (percent hack,
        # bang path, a quoted at sign) when the domain is its own.
        for rcpt in ("<nokey%partner.example@example.com>",
                     "<partner.example!nokey@example.com>",
                     '<"nokey@partner.example"@example.com>'):
            with self.subTest(rcpt=rcpt):
                r = self.transaction("<%s>" % ALICE, rcpt, make_msg(NOKEY, marker()))
                self.assertEqual(r["rcpt"][0], 553, r)
                self.assertIn("routing character", r["rcpt"][1])
                self.assertIsNone(r["data"])

    # -- e) the signer check with SMTP AUTH ---------------------------------

    @with_diagnostics
    def test_e_only_the_owner_signs(self):
        mail = "<%s>" % ALICE
        self.assert_refused(
            mail, "<%s>" % SIGNED,
            '5.7.1 signing required by rule "must-sign"; no usable signing key for: '
            '%s (sender <%s> may not sign: login "bob" is neither the address nor '
            'its local part)' % (SIGNED, ALICE), login="bob", to=SIGNED)
        self.assertIn(("bob", True), STATE["auth"].logins)
        self.assert_refused(
            mail, "<%s>" % SIGNED,
            '5.7.1 signing required by rule "must-sign"; no usable signing key for: '
            '%s (sender <%s> may not sign: client 127.0.0.1 is not authenticated '
            '(SMTP AUTH) and not in gateway.signing_networks)' % (SIGNED, ALICE),
            to=SIGNED)
        self.assert_nothing_delivered()
        for mail in ("<%s>" % ALICE, "<alice@EXAMPLE.com.>"):
            with self.subTest(mail=mail):
                _orig, got, _secret = self.deliver(mail, "<%s>" % SIGNED, SIGNED,
                                                   login="alice")
                out = sgtest.canon(miltertest.strip_added_received(bytes(got)))
                signtest.assert_pgp_verifies(self, STATE["scratch"], out,
                                             STATE["verifier"], STATE["alice_fpr"])


if __name__ == "__main__":
    unittest.main()
