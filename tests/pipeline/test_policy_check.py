"""`sealgate policy check`: a valid file says OK, an invalid one lists every
problem as FILE:LINE:COL: message.

Positions are 1-based and computed here from the YAML text: the line and
column of the offending key or value. The policy that `process` loads goes
through the same validator.
"""

import os
import re
import subprocess
import unittest

import sgtest

VALID = sgtest.policy_yaml(trusted_networks='127.0.0.0/8, "::1"', rules=sgtest.REFERENCE_RULES + """\
    - name: bank
      when: { recipient: ["*@bank.example", "*.bank.example"], sender: alice@example.com }
      action: encrypt
      on_missing_key: tempfail
    - name: big
      when: { size_over: 1M }
      action: encrypt-if-key
""")

# Eight rules, each with one problem (rule 1 is fine). Line numbers and
# columns are looked up in this text, never written down by hand.
BAD = sgtest.policy_yaml(rules="""\
    - name: x
      when: { recipient_domain: [a.example] }
      action: encrypt
    - name: y
      colour: blue
      when: { recipient_domain: [b.example] }
      action: encrypt
    - when: { recipient_domain: [c.example] }
      action: encrypt
    - name: x
      when: { sender: "*@example.com" }
      action: encrypt
    - name: re
      when: { header: { name: Sensitivity, matches: "(" } }
      action: encrypt
    - name: act
      when: { recipient_domain: d.example }
      action: encrypt-always
    - name: empty
      when: {}
      action: encrypt
    - name: soft
      when: { recipient_domain: e.example }
      action: encrypt-if-key
      on_missing_key: tempfail
    - name: stripper
      when: { recipient_domain: f.example }
      action: encrypt
      strip_tag: false
""")

BAD_DEFAULT_CIPHER = sgtest.policy_yaml(action="encrypt").replace(
    "methods: [openpgp] }", "methods: [openpgp], smime_cipher: des }")

LINE_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$")


def pos(text, line_text, token, nth=1):
    """(line, column), 1-based, of `token` on the nth line of text that
    contains line_text."""
    seen = 0
    for i, line in enumerate(text.splitlines(), 1):
        if line_text in line:
            seen += 1
            if seen == nth:
                col = line.index(token)
                return i, col + 1
    raise AssertionError("no line %d containing %r" % (nth, line_text))


