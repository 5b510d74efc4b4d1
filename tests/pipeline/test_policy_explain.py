"""`sealgate policy explain`: per recipient, which rule decides and why.

The text form has one block per recipient (recipient:, class:, rule:,
action:, method:, key:, outcome:, and one "skipped NAME: why" line for each
rule before the deciding one); --json prints the same as one JSON object.
Explain's outcome is also compared with what `sealgate process` really does
with the same message, recipient and client, and every message that process
encrypts is decrypted with gpg in the recipient's own GnuPG home.
"""

import json
import os
import re
import unittest

import sgtest
from sgtest import (BOB, CAROL, DAVE, ERIN, MARKER, SENDER, XPART, make_message,
                    std_headers)

BANK = "x@eu.bank.example"

POLICY = sgtest.policy_yaml(trusted_networks="127.0.0.0/8", rules=sgtest.REFERENCE_RULES + """\
    - name: bank
      when: { recipient: "*.bank.example" }
      action: encrypt
      on_missing_key: tempfail
""")
RULES = ["confidential", "mip", "subject-tag", "partner", "bank"]
CONTENT_RULES = ["confidential", "mip", "subject-tag"]
OUTCOMES = {"encrypt", "plain", "reject", "tempfail", "pass"}
CLASSES = {"openpgp", "plain", "internal", "pass"}


def parse_text(stdout):
    """{address: {"class": ..., "rule": ..., ..., "skipped": [(rule, why)]}}
    plus the top-level lines under the key None."""
    blocks, cur, top = {}, None, {}
    for line in stdout.splitlines():
        if line.startswith("recipient: "):
            cur = {"skipped": [], "lines": []}
            blocks[line[len("recipient: "):].strip()] = cur
            continue
        if cur is None or line.startswith("note: "):
            k, _s, v = line.partition(": ")
            top[k] = v
            continue
        if not line.startswith("  "):
            raise AssertionError("unexpected line in a recipient block: %r" % line)
        cur["lines"].append(line)
        body = line[2:]
        m = re.match(r"skipped (\S+): (.*)$", body)
        if m:
            cur["skipped"].append((m.group(1), m.group(2)))
            continue
        k, sep, v = body.partition(": ")
        if not sep:
            raise AssertionError("unexpected line in a recipient block: %r" % line)
        if k in cur:
            raise AssertionError("%s given twice in a block" % k)
        cur[k] = v
    blocks[None] = top
    return blocks


