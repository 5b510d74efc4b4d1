"""Envelope addresses in canonical form through `sealgate process` and
`sealgate policy explain` (DESIGN.md §4 rule 7).

An MTA delivers RCPT TO:<nokey@partner.example.>, <"nokey"@partner.example>,
<@relay.example:nokey@partner.example>, <nokey@PARTNER.EXAMPLE> and the
U-label and A-label forms of an IDN domain to one mailbox; sealgate must
decide for that mailbox, whatever form the client wrote.

Policy: internal example.com, clients on 127.0.0.0/8 trusted; rule
"partner" (recipient_domain partner.example and bücher.example, written as
a U-label in the policy) encrypts and rejects when there is no key; rule
"legal" (sender legal@example.com) encrypts everything and rejects; the
default encrypts when there is a key. carol@partner.example and
carol@xn--bcher-kva.example have OpenPGP keys in the keystore (their secret
keys only in their own GnuPG homes, where every result is decrypted);
nokey@ at both domains has none.

  a) every form of a keyless partner recipient: exit 2 and the 550 reply of
     rule "partner" naming the canonical address; no message written.
  b) every form of carol: encrypted, and gpg in her home decrypts it to the
     original.
  c) every form of an internal sender (trailing dot, quoted, source route,
     upper-case domain) counts as outbound: the keyless partner is refused;
     a sender glob matches the canonical sender.
  d) recipient classes (the 452 split) use canonical forms: an internal
     recipient written bob@EXAMPLE.COM. is internal.
  e) forms the MTA would not resolve to one address are refused with 553,
     as the milter answers them.
  f) policy explain names the canonical address and its outcome.
"""

import os
import re
import unittest

import sgtest
from sgtest import MARKER, SENDER, make_message, std_headers

CAROL = "carol@partner.example"
CAROL_IDN = "carol@xn--bcher-kva.example"
NOKEY = "nokey@partner.example"
NOKEY_IDN = "nokey@xn--bcher-kva.example"
BOB = "bob@example.com"
ERIN = "erin@other.example"

POLICY = sgtest.policy_yaml(trusted_networks="127.0.0.0/8", rules="""\
    - name: legal
      when: { sender: legal@example.com }
      action: encrypt
      on_missing_key: reject
    - name: partner
      when: { recipient_domain: [partner.example, bücher.example] }
      action: encrypt
      on_missing_key: reject
""")


def forms(local, domain="partner.example"):
    """Envelope forms of local@domain that an MTA resolves to it."""
    return ["%s@%s." % (local, domain),
            '"%s"@%s' % (local, domain),
            "<@relay.example:%s@%s>" % (local, domain),
            "<@a.example,@b.example:%s@%s.>" % (local, domain),
            "%s@%s" % (local, domain.upper()),
            '<"%s"@%s.> NOTIFY=NEVER' % (local, domain)]


IDN_FORMS = ["%s@bücher.example", "%s@BÜCHER.example.", "%s@xn--bcher-kva.example",
             "%s@XN--BCHER-KVA.EXAMPLE."]


ROUTING = ("the local part holds a routing character (percent sign, exclamation mark "
           "or at sign) the MTA may send elsewhere")


