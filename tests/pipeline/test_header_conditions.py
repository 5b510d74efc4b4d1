"""Header conditions see the unfolded value without the white space around
it: a folded `Sensitivity:` field, one with trailing blanks or tabs, or with
leading blanks still matches an anchored `^company-confidential$`, so the
mandatory rule refuses mail to a keyless recipient (550) and encrypts mail to
carol, never sends it plain.
"""

import os
import unittest

import sgtest
from sgtest import CAROL, ERIN, MARKER, SENDER, make_message, std_headers

RULES = """\
    - name: confidential
      when: { header: { name: Sensitivity, matches: "^company-confidential$" } }
      action: encrypt
      on_missing_key: reject
"""

VALUES = {
    "folded before the value": "\r\n\tCompany-Confidential",
    "folded, value on a continuation line with blanks": "\r\n   Company-Confidential  ",
    "trailing blank": "Company-Confidential ",
    "trailing tab": "Company-Confidential\t",
    "leading blanks": "    Company-Confidential",
    "blanks and tabs around": " \t Company-Confidential \t ",
    "encoded word with a trailing space": "=?utf-8?q?Company-Confidential_?=",
}


class HeaderConditions(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, [(cls.carol, _fpr)] = sgtest.class_set_up("sghdr", CAROL)
        cls.gw = sgtest.policy_gateway(os.path.join(cls.tmp, "gw"),
                                       sgtest.policy_yaml(rules=RULES))
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL)])

    def message(self, value):
        return make_message(std_headers(extra=[("Sensitivity", value)]) +
                            [("Content-Type", "text/plain")], "secret %s\r\n" % MARKER)

    def test_keyless_recipient_refused(self):
        for name, value in VALUES.items():
            with self.subTest(name):
                msg = self.message(value)
                rc, out, err = self.gw.process(msg, SENDER, [ERIN])
                self.assertEqual(rc, 2, err)
                self.assertRegex(err, r'550 5\.7\.1 encryption required by rule '
                                      r'"confidential"; no usable key for: %s' % ERIN)
                self.assertIsNone(out)

    def test_recipient_with_key_gets_it_encrypted(self):
        for name, value in VALUES.items():
            with self.subTest(name):
                msg = self.message(value)
                rc, out, err = self.gw.process(msg, SENDER, [CAROL])
                self.assertEqual(rc, 0, err)
                self.assertIn("confidential", err)
                sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    def test_other_value_not_matched(self):
        msg = self.message("Company-Confidential-ish ")
        rc, out, err = self.gw.process(msg, SENDER, [ERIN])
        self.assertEqual(rc, 0, err)
        self.assertTrue(out == msg)


if __name__ == "__main__":
    unittest.main()