class PolicyCheck(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.bin = sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgchk")
        cls.valid = cls.write("valid", VALID)
        cls.bad = cls.write("bad", BAD)
        cls.bad_default = cls.write("baddef", BAD_DEFAULT_CIPHER)
        cp = cls.check(cls.bad)
        cls.bad_rc, cls.bad_out, cls.bad_err = cp.returncode, cp.stdout, cp.stderr
        cls.problems = []                  # [(line, col, message)]
        for line in cls.bad_err.splitlines():
            m = LINE_RE.match(line)
            if m and m.group("file") == cls.bad:
                cls.problems.append((int(m.group("line")), int(m.group("col")), m.group("msg")))

    @classmethod
    def write(cls, name, text):
        d = os.path.join(cls.tmp, name)
        os.makedirs(os.path.join(d, "spool"), mode=0o700)
        path = os.path.join(d, "policy.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    @classmethod
    def check(cls, path, cwd=None):
        cp = subprocess.run([cls.bin, "policy", "check", "-c", path], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=sgtest.CMD_TIMEOUT, check=False)
        return subprocess.CompletedProcess(cp.args, cp.returncode,
                                           cp.stdout.decode("utf-8", "replace"),
                                           cp.stderr.decode("utf-8", "replace"))

    def problem(self, message_re):
        """The one reported problem whose message matches message_re."""
        found = [p for p in self.problems if re.search(message_re, p[2])]
        self.assertEqual(len(found), 1, "expected one problem matching %r, got %r; stderr:\n%s"
                         % (message_re, found, self.bad_err))
        return found[0]

    def assert_at(self, message_re, *positions):
        line, col, msg = self.problem(message_re)
        self.assertIn((line, col), positions,
                      "%r reported at %d:%d, expected %s" % (
                          msg, line, col, " or ".join("%d:%d" % p for p in positions)))

    # -- valid files ---------------------------------------------------------

    def test_valid_policy_ok(self):
        cp = self.check(self.valid)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout.splitlines(), ["%s: OK" % self.valid])
        self.assertEqual(cp.stderr, "")

    def test_valid_policy_relative_path(self):
        cp = self.check(os.path.join("valid", "policy.yaml"), cwd=self.tmp)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(cp.stdout.splitlines(), ["valid/policy.yaml: OK"])

    # -- a file with many problems ---------------------------------------------

    def test_invalid_policy_exit_1_and_no_ok(self):
        self.assertEqual(self.bad_rc, 1, self.bad_out + self.bad_err)
        self.assertNotIn("OK", self.bad_out)

    def test_every_problem_reported_as_file_line_col(self):
        for line in self.bad_err.splitlines():
            self.assertRegex(line, r"^%s:\d+:\d+: \S" % re.escape(self.bad),
                             "stderr line not in FILE:LINE:COL: form")
        expected = [
            r'^unknown key "colour" in "outbound\.rules\[\d\]"$',
            r'^missing required key "name" in "outbound\.rules\[\d\]"$',
            r'^duplicate rule name "x"$',
            r'^invalid regular expression "\(": \S',
            r'^unknown action "encrypt-always" \(expected one of: none, sign, encrypt, '
            r'sign-encrypt, encrypt-if-key\)$',
            r'rule "empty" has no conditions: ',
            r'on_missing_key has no effect with action "encrypt-if-key"',
            r'rule "stripper": strip_tag needs a subject_tag condition',
        ]
        for message_re in expected:
            with self.subTest(problem=message_re):
                self.problem(message_re)
        self.assertEqual(len(self.problems), len(expected),
                         "unexpected extra problems:\n" + self.bad_err)

    def test_rule_index_in_messages(self):
        # colour is in the second rule, the nameless rule is the third; the
        # reported index must be consistent (1-based, as "rule N" of the file).
        self.problem(r'^unknown key "colour" in "outbound\.rules\[2\]"$')
        self.problem(r'^missing required key "name" in "outbound\.rules\[3\]"$')

    def test_exact_texts(self):
        for text in ('rule "soft": on_missing_key has no effect with action "encrypt-if-key"',
                     'rule "stripper": strip_tag needs a subject_tag condition'):
            with self.subTest(text=text):
                self.problem("^" + re.escape(text) + "$")
        self.problem(r'^rule "empty" has no conditions: it would match every message')

    # -- positions: the offending key or value --------------------------------

    def test_position_unknown_key(self):
        self.assert_at(r'unknown key "colour"', pos(BAD, "colour: blue", "colour"))

    def test_position_missing_name(self):
        # No key to point at: the rule itself (its first key, or its dash).
        first_key = pos(BAD, "- when: { recipient_domain: [c.example] }", "when")
        dash = pos(BAD, "- when: { recipient_domain: [c.example] }", "-")
        self.assert_at(r'missing required key "name"', first_key, dash)

    def test_position_duplicate_name(self):
        self.assert_at(r'duplicate rule name "x"',
                       pos(BAD, "- name: x", "name", nth=2),
                       pos(BAD, "- name: x", "x", nth=2))

    def test_position_invalid_regex(self):
        self.assert_at(r'invalid regular expression', pos(BAD, 'matches: "("', '"("'))

    def test_position_unknown_action(self):
        self.assert_at(r'unknown action "encrypt-always"',
                       pos(BAD, "action: encrypt-always", "encrypt-always"))

    def test_position_rule_without_conditions(self):
        self.assert_at(r'rule "empty" has no conditions',
                       pos(BAD, "when: {}", "when"), pos(BAD, "when: {}", "{}"))

    def test_position_useless_on_missing_key(self):
        self.assert_at(r'on_missing_key has no effect',
                       pos(BAD, "on_missing_key: tempfail", "on_missing_key"),
                       pos(BAD, "on_missing_key: tempfail", "tempfail"))

    def test_position_strip_tag_without_tag(self):
        self.assert_at(r'strip_tag needs a subject_tag condition',
                       pos(BAD, "strip_tag: false", "strip_tag"),
                       pos(BAD, "strip_tag: false", "false"))

    def test_position_bad_value_in_default(self):
        cp = self.check(self.bad_default)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        lines = [l for l in cp.stderr.splitlines()
                 if 'unknown smime_cipher "des" (expected one of: aes-256-gcm, '
                    'aes-128-gcm, aes-256-cbc, aes-128-cbc)' in l]
        self.assertEqual(len(lines), 1, cp.stderr)
        m = LINE_RE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertEqual(m.group("file"), self.bad_default)
        got = (int(m.group("line")), int(m.group("col")))
        want = (pos(BAD_DEFAULT_CIPHER, "smime_cipher: des", "smime_cipher"),
                pos(BAD_DEFAULT_CIPHER, "smime_cipher: des", "des"))
        self.assertIn(got, want, "%s; expected %s" % (lines[0], " or ".join(
            "%d:%d" % p for p in want)))

    # -- other problems, same validator in process ----------------------------

    def test_yaml_syntax_error_has_position(self):
        path = self.write("syntax", "version: 1\ngateway:\n  keystore: [store\n  spool_dir: x\n")
        cp = self.check(path)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.assertRegex(cp.stderr, r"^%s:\d+:\d+: " % re.escape(path))
        self.assertNotIn("OK", cp.stdout)

    def test_duplicate_key_and_bad_values(self):
        text = sgtest.policy_yaml(trusted_networks="127.0.0.0/33", methods="openpgp, pigeon",
                                  rules="    - name: a\n"
                                        "      when: { recipient_domain: a.example }\n"
                                        "      action: encrypt\n"
                                        "      action: none\n"
                                        "      on_missing_key: maybe\n")
        path = self.write("dupkey", text)
        cp = self.check(path)
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        want = {
            "127.0.0.0/33": pos(text, "127.0.0.0/33", "127.0.0.0/33"),
            "pigeon": pos(text, "pigeon", "pigeon"),
            '"action"': pos(text, "action: none", "action"),
            "maybe": pos(text, "on_missing_key: maybe", "maybe"),
        }
        for word, (line, col) in want.items():
            with self.subTest(word=word):
                self.assertRegex(cp.stderr, r"(?m)^%s:%d:%d: .*%s" % (
                    re.escape(path), line, col, re.escape(word)))

    def test_signature_date_tolerance(self):
        base = sgtest.policy_yaml()
        for value in ("1h", "30m", "2d", "45s", "90", "366d"):
            with self.subTest(value=value):
                path = self.write("tol-ok-" + value,
                                  base + "inbound: { signature_date_tolerance: %s }\n" % value)
                cp = self.check(path)
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        for value in ("0", "0h", "1w", "1.5h", "-1h", "h", "1 h", "1H", "367d",
                      "99999999999999999999", '""', "[1h]"):
            with self.subTest(value=value):
                text = base + "inbound: { signature_date_tolerance: %s }\n" % value
                path = self.write("tol-bad-%d" % abs(hash(value)), text)
                cp = self.check(path)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                line, col = pos(text, "signature_date_tolerance", value)
                self.assertRegex(cp.stderr, r"(?m)^%s:%d:%d: .*signature_date_tolerance" % (
                    re.escape(path), line, col))
        path = self.write("tol-bad-msg", base + "inbound: { signature_date_tolerance: 2w }\n")
        self.assertIn('"signature_date_tolerance": invalid duration "2w" (expected a number '
                      'of seconds, or with s, m, h or d; more than 0, at most 366d)',
                      self.check(path).stderr)

    def test_metrics_and_log_format(self):
        base = sgtest.policy_yaml()
        anchor = '  spool_dir: "spool"\n'
        for key, value in (("metrics", '"127.0.0.1:9108"'), ("metrics", '"[::1]:9108"'),
                           ("metrics", '"127.0.0.1:65535"'), ("log_format", "text"),
                           ("log_format", "json")):
            with self.subTest(value=value):
                path = self.write("ok-%s-%d" % (key, abs(hash(value))),
                                  base.replace(anchor, anchor + "  %s: %s\n" % (key, value)))
                cp = self.check(path)
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)

        def invalid(value):
            return ('"metrics": invalid address "%s" (expected IPV4:PORT or [IPV6]:PORT, '
                    'such as 127.0.0.1:9108)' % value)

        for key, value, message in (
                ("metrics", '"localhost:9108"', invalid("localhost:9108")),
                ("metrics", '"127.0.0.1"', invalid("127.0.0.1")),
                ("metrics", '"127.0.0.1:0"', invalid("127.0.0.1:0")),
                ("metrics", '"127.0.0.1:70000"', invalid("127.0.0.1:70000")),
                ("metrics", '"127.0.0.1:+9108"', invalid("127.0.0.1:+9108")),
                ("metrics", '"127.0.0.1:9108 "', invalid("127.0.0.1:9108 ")),
                ("metrics", '"[::1]9108"', invalid("[::1]9108")),
                ("metrics", '"::1:9108"', invalid("::1:9108")),
                ("metrics", '"[127.0.0.1]:9108"', invalid("[127.0.0.1]:9108")),
                ("metrics", '""', invalid("")),
                ("metrics", "[a]", '"metrics" must be an address and port'),
                ("log_format", "xml", 'unknown log_format "xml" (expected one of: text, json)')):
            with self.subTest(value=value):
                text = base.replace(anchor, anchor + "  %s: %s\n" % (key, value))
                path = self.write("bad-%s-%d" % (key, abs(hash(value))), text)
                cp = self.check(path)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                self.assertNotIn("OK", cp.stdout)
                line, col = pos(text, "%s: %s" % (key, value), value)
                self.assertEqual(cp.stderr, "%s:%d:%d: %s\n" % (path, line, col, message))

    def test_internal_domains_not_a_public_suffix(self):
        # ".co.uk" would make every address of every domain registered
        # under co.uk the organisation's own: its mail handled as
        # internal. Refused where it stands, in any spelling; domains of
        # the organisation under a public suffix are fine. An exact
        # domain is refused when it is an ICANN suffix; a private entry
        # ("github.io") is its owner's own domain too.
        for value in ("example.com", ".example.co.uk", "example.co.uk",
                      ".mail.example.com", "github.io", ".city.kawasaki.jp"):
            with self.subTest(value=value):
                path = self.write("psl-ok-%d" % abs(hash(value)),
                                  sgtest.policy_yaml(internal_domains='"%s"' % value))
                cp = self.check(path)
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        for value in (".co.uk", ".CO.UK", "co.uk", "com", ".com.au", ".github.io",
                      ".foo.kawasaki.jp", ".公司.cn", ".xn--55qx5d.cn"):
            with self.subTest(value=value):
                text = sgtest.policy_yaml(internal_domains='example.com, "%s"' % value)
                path = self.write("psl-bad-%d" % abs(hash(value)), text)
                cp = self.check(path)
                self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                line, col = pos(text, '"%s"' % value, '"%s"' % value)
                self.assertEqual(cp.stderr, '%s:%d:%d: "%s" in "internal_domains" is a '
                                 'public suffix, under which anyone can register a domain: '
                                 "every address there would count as the organisation's\n"
                                 % (path, line, col, value))

    def test_process_refuses_invalid_policy(self):
        inp = os.path.join(self.tmp, "in.eml")
        outp = os.path.join(self.tmp, "out.eml")
        with open(inp, "wb") as f:
            f.write(sgtest.make_message(sgtest.std_headers(), "hello\r\n"))
        cp = sgtest.run([self.bin, "process", "-c", self.bad, "--from", "alice@example.com",
                         "--to", "carol@partner.example", "--client-ip", "127.0.0.1",
                         "-i", inp, "-o", outp])
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 1, err)
        line, col = pos(BAD, "colour: blue", "colour")
        self.assertIn('%s:%d:%d: unknown key "colour"' % (self.bad, line, col), err)
        self.assertFalse(os.path.exists(outp) and os.path.getsize(outp) > 0)


if __name__ == "__main__":
    unittest.main()
