"""Content, not labels, through a real Postfix.

A private Postfix calls `sealgate milter` (policy: default encrypt-if-key,
rule "confidential" on `Sensitivity: ^company-confidential$`, mandatory,
on_missing_key reject) and relays to smtp-sink. carol@partner.example has a
key; nokey@other.example has none.

  a) messages labelled encrypted around readable content -- a signed
     `PGP MESSAGE` in text/plain, multipart/encrypted around plaintext,
     application/pgp-encrypted plaintext -- reach the sink as PGP/MIME that
     gpg in carol's home decrypts to the original entity;
  b) real PGP/MIME encrypted by the sender passes byte for byte;
  c) a folded Sensitivity field, one with a trailing blank or tab, or with
     leading blanks, matches the anchored rule: mail to the keyless
     recipient is refused with 550 5.7.1 after DATA, nothing reaches the
     sink.
"""

import os
import unittest

import miltertest
import sgtest
from miltertest import ALICE, CAROL, marker, with_diagnostics

NOKEY = "nokey@other.example"

POLICY = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool", trusted_networks: [127.0.0.0/8] }
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp] }
  rules:
    - name: confidential
      when: { header: { name: Sensitivity, matches: "^company-confidential$" } }
      action: encrypt
      on_missing_key: reject
"""

STATE = {}

BINARY = miltertest.require_tools()


def setUpModule():
    miltertest.set_up_gateway(STATE, "sgpc", policy=POLICY)
    alice = sgtest.GpgHome(os.path.join(STATE["tmp"], "alice"))
    alice.gen_key("Alice Example", ALICE)
    alice.import_keys(STATE["carol"].export_public(CAROL))
    STATE["alice"] = alice
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "alice" in STATE:
        STATE["alice"].kill()


def message(to, fields, body):
    headers = sgtest.std_headers(sender="Alice Example <%s>" % ALICE, to="<%s>" % to)
    return sgtest.make_message(headers + fields, body, eol=b"\n")


def pgp_mime(payload):
    body = (b"--enc42\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n"
            b"--enc42\nContent-Type: application/octet-stream\n\n" + payload
            + b"\n--enc42--\n")
    return message(CAROL, [("Content-Type", 'multipart/encrypted; '
                            'protocol="application/pgp-encrypted"; boundary="enc42"')],
                   body)


class PostfixContent(miltertest.MilterTestCase):

    state = STATE

    def send(self, rcpt, msg):
        code, text, refused = self.pf.send_smtplib(ALICE, [rcpt], msg)
        return code, text, refused

    def delivered(self):
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        return msgs[0]

    @with_diagnostics
    def test_a_labels_around_readable_content_are_encrypted(self):
        alice = self.state["alice"]
        signed = alice.gpg("--sign", "--armor", input_bytes=b"signed words\n").stdout
        secret = marker()
        cases = [
            ("signed PGP MESSAGE", message(CAROL, [("Content-Type", "text/plain")], signed),
             None),
            ("multipart/encrypted around plaintext",
             pgp_mime(("plain %s" % secret).encode()), secret),
            ("application/pgp-encrypted plaintext",
             message(CAROL, [("Content-Type", "application/pgp-encrypted")],
                     "plain %s\n" % secret), secret),
        ]
        for name, msg, clear in cases:
            with self.subTest(name):
                self.pf.sink.clear()
                code, text, _ = self.send(CAROL, msg)
                self.assertEqual(code, 250, text)
                got = self.delivered()
                if clear is not None:
                    self.assert_encrypted_copy(got, msg, clear)
                else:
                    out = sgtest.canon(miltertest.strip_added_received(bytes(got)))
                    self.assertNotEqual(out, sgtest.canon(msg), "passed untouched")
                    sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    @with_diagnostics
    def test_b_real_pgp_mime_passes_byte_for_byte(self):
        secret = marker()
        armored = self.state["alice"].encrypt(("Content-Type: text/plain\n\n%s\n"
                                               % secret).encode(), [CAROL])
        msg = pgp_mime(armored.rstrip(b"\n"))
        code, text, _ = self.send(CAROL, msg)
        self.assertEqual(code, 250, text)
        got = self.delivered()
        self.assertEqual(miltertest.strip_added_received(bytes(got)), msg,
                         "the encrypted message was changed")

    @with_diagnostics
    def test_c_header_condition_sees_trimmed_value(self):
        values = {
            "folded": "\n\tCompany-Confidential",
            "trailing blank": "Company-Confidential ",
            "trailing tab": "Company-Confidential\t",
            "leading blanks": "    Company-Confidential",
        }
        for name, value in values.items():
            with self.subTest(name):
                msg = message(NOKEY, [("Sensitivity", value),
                                      ("Content-Type", "text/plain")],
                              "confidential %s\n" % marker())
                code, text, _ = self.send(NOKEY, msg)
                self.assertEqual(code, 550, text)
                self.assertRegex(text, r'5\.7\.1 encryption required by rule "confidential"; '
                                       r'no usable key for: %s' % NOKEY)
        self.assertEqual(self.pf.sink.files(), [])


if __name__ == "__main__":
    unittest.main()