class PolicyExplain(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgexp", CAROL, DAVE)
        (cls.carol, cls.carol_fpr), (cls.dave, cls.dave_fpr) = homes
        cls.homes = {CAROL: cls.carol, DAVE: cls.dave}
        cls.gw = sgtest.policy_gateway(os.path.join(cls.tmp, "gw"), POLICY)
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL), (cls.dave, DAVE)])
        usage = cls.gw.run("policy", "explain")
        if "explain" not in usage.stdout + usage.stderr or "unknown command" in usage.stderr:
            raise RuntimeError("sealgate has no `policy explain`: %s" % usage.stderr)

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def msg(subject="Quarterly numbers", extra=()):
        return make_message(std_headers(subject=subject, extra=extra)
                            + [("Content-Type", "text/plain; charset=utf-8")],
                            "Figures. %s\r\n" % MARKER)

    def explain(self, rcpts, msg=None, client_ip="127.0.0.1", auth=None, json_out=False,
                sender=SENDER, expect_rc=0):
        argv = ["policy", "explain", "-c", self.gw.policy, "--from", sender]
        for r in rcpts:
            argv += ["--to", r]
        if client_ip is not None:
            argv += ["--client-ip", client_ip]
        if auth is not None:
            argv += ["--auth", auth]
        inp = None
        if msg is not None:
            inp = os.path.join(self.gw.dir, "explain-in.eml")
            with open(inp, "wb") as f:
                f.write(msg)
            argv += ["-i", inp]
        if json_out:
            argv.append("--json")
        cp = self.gw.run(*argv)
        self.assertEqual(cp.returncode, expect_rc, "exit %d\nstdout:\n%s\nstderr:\n%s"
                         % (cp.returncode, cp.stdout, cp.stderr))
        self.assertNotIn(MARKER, cp.stdout + cp.stderr, "message content printed")
        if inp is not None:
            with open(inp, "rb") as f:
                self.assertEqual(f.read(), msg, "explain changed its input file")
            os.unlink(inp)
        self.assertEqual(self.gw.spool_entries(), [])
        if expect_rc != 0:
            return cp
        if json_out:
            return json.loads(cp.stdout)
        blocks = parse_text(cp.stdout)
        self.assertEqual(sorted(a for a in blocks if a is not None), sorted(rcpts),
                         "recipient blocks:\n" + cp.stdout)
        return blocks

    def explain_json_one(self, rcpt, **kw):
        doc = self.explain([rcpt], json_out=True, **kw)
        self.assertEqual([r["address"] for r in doc["recipients"]], [rcpt])
        return doc, doc["recipients"][0]

    def test_split_note_for_different_classes(self):
        # carol has a key (openpgp), erin has none (plain), bob is internal.
        blocks = self.explain([CAROL, ERIN, BOB])
        self.assertIn("note", blocks[None], "no note about the split")
        self.assertIn("452 4.5.3", blocks[None]["note"])
        doc = self.explain([CAROL, ERIN], json_out=True)
        self.assertIs(doc["split"], True)
        # Same class: no note, split false.
        blocks = self.explain([CAROL, DAVE])
        self.assertNotIn("note", blocks[None])
        doc = self.explain([CAROL, DAVE], json_out=True)
        self.assertIs(doc["split"], False)

    def assert_block(self, b, cls, rule, action, method, key, outcome):
        self.assertEqual(b["class"].split(" ", 1)[0], cls, b)
        self.assertRegex(b["class"], r"^\S+ \(.+\)$", "class without its reason")
        self.assertEqual(b["rule"], rule, b)
        self.assertEqual(b["action"], action, b)
        self.assertEqual(b["method"], method, b)
        self.assertEqual(b["key"], key, b)
        self.assertEqual(b["outcome"], outcome, b)

    def assert_skipped(self, skipped, names):
        self.assertEqual([s[0] for s in skipped], names, skipped)
        for _rule, why in skipped:
            self.assertTrue(why.strip(), "skipped rule without a reason")

    # -- text form ---------------------------------------------------------

    def test_tagged_message_keyless_recipient_rejected(self):
        b = self.explain([XPART], msg=self.msg("[secure] Quarterly numbers"))[XPART]
        self.assert_block(b, "plain", "subject-tag", "encrypt", "-", "-", "reject")
        self.assert_skipped(b["skipped"], ["confidential", "mip"])

    def test_keyed_partner_encrypt_with_fingerprint(self):
        b = self.explain([CAROL], msg=self.msg("[secure] Quarterly numbers"))[CAROL]
        self.assert_block(b, "openpgp", "subject-tag", "encrypt", "openpgp", self.carol_fpr,
                          "encrypt")
        self.assert_skipped(b["skipped"], ["confidential", "mip"])
        b = self.explain([CAROL], msg=self.msg())[CAROL]
        self.assert_block(b, "openpgp", "partner", "encrypt", "openpgp", self.carol_fpr,
                          "encrypt")
        self.assert_skipped(b["skipped"], ["confidential", "mip", "subject-tag"])
        self.assertEqual(b["skipped"][2][1], 'subject tag "[secure]" not in the Subject')

    def test_untagged_partner_without_key_sent_plain(self):
        b = self.explain([XPART], msg=self.msg())[XPART]
        self.assert_block(b, "plain", "partner", "encrypt", "-", "-", "plain")
        self.assertEqual(b["skipped"][2], ("subject-tag",
                                           'subject tag "[secure]" not in the Subject'))

    def test_default_decides(self):
        blocks = self.explain([ERIN], msg=self.msg())
        self.assert_block(blocks[ERIN], "plain", "outbound.default", "encrypt-if-key", "-", "-",
                          "plain")
        self.assert_skipped(blocks[ERIN]["skipped"], RULES)
        b = self.explain([DAVE], msg=self.msg())[DAVE]
        self.assert_block(b, "openpgp", "outbound.default", "encrypt-if-key", "openpgp",
                          self.dave_fpr, "encrypt")

    def test_header_rule_decides_first(self):
        msg = self.msg("[secure] Q3", extra=[("Sensitivity", "Company-Confidential")])
        b = self.explain([ERIN], msg=msg)[ERIN]
        self.assert_block(b, "plain", "confidential", "encrypt", "-", "-", "reject")
        self.assert_skipped(b["skipped"], [])

    def test_tempfail_outcome(self):
        b = self.explain([BANK], msg=self.msg())[BANK]
        self.assert_block(b, "plain", "bank", "encrypt", "-", "-", "tempfail")
        self.assert_skipped(b["skipped"], ["confidential", "mip", "subject-tag", "partner"])

    def test_internal_recipient(self):
        b = self.explain([BOB], msg=self.msg("[secure] Q3"))[BOB]
        self.assertEqual(b["class"].split(" ", 1)[0], "internal", b)
        self.assertIn(b["outcome"], ("pass", "plain"), b)
        self.assertEqual(b["key"], "-")

    def test_several_recipients_one_block_each(self):
        blocks = self.explain([XPART, CAROL, BOB], msg=self.msg("[secure] Q3"))
        self.assertEqual(blocks[XPART]["outcome"], "reject")
        self.assertEqual(blocks[CAROL]["outcome"], "encrypt")
        self.assertEqual(blocks[CAROL]["key"], self.carol_fpr)
        self.assertEqual(blocks[BOB]["class"].split(" ", 1)[0], "internal")

    def test_without_message_content_conditions_do_not_match(self):
        blocks = self.explain([XPART, ERIN, BANK])
        for addr in (XPART, ERIN, BANK):
            skipped = dict(blocks[addr]["skipped"])
            for rule in CONTENT_RULES:
                with self.subTest(addr=addr, rule=rule):
                    self.assertIn(rule, skipped)
                    self.assertRegex(skipped[rule], r"(?i)message content")
        self.assert_block(blocks[XPART], "plain", "partner", "encrypt", "-", "-", "plain")
        self.assert_block(blocks[ERIN], "plain", "outbound.default", "encrypt-if-key", "-", "-",
                          "plain")
        self.assert_block(blocks[BANK], "plain", "bank", "encrypt", "-", "-", "tempfail")

    # -- who counts as outbound ------------------------------------------------

    def test_untrusted_client_is_pass(self):
        for kw in ({"client_ip": "192.0.2.1"}, {"client_ip": "2001:db8::7"},
                   {"client_ip": "unknown"}):
            with self.subTest(**kw):
                doc, r = self.explain_json_one(CAROL, msg=self.msg("[secure] Q3"), **kw)
                self.assertIs(doc["outbound"], False)
                self.assertTrue(doc["reason"])
                self.assertEqual(r["class"], "pass")
                self.assertEqual(r["outcome"], "pass")
                self.assertIsNone(r["rule"])
                b = self.explain([CAROL], msg=self.msg("[secure] Q3"), **kw)[CAROL]
                self.assertEqual(b["class"].split(" ", 1)[0], "pass")
                self.assertEqual(b["outcome"], "pass")

    def test_external_sender_is_pass(self):
        doc, r = self.explain_json_one(CAROL, msg=self.msg("[secure] Q3"),
                                       sender="mallory@other.example")
        self.assertIs(doc["outbound"], False)
        self.assertEqual((r["class"], r["outcome"]), ("pass", "pass"))

    def test_auth_makes_outbound(self):
        doc, r = self.explain_json_one(XPART, msg=self.msg("[secure] Q3"), client_ip="192.0.2.1",
                                       auth="alice")
        self.assertIs(doc["outbound"], True)
        self.assertEqual((r["rule"], r["outcome"]), ("subject-tag", "reject"))

    # -- JSON form -------------------------------------------------------------

    def test_json_fields_and_types(self):
        doc = self.explain([XPART, CAROL, ERIN], msg=self.msg("[secure] Q3"), json_out=True)
        self.assertIs(doc["outbound"], True)
        self.assertIsInstance(doc["reason"], str)
        keys = {"address", "class", "class_reason", "rule", "action", "method", "key",
                "on_missing_key", "outcome", "skipped"}
        by_addr = {}
        for r in doc["recipients"]:
            self.assertLessEqual(keys, set(r), r)
            self.assertIn(r["class"], CLASSES)
            self.assertIn(r["outcome"], OUTCOMES)
            self.assertIsInstance(r["class_reason"], str)
            self.assertIsInstance(r["skipped"], list)
            for s in r["skipped"]:
                self.assertEqual(set(s), {"rule", "why"}, s)
            by_addr[r["address"]] = r
        self.assertEqual(list(by_addr), [XPART, CAROL, ERIN], "recipients not in --to order")
        x = by_addr[XPART]
        self.assertEqual((x["class"], x["rule"], x["action"], x["method"], x["key"],
                          x["on_missing_key"], x["outcome"]),
                         ("plain", "subject-tag", "encrypt", None, None, "reject", "reject"))
        self.assertEqual([s["rule"] for s in x["skipped"]], ["confidential", "mip"])
        c = by_addr[CAROL]
        self.assertEqual((c["class"], c["rule"], c["method"], c["key"], c["outcome"]),
                         ("openpgp", "subject-tag", "openpgp", self.carol_fpr, "encrypt"))

    def test_json_default_rule_is_null(self):
        _doc, r = self.explain_json_one(ERIN, msg=self.msg())
        self.assertIsNone(r["rule"])
        self.assertEqual((r["action"], r["method"], r["key"], r["outcome"]),
                         ("encrypt-if-key", None, None, "plain"))
        self.assertEqual([s["rule"] for s in r["skipped"]], RULES)
        self.assertEqual(r["skipped"][2]["why"], 'subject tag "[secure]" not in the Subject')
        _doc, r = self.explain_json_one(DAVE, msg=self.msg())
        self.assertIsNone(r["rule"])
        self.assertEqual((r["class"], r["key"], r["outcome"]), ("openpgp", self.dave_fpr, "encrypt"))

    def test_json_on_missing_key_values(self):
        _doc, r = self.explain_json_one(XPART, msg=self.msg())
        self.assertEqual((r["rule"], r["on_missing_key"], r["outcome"]),
                         ("partner", "send-plain", "plain"))
        _doc, r = self.explain_json_one(BANK, msg=self.msg())
        self.assertEqual((r["rule"], r["on_missing_key"], r["outcome"]),
                         ("bank", "tempfail", "tempfail"))

    def test_json_agrees_with_text(self):
        rcpts = [XPART, CAROL, ERIN, BANK, BOB]
        for msg in (self.msg("[secure] Q3"), self.msg(), None):
            blocks = self.explain(rcpts, msg=msg)
            doc = self.explain(rcpts, msg=msg, json_out=True)
            for r in doc["recipients"]:
                b = blocks[r["address"]]
                with self.subTest(addr=r["address"], content=msg is not None):
                    self.assertEqual(b["class"].split(" ", 1)[0], r["class"])
                    self.assertEqual(b["outcome"], r["outcome"])
                    self.assertEqual(b["action"], r["action"])
                    self.assertEqual(b["method"], r["method"] or "-")
                    self.assertEqual(b["key"], r["key"] or "-")
                    self.assertEqual(b["skipped"],
                                     [(s["rule"], s["why"]) for s in r["skipped"]])
                    if r["class"] in ("openpgp", "plain"):
                        self.assertEqual(b["rule"], r["rule"] or "outbound.default")

    # -- errors ------------------------------------------------------------------

    def test_usage_and_config_errors_exit_1(self):
        cp = self.gw.run("policy", "explain", "-c", self.gw.policy, "--to", CAROL)
        self.assertEqual(cp.returncode, 1, "without --from: " + cp.stdout + cp.stderr)
        cp = self.gw.run("policy", "explain", "-c", self.gw.policy, "--from", SENDER)
        self.assertEqual(cp.returncode, 1, "without --to: " + cp.stdout + cp.stderr)
        cp = self.gw.run("policy", "explain", "-c", self.gw.policy, "--from", SENDER,
                         "--to", CAROL, "-i", os.path.join(self.tmp, "no-such.eml"))
        self.assertEqual(cp.returncode, 1, "missing input: " + cp.stdout + cp.stderr)
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(POLICY.replace("      action: encrypt\n      on_missing_key: tempfail\n",
                                   "      action: encrypt\n      colour: red\n"))
        cp = self.gw.run("policy", "explain", "-c", bad, "--from", SENDER, "--to", CAROL)
        self.assertEqual(cp.returncode, 1, "invalid policy: " + cp.stdout + cp.stderr)
        line = POLICY.count("\n", 0, POLICY.index("on_missing_key: tempfail")) + 1
        self.assertRegex(cp.stderr, r"%s:%d:7: unknown key \"colour\"" % (re.escape(bad), line))

    # -- explain says what process does ------------------------------------------

    def test_outcome_matches_process(self):
        cases = [
            (self.msg("[secure] Q3"), XPART, "127.0.0.1"),
            (self.msg("[secure] Q3"), CAROL, "127.0.0.1"),
            (self.msg("[secure] Q3"), XPART, "192.0.2.1"),
            (self.msg("[secure] Q3"), BOB, "127.0.0.1"),
            (self.msg(), XPART, "127.0.0.1"),
            (self.msg(), ERIN, "127.0.0.1"),
            (self.msg(), DAVE, "127.0.0.1"),
            (self.msg(), BANK, "127.0.0.1"),
            (self.msg(extra=[("Sensitivity", "company-confidential")]), DAVE, "127.0.0.1"),
            (self.msg(extra=[("Sensitivity", "company-confidential")]), ERIN, "127.0.0.1"),
        ]
        for msg, rcpt, ip in cases:
            with self.subTest(rcpt=rcpt, ip=ip, subject=sgtest.field_values(msg, "Subject")[0]):
                _doc, r = self.explain_json_one(rcpt, msg=msg, client_ip=ip)
                rc, out, err = self.gw.process(msg, SENDER, [rcpt], client_ip=ip)
                self.assertNotIn(MARKER, err)
                outcome = r["outcome"]
                if outcome == "reject":
                    self.assertEqual(rc, 2, err)
                    self.assertIsNone(out)
                elif outcome == "tempfail":
                    self.assertEqual(rc, 3, err)
                    self.assertIsNone(out)
                elif outcome == "encrypt":
                    self.assertEqual(rc, 0, err)
                    self.assertIsNotNone(out)
                    sgtest.pgp_mime_parts(out)
                    sgtest.assert_decrypts_to_original(self, self.homes[rcpt], msg, out)
                else:
                    self.assertIn(outcome, ("plain", "pass"))
                    self.assertEqual(rc, 0, err)
                    self.assertIsNotNone(out)
                    self.assertIn(MARKER.encode(), out, "%s, but the result is not plain"
                                  % outcome)
                    self.assertNotIn(b"multipart/encrypted", out)
                if r["rule"] is not None and outcome != "pass":
                    self.assertEqual(sgtest.stderr_field(err, "rule"), [r["rule"]], err)


if __name__ == "__main__":
    unittest.main()
