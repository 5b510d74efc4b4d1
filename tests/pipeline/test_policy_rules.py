"""Outbound policy rules through `sealgate process`, checked with real gpg.

Two gateways share the same recipients:

  carol@partner.example   external, public OpenPGP key in the keystore
  x@partner.example       external, no key (rule "partner" applies)
  erin@other.example      external, no key
  dave@other.example      external, public OpenPGP key (no rule applies)
  bob@example.com         internal

Gateway "main" has the rules of the reference policy (header, MIP label,
subject tag, recipient domain; first match wins) and the default trusted
networks; gateway "extra" covers on_missing_key tempfail and send-plain,
strip_tag: false, sender / recipient globs, size_over, action none and a
trusted_networks list of its own. Every encrypted result is decrypted with
gpg in the recipient's own GnuPG home; every refused message must leave no output.
"""

import os
import re
import unittest

import sgtest
from sgtest import (BOB, CAROL, DAVE, ERIN, MARKER, SENDER, XPART, make_message,
                    std_headers)

YPART = "y@partner.example"

MAIN_POLICY = sgtest.policy_yaml(rules=sgtest.REFERENCE_RULES)

EXTRA_POLICY = sgtest.policy_yaml(
    trusted_networks='10.1.0.0/16, "2001:db8::/32"',
    internal_domains="example.com, corp.example.com", rules="""\
    - name: tag-tempfail
      when: { subject_tag: "[secure]" }
      action: encrypt
      on_missing_key: tempfail
    - name: tag-plain
      when: { subject_tag: "{encrypt}" }
      action: encrypt
      on_missing_key: send-plain
    - name: keep-tag
      when: { subject_tag: "(keep)" }
      action: encrypt
      strip_tag: false
    - name: legal-sender
      when: { sender: ["legal@example.com", "*@corp.example.com"] }
      action: encrypt
    - name: bank
      when: { recipient: ["*@bank.example", "*.bank.example", "vault.example"] }
      action: encrypt
    - name: big
      when: { size_over: 1K, recipient_domain: big.example }
      action: encrypt
    - name: never
      when: { recipient: "carol@partner.example", sender: "press@example.com" }
      action: none
""")

REJECT_FMT = '550 5.7.1 encryption required by rule "%s"; no usable key for: %s'
TEMPFAIL_FMT = '451 4.7.1 encryption required by rule "%s"; no usable key for: %s'
MIP_ID = "0a1b2c3d-1111-2222-3333-444455556666"
MIP_ID2 = "9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
TRUSTED_IP = "127.0.0.1"
EXTRA_IP = "10.1.2.3"


def msip_labels(*labels):
    """An msip_labels value (folded) for [(label id, name, enabled), ...]."""
    parts = []
    for lid, name, enabled in labels:
        p = "MSIP_Label_%s" % lid
        parts.append("%s_Enabled=%s; %s_SetDate=2023-01-02T10:00:00Z;\r\n "
                     "%s_Method=Standard; %s_Name=%s;\r\n %s_SiteId=5b1c0d2e-7777-8888-9999-000011112222;"
                     % (p, "true" if enabled else "false", p, p, p, name, p))
    return "\r\n ".join(parts)


