"""Subdomain patterns: ".example.com" in internal_domains (every subdomain
of example.com, as Postfix's parent_domain_matches_subdomains) and in a
rule's recipient_domain; an exact name matches only itself.

Keystore: carol@partner.example's public key. Two gateways on it:
  exact  internal_domains [example.com]
  subs   internal_domains [example.com, .example.com], and a rule that
         requires encryption for recipient_domain [.partner.example]

  a) sender bounces+123@lists.example.com from a trusted client: under subs
     outbound (to carol: encrypted, gpg decrypts it to the original); under
     exact not outbound, passed through untouched.
  b) recipient bob@eu.example.com: under subs internal (passes, no key
     needed), under exact external (encrypt-if-key, no key: plain).
  c) a lookalike stays external under subs: example.com.evil.example,
     badexample.com.
  d) recipient x@mx.partner.example (no key) under subs falls under the
     rule: rejected 550; x@partner.example itself does not.
  `policy explain` names the classes the same way.
"""

import os
import unittest

import sgtest
from sgtest import MARKER, make_message, std_headers

CAROL = sgtest.CAROL
LIST = "bounces+123@lists.example.com"

SUBS_RULES = """\
    - name: partner-subs
      when: { recipient_domain: [.partner.example] }
      action: encrypt
      on_missing_key: reject
"""


class Subdomains(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp, [(cls.carol, _fpr)] = sgtest.class_set_up("sgsub", CAROL)
        key = sgtest.export_public_key(cls.tmp, cls.carol, CAROL)
        policies = {
            "exact": sgtest.policy_yaml().replace('"store"', '"../store"'),
            "subs": sgtest.policy_yaml(
                internal_domains="example.com, .example.com",
                rules=SUBS_RULES).replace('"store"', '"../store"'),
        }
        cls.gws = sgtest.policy_gateways(cls.tmp, policies, key_files=[key])

    @classmethod
    def tearDownClass(cls):
        sgtest.kill_agents_under(cls.tmp)

    def msg(self, sender, to):
        return make_message(std_headers(sender=sender, to=to),
                            "Figures: %s\r\n" % MARKER)

    def test_a_subdomain_sender_is_internal(self):
        msg = self.msg(LIST, CAROL)
        rc, out, err = self.gws["subs"].process(msg, LIST, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.stderr_field(err, "action"), ["encrypt method=openpgp"])
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        rc, out, err = self.gws["exact"].process(msg, LIST, [CAROL])
        self.assertEqual(rc, 0, err)
        self.assertIn("reason: not outbound", err)
        self.assertEqual(out, msg)

    def explain(self, gw, rcpt):
        cp = self.gws[gw].run("policy", "explain", "-c", self.gws[gw].policy,
                              "--from", sgtest.SENDER, "--to", rcpt)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return cp.stdout

    def test_b_subdomain_recipient_is_internal(self):
        bob = "bob@eu.example.com"
        msg = self.msg(sgtest.SENDER, bob)
        rc, out, err = self.gws["subs"].process(msg, sgtest.SENDER, [bob])
        self.assertEqual(rc, 0, err)
        # Mail to an internal user: the inbound path's status header.
        self.assertIn("reason: inbound:", err)
        self.assertIn(b"X-Sealgate-Decrypted: no; reason=not-encrypted", out)
        self.assertIn("class: internal (internal recipient)",
                      self.explain("subs", bob))
        rc, out, err = self.gws["exact"].process(msg, sgtest.SENDER, [bob])
        self.assertEqual(rc, 0, err)
        self.assertIn("reason: no usable key; the policy allows plain", err)
        self.assertIn("class: plain", self.explain("exact", bob))

    def test_c_lookalikes_stay_external(self):
        for rcpt in ("x@example.com.evil.example", "x@badexample.com"):
            with self.subTest(rcpt=rcpt):
                self.assertIn("class: plain", self.explain("subs", rcpt))
        for sender in ("x@example.com.evil.example", "x@badexample.com"):
            with self.subTest(sender=sender):
                rc, _out, err = self.gws["subs"].process(
                    self.msg(sender, CAROL), sender, [CAROL])
                self.assertEqual(rc, 0, err)
                self.assertIn("reason: not outbound", err)

    def test_d_recipient_domain_subdomains(self):
        rcpt = "x@mx.partner.example"
        rc, out, err = self.gws["subs"].process(self.msg(sgtest.SENDER, rcpt),
                                                sgtest.SENDER, [rcpt])
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertIn('encryption required by rule "partner-subs"', err)
        rcpt = "x@partner.example"
        rc, out, err = self.gws["subs"].process(self.msg(sgtest.SENDER, rcpt),
                                                sgtest.SENDER, [rcpt])
        self.assertEqual(rc, 0, err)
        self.assertNotIn("partner-subs", err)


if __name__ == "__main__":
    unittest.main()