class EnvelopeCanon(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgcan")
        cls.carol = sgtest.GpgHome(os.path.join(cls.tmp, "carol"))
        cls.carol.gen_key("Carol Partner", CAROL)
        cls.carol.gen_key("Carol Buecher", CAROL_IDN)
        cls.gw = sgtest.policy_gateway(os.path.join(cls.tmp, "gw"), POLICY)
        cls.gw.check_policy()
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL), (cls.carol, CAROL_IDN)])

    @classmethod
    def tearDownClass(cls):
        cls.carol.kill()

    @staticmethod
    def msg(to="Partner <%s>" % CAROL):
        return make_message(std_headers(to=to)
                            + [("Content-Type", "text/plain; charset=us-ascii")],
                            "Figures. %s\r\n" % MARKER)

    def process(self, sender, rcpts, client_ip="127.0.0.1"):
        rc, out, err = self.gw.process(self.msg(), sender, rcpts, client_ip=client_ip)
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        return rc, out, err

    def assert_rejected(self, sender, rcpt, rule, named):
        rc, out, err = self.process(sender, [rcpt])
        self.assertEqual(rc, 2, "%s -> %s: exit %d\n%s" % (sender, rcpt, rc, err))
        self.assertIsNone(out, "a message was written although refused")
        self.assertIn('550 5.7.1 encryption required by rule "%s"; no usable key for: %s'
                      % (rule, named), err.splitlines(), err)

    def assert_encrypted(self, sender, rcpt):
        msg = self.msg()
        rc, out, err = self.gw.process(msg, sender, [rcpt])
        self.assertEqual(rc, 0, "%s -> %s: exit %d\n%s" % (sender, rcpt, rc, err))
        self.assertIsNotNone(out)
        self.assertNotIn(MARKER.encode(), out, "plaintext in the result")
        plain = sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        self.assertIn(MARKER.encode(), plain)

    # -- a) keyless partner ------------------------------------------------

    def test_a_keyless_partner_refused_in_every_form(self):
        for rcpt in forms("nokey"):
            with self.subTest(rcpt=rcpt):
                self.assert_rejected(SENDER, rcpt, "partner", NOKEY)
        for form in IDN_FORMS:
            rcpt = form % "nokey"
            with self.subTest(rcpt=rcpt):
                self.assert_rejected(SENDER, rcpt, "partner", NOKEY_IDN)
        # The local part keeps its case; the domain does not.
        self.assert_rejected(SENDER, "NoKey@Partner.Example.", "partner",
                             "NoKey@partner.example")

    # -- b) partner with a key ---------------------------------------------

    def test_b_partner_with_key_encrypted_in_every_form(self):
        for rcpt in forms("carol") + [f % "carol" for f in IDN_FORMS]:
            with self.subTest(rcpt=rcpt):
                self.assert_encrypted(SENDER, rcpt)

    # -- c) internal sender ------------------------------------------------

    def test_c_internal_sender_forms_are_outbound(self):
        for sender in forms("alice", "example.com"):
            with self.subTest(sender=sender):
                self.assert_rejected(sender, NOKEY, "partner", NOKEY)
        # A sender rule matches the canonical sender: "legal" refuses even a
        # recipient outside the partner domains.
        for sender in forms("legal", "example.com"):
            with self.subTest(sender=sender):
                self.assert_rejected(sender, ERIN, "legal", ERIN)
        # The same client with an external sender is not outbound.
        rc, out, err = self.process("alice@example.com.evil.example", [NOKEY])
        self.assertEqual(rc, 0, err)
        self.assertIn("reason: not outbound", err)

    # -- d) classes --------------------------------------------------------

    def test_d_internal_recipient_in_any_form_is_split_off(self):
        for bob in ("bob@EXAMPLE.COM.", '"bob"@example.com', "<@r.example:bob@example.com>"):
            with self.subTest(bob=bob):
                rc, out, err = self.process(SENDER, [ERIN, bob])
                self.assertEqual(rc, 3, err)
                self.assertIsNone(out)
                self.assertIn("452 4.5.3 recipient <%s> needs a different "
                              "treatment (internal, not plain); deliver it in a "
                              "separate transaction" % BOB, err.splitlines(), err)
        # Two forms of one partner mailbox are one class: no split.
        self.assert_encrypted(SENDER, CAROL)
        msg = self.msg()
        rc, out, err = self.gw.process(msg, SENDER, [CAROL + ".", '"carol"@partner.example'])
        self.assertEqual(rc, 0, err)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    # -- e) refused forms --------------------------------------------------

    def test_e_unresolvable_forms_refused(self):
        for rcpt, why in (("a@b@partner.example", "more than one '@'"),
                          ('"nokey@partner.example', "unbalanced quotes"),
                          ("nokey@partner..example", "invalid domain"),
                          ("nokey@xn--a.example", "invalid A-label in the domain"),
                          ("nokey", "no domain"),
                          ("<>", "empty address"),
                          ("nok\x01ey@partner.example", "control character"),
                          ("nokey%partner.example@example.com", ROUTING),
                          ("partner.example!nokey@example.com", ROUTING),
                          ('"nokey@partner.example"@example.com', ROUTING)):
            with self.subTest(rcpt=rcpt):
                rc, out, err = self.process(SENDER, [rcpt])
                self.assertEqual(rc, 2, err)
                self.assertIsNone(out)
                self.assertEqual(sgtest.verdict(err), "reject", err)
                shown = rcpt.replace("\x01", "\\x01")       # escaped, never raw
                self.assertIn("553 5.1.3 <%s>: recipient address not accepted: %s"
                              % (shown, why), err.splitlines(), err)
        rc, out, err = self.process('"alice@example.com', [NOKEY])
        self.assertEqual(rc, 2, err)
        self.assertIn('553 5.1.7 <"alice@example.com>: sender address not accepted: '
                      'unbalanced quotes',
                      err.splitlines(), err)

    # -- f) policy explain -------------------------------------------------

    def test_f_explain_names_canonical_address(self):
        cp = self.gw.run("policy", "explain", "-c", self.gw.policy, "--from",
                         "<@r.example:alice@EXAMPLE.com.>", "--to",
                         '"nokey"@Partner.Example.', "--client-ip", "127.0.0.1")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, r"(?m)^outbound: yes ")
        block = cp.stdout.split("recipient: %s\n" % NOKEY, 1)
        self.assertEqual(len(block), 2, cp.stdout)
        self.assertIn("  rule: partner\n", block[1])
        self.assertIn("  outcome: reject\n", block[1])
        cp = self.gw.run("policy", "explain", "-c", self.gw.policy, "--from", SENDER,
                         "--to", "a@b@c.example", "--client-ip", "127.0.0.1")
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertRegex(cp.stderr, r"553 5\.1\.3 <a@b@c\.example>: recipient address not "
                         r"accepted: more than one '@'")


if __name__ == "__main__":
    unittest.main()