class PolicyRules(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgrules", CAROL, DAVE)
        (cls.carol, _fpr), (cls.dave, _fpr) = homes
        cls.main = sgtest.policy_gateway(os.path.join(cls.tmp, "main"), MAIN_POLICY)
        cls.extra = sgtest.policy_gateway(os.path.join(cls.tmp, "extra"), EXTRA_POLICY)
        for gw in (cls.main, cls.extra):
            sgtest.import_public_keys(gw, cls.tmp, [(cls.carol, CAROL), (cls.dave, DAVE)])
            gw.check_policy()

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def msg(subject="Quarterly numbers", to="Carol <%s>" % CAROL, extra=(), body=None):
        return make_message(
            std_headers(to=to, subject=subject, extra=extra)
            + [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Transfer-Encoding", "8bit")],
            body if body is not None else "Figures for Q3. Grüße. %s\r\n" % MARKER)

    def run_gw(self, gw, msg, rcpts, sender=SENDER, client_ip=TRUSTED_IP, extra_args=()):
        rc, out, err = gw.process(msg, sender, rcpts, client_ip=client_ip,
                                  extra_args=extra_args)
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        self.assertEqual(gw.spool_entries(), [], "spool dir not empty after run")
        return rc, out, err

    def assert_rule(self, err, name):
        if name is None:
            self.assertEqual(sgtest.stderr_field(err, "rule"), [],
                             "a rule is named although none should decide:\n" + err)
        else:
            self.assertEqual(sgtest.stderr_field(err, "rule"), [name], err)

    def assert_rejected(self, msg, rcpts, rule, gw=None, named=None, **kw):
        """Exit 2, no output, the exact 550 line naming rule and every recipient
        (as named: their canonical forms, default rcpts)."""
        gw = gw or self.main
        rc, out, err = self.run_gw(gw, msg, rcpts, **kw)
        self.assertEqual(rc, 2, "exit %d, stderr:\n%s" % (rc, err))
        self.assertIsNone(out, "a message was written although it was rejected")
        self.assertEqual(sgtest.verdict(err), "reject", err)
        self.assert_rule(err, rule)
        expected = REJECT_FMT % (rule, ", ".join(named or rcpts))
        self.assertIn(expected, err.splitlines(),
                      "no line %r on stderr:\n%s" % (expected, err))
        return err

    def assert_unchanged(self, msg, rcpts, rule=None, gw=None, expect=None, **kw):
        """Exit 0, verdict accept, the message written byte for byte (or
        exactly as expect)."""
        gw = gw or self.main
        rc, out, err = self.run_gw(gw, msg, rcpts, **kw)
        self.assertEqual(rc, 0, "exit %d, stderr:\n%s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        want = msg if expect is None else expect
        self.assertTrue(out == want, "message changed (%d bytes in, %d out); output starts: %r"
                        % (len(msg), len(out), out[:400]))
        self.assert_rule(err, rule)
        return err

    def assert_encrypted(self, msg, rule, subject=None, gw=None, rcpts=(CAROL,), home=None,
                         **kw):
        """Exit 0, PGP/MIME that the recipient's gpg (home, default Carol's) decrypts to the original entity;
        outer fields kept except the Subject, whose decoded value must be
        `subject` (None: unchanged). Returns the output."""
        gw = gw or self.main
        rc, out, err = self.run_gw(gw, msg, list(rcpts), **kw)
        self.assertEqual(rc, 0, "exit %d, stderr:\n%s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        self.assertNotIn(MARKER.encode(), out, "marker visible in clear in the result")
        self.assert_rule(err, rule)
        sgtest.pgp_mime_parts(out)
        if subject is None:
            sgtest.assert_outer_headers_kept(self, msg, out)
        else:
            sgtest.assert_outer_headers_kept(self, sgtest.without_fields(msg, ["Subject"]),
                                             sgtest.without_fields(out, ["Subject"]))
            subjects = sgtest.field_values(out, "Subject")
            self.assertEqual(len(subjects), 1, "Subject fields: %r" % subjects)
            self.assertEqual(sgtest.decoded_value(subjects[0]).strip(), subject,
                             "Subject of the result: %r" % subjects[0])
        sgtest.assert_decrypts_to_original(self, home or self.carol, msg, out)
        return out

    # -- subject tag ---------------------------------------------------------

    def test_subject_tag_keyless_recipient_rejected_with_exact_reply(self):
        self.assert_rejected(self.msg("[secure] Quarterly numbers", to=XPART), [XPART],
                             "subject-tag")

    def test_subject_tag_reject_lists_every_keyless_recipient(self):
        rcpts = [XPART, YPART, ERIN]
        err = self.assert_rejected(self.msg("[secure] Quarterly numbers", to=", ".join(rcpts)),
                                   rcpts, "subject-tag")
        self.assertEqual(len(sgtest.SMTP_REJECT_RE.findall(err)), 1,
                         "expected one reply line:\n" + err)

    def test_subject_tag_keyed_recipient_encrypted_and_tag_stripped(self):
        msg = self.msg("[secure] Quarterly numbers")
        out = self.assert_encrypted(msg, "subject-tag", subject="Quarterly numbers")
        self.assertEqual(sgtest.field_values(out, "Subject"), ["Quarterly numbers"])

    def test_subject_tag_other_case_matches(self):
        self.assert_rejected(self.msg("[SECURE] Quarterly numbers", to=ERIN), [ERIN],
                             "subject-tag")
        self.assert_encrypted(self.msg("[SECURE] Quarterly numbers"), "subject-tag",
                              subject="Quarterly numbers")

    def test_subject_tag_inside_encoded_word(self):
        subject = "=?utf-8?q?=5Bsecure=5D_Gr=C3=BC=C3=9Fe?="
        self.assert_rejected(self.msg(subject, to=ERIN), [ERIN], "subject-tag")
        out = self.assert_encrypted(self.msg(subject), "subject-tag", subject="Grüße")
        raw = sgtest.field_values(out, "Subject")[0]
        self.assertTrue(raw.isascii(), "Subject not re-encoded: %r" % raw)

    def test_subject_tag_inside_encoded_word_with_trailing_text(self):
        subject = "=?iso-8859-1?q?=5BSecure=5D_=DCbersicht?= Q3"
        self.assert_encrypted(self.msg(subject), "subject-tag", subject="Übersicht Q3")

    def test_subject_without_tag_uses_default(self):
        # No rule matches for erin: encrypt-if-key without a key is plain.
        self.assert_unchanged(self.msg("Quarterly numbers secure", to=ERIN), [ERIN], rule=None)
        # Dave has a key: the default encrypts, the Subject stays as it was.
        self.assert_encrypted(self.msg("Quarterly numbers [secure", to=DAVE), None,
                              rcpts=(DAVE,), home=self.dave)

    # -- header and MIP label rules -----------------------------------------

    def test_header_rule_matches_case_insensitively(self):
        extra = [("Sensitivity", "Company-Confidential")]
        self.assert_rejected(self.msg(to=ERIN, extra=extra), [ERIN], "confidential")
        self.assert_encrypted(self.msg(extra=extra), "confidential")

    def test_header_rule_other_value_does_not_match(self):
        self.assert_unchanged(self.msg(to=ERIN, extra=[("Sensitivity", "Personal")]), [ERIN])

    def test_mip_label_enabled_matches(self):
        extra = [("msip_labels", msip_labels((MIP_ID, "Confidential", True)))]
        self.assert_rejected(self.msg(to=ERIN, extra=extra), [ERIN], "mip")
        self.assert_encrypted(self.msg(extra=extra), "mip")

    def test_mip_label_among_several_matches(self):
        extra = [("msip_labels", msip_labels((MIP_ID2, "General", True),
                                             (MIP_ID, "Confidential", True)))]
        self.assert_rejected(self.msg(to=ERIN, extra=extra), [ERIN], "mip")

    def test_mip_label_disabled_does_not_count(self):
        extra = [("msip_labels", msip_labels((MIP_ID, "Confidential", False)))]
        self.assert_unchanged(self.msg(to=ERIN, extra=extra), [ERIN])
        extra = [("msip_labels", msip_labels((MIP_ID, "Confidential", False),
                                             (MIP_ID2, "General", True)))]
        self.assert_unchanged(self.msg(to=ERIN, extra=extra), [ERIN])

    def test_mip_other_label_name_does_not_match(self):
        extra = [("msip_labels", msip_labels((MIP_ID, "General", True)))]
        self.assert_unchanged(self.msg(to=ERIN, extra=extra), [ERIN])

    # -- recipient domain, on_missing_key send-plain, order -----------------

    def test_partner_domain_without_key_sent_plain(self):
        self.assert_unchanged(self.msg(to=XPART), [XPART], rule="partner")

    def test_partner_domain_with_key_encrypted(self):
        self.assert_encrypted(self.msg(), "partner")

    def test_first_matching_rule_wins(self):
        # The tag rule comes before the partner rule: x@partner.example is
        # rejected, not sent plain as "partner" alone would allow.
        self.assert_rejected(self.msg("[secure] Q3", to=XPART), [XPART], "subject-tag")
        # Header rule before the tag rule.
        both = self.msg("[secure] Q3", to=ERIN, extra=[("Sensitivity", "company-confidential")])
        self.assert_rejected(both, [ERIN], "confidential")

    def test_internal_recipient_not_affected(self):
        # No outbound rule applies: the tag stays, only the inbound status
        # fields are added.
        msg = self.msg("[secure] Q3", to=BOB)
        self.assert_unchanged(msg, [BOB], expect=sgtest.with_fields_appended(msg))

    # -- who counts as outbound ---------------------------------------------

    def test_no_client_information_is_not_outbound(self):
        # --client-ip unknown: a connection without an address.
        self.assert_unchanged(self.msg("[secure] Q3", to=XPART), [XPART], client_ip="unknown")
        self.assert_unchanged(self.msg("[secure] Q3"), [CAROL], client_ip="unknown")

    def test_untrusted_client_is_not_outbound(self):
        self.assert_unchanged(self.msg("[secure] Q3", to=XPART), [XPART], client_ip="192.0.2.1")
        self.assert_unchanged(self.msg("[secure] Q3"), [CAROL], client_ip="192.0.2.1")

    def test_external_sender_is_not_outbound(self):
        self.assert_unchanged(self.msg("[secure] Q3", to=ERIN), [ERIN],
                              sender="mallory@other.example")
        self.assert_unchanged(self.msg("[secure] Q3"), [CAROL], sender="mallory@other.example")

    def test_smtp_auth_makes_outbound(self):
        self.assert_rejected(self.msg("[secure] Q3", to=XPART), [XPART], "subject-tag",
                             client_ip=None, extra_args=("--auth", "alice"))
        self.assert_encrypted(self.msg("[secure] Q3"), "subject-tag", subject="Q3",
                              client_ip="192.0.2.1", extra_args=("--auth", "alice"))

    def test_default_trusted_networks(self):
        for ip in ("127.0.0.1", "127.5.6.7", "::1"):
            with self.subTest(ip=ip):
                self.assert_rejected(self.msg("[secure] Q3", to=ERIN), [ERIN], "subject-tag",
                                     client_ip=ip)
        self.assert_encrypted(self.msg("[secure] Q3"), "subject-tag", subject="Q3",
                              client_ip="::1")

    def test_configured_trusted_networks_replace_default(self):
        msg = self.msg("{encrypt} Q3")
        for ip in (EXTRA_IP, "10.1.255.254", "2001:db8::5"):
            with self.subTest(ip=ip):
                self.assert_encrypted(msg, "tag-plain", subject="Q3", gw=self.extra, client_ip=ip)
        for ip in ("127.0.0.1", "10.2.0.1", "::1"):
            with self.subTest(ip=ip):
                self.assert_unchanged(msg, [CAROL], gw=self.extra, client_ip=ip)

    # -- gateway "extra": on_missing_key, strip_tag, conditions -------------

    def test_on_missing_key_tempfail(self):
        rc, out, err = self.run_gw(self.extra, self.msg("Re: [Secure] Q3", to=ERIN),
                                   [ERIN, XPART], client_ip=EXTRA_IP)
        self.assertEqual(rc, 3, "exit %d, stderr:\n%s" % (rc, err))
        self.assertIsNone(out, "a message was written on tempfail")
        self.assertEqual(sgtest.verdict(err), "tempfail", err)
        self.assert_rule(err, "tag-tempfail")
        prefix = TEMPFAIL_FMT % ("tag-tempfail", "%s, %s" % (ERIN, XPART))
        lines = [l for l in err.splitlines() if sgtest.SMTP_TEMPFAIL_RE.match(l)]
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0] == prefix or lines[0].startswith(prefix + ";")
                        or lines[0].startswith(prefix + " "),
                        "reply %r does not start with %r" % (lines[0], prefix))
        self.assertEqual(sgtest.SMTP_REJECT_RE.findall(err), [])

    def test_on_missing_key_tempfail_with_key_encrypts(self):
        self.assert_encrypted(self.msg("Re: [Secure] Q3"), "tag-tempfail", subject="Re: Q3",
                              gw=self.extra, client_ip=EXTRA_IP)

    def test_on_missing_key_send_plain_still_strips_tag(self):
        msg = self.msg("{ENCRYPT} Hi there", to=ERIN)
        rc, out, err = self.run_gw(self.extra, msg, [ERIN], client_ip=EXTRA_IP)
        self.assertEqual(rc, 0, "exit %d, stderr:\n%s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assert_rule(err, "tag-plain")
        self.assertIsNotNone(out)
        self.assertEqual(sgtest.field_values(out, "Subject"), ["Hi there"])
        # Apart from the Subject the message is the original, not encrypted.
        self.assertEqual(sgtest.canon(out),
                         sgtest.canon(sgtest.replace_field(msg, "Subject", "Hi there")))
        self.assertIn(MARKER.encode(), out)

    def test_strip_tag_false_keeps_subject(self):
        self.assert_encrypted(self.msg("(keep) Hi there"), "keep-tag", gw=self.extra,
                              client_ip=EXTRA_IP)

    def test_sender_condition(self):
        msg = self.msg(to=ERIN)
        self.assert_rejected(msg, [ERIN], "legal-sender", gw=self.extra, client_ip=EXTRA_IP,
                             sender="legal@example.com")
        self.assert_rejected(msg, [ERIN], "legal-sender", gw=self.extra, client_ip=EXTRA_IP,
                             sender="dan@corp.example.com")
        self.assert_unchanged(msg, [ERIN], gw=self.extra, client_ip=EXTRA_IP,
                              sender="legalx@example.com")
        self.assert_unchanged(msg, [ERIN], gw=self.extra, client_ip=EXTRA_IP)

    def test_recipient_globs(self):
        msg = self.msg(to="someone")
        # The reply names the canonical address (domain in lower case).
        for rcpt, named in (("x@bank.example", None), ("x@eu.bank.example", None),
                            ("X@Bank.Example", "X@bank.example"),
                            ("x@vault.example", None)):
            with self.subTest(rcpt=rcpt):
                self.assert_rejected(msg, [rcpt], "bank", gw=self.extra, client_ip=EXTRA_IP,
                                     named=[named] if named else None)
        for rcpt in ("x@notbank.example", "x@bank.example.org", "x@sub.vault.example"):
            with self.subTest(rcpt=rcpt):
                self.assert_unchanged(msg, [rcpt], gw=self.extra, client_ip=EXTRA_IP)

    def test_size_over_and_all_conditions_must_hold(self):
        small = self.msg(to="x@big.example")
        big = self.msg(to="x@big.example", body=("%s\r\n" % MARKER) + ("z" * 70 + "\r\n") * 40)
        self.assertLess(len(small), 1024)
        self.assertGreater(len(big), 1024)
        self.assert_unchanged(small, ["x@big.example"], gw=self.extra, client_ip=EXTRA_IP)
        self.assert_rejected(big, ["x@big.example"], "big", gw=self.extra, client_ip=EXTRA_IP)
        # Large, but to another domain: the rule's second condition fails.
        self.assert_unchanged(big, [ERIN], gw=self.extra, client_ip=EXTRA_IP)

    def test_action_none_rule_passes_keyed_recipient_unchanged(self):
        self.assert_unchanged(self.msg(), [CAROL], rule="never", gw=self.extra,
                              client_ip=EXTRA_IP, sender="press@example.com")
        # Same recipient, other sender: no rule, the default encrypts.
        self.assert_encrypted(self.msg(), None, gw=self.extra, client_ip=EXTRA_IP)


if __name__ == "__main__":
    unittest.main()
