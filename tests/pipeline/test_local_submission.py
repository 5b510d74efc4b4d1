"""`sealgate process` and `sealgate policy explain` without --client-ip and
--auth: local submission, the client the milter sees for mail from `sendmail`
on the gateway host (Postfix's non_smtpd_milters: 127.0.0.1, no login).

Keystore: alice@example.com's OpenPGP secret key, carol@partner.example's
public key (her secret key only in her own GnuPG home). Rules: "must-sign"
(recipient signed@other.example) signs, reject when it cannot; "may-sign"
(recipient maybe@other.example) signs, send-plain. Default encrypt-if-key.

Gateways (one keystore):
  local     trusted_networks and signing_networks left at their defaults
            (loopback trusted; nobody signs without a login);
  nonloop   trusted_networks [10.0.0.0/8]: loopback is not trusted;
  signnets  signing_networks [127.0.0.0/8].

  a) no options: alice -> carol is encrypted (gpg decrypts it to the
     original), explain says outbound yes; both name the assumed client; the
     run is the one `--client-ip 127.0.0.1` (no login) gives.
  b) a policy whose trusted_networks lack loopback: not outbound, as for
     `--client-ip 127.0.0.1`; a trusted address of that policy is.
  c) --client-ip 192.0.2.7: untrusted, passed through; the output names the
     client, also with --auth, --auth alone and --client-ip unknown.
  d) no options, no signing_networks: a sign rule does not sign; reject and
     send-plain answer exactly as for 127.0.0.1 without a login.
  e) signing_networks with loopback: no options signs, as 127.0.0.1 does.
  f) --client-ip that is not an address, an empty --auth: usage errors;
     --help says what the default is.
"""

import json
import os
import unittest

import signtest
import sgtest
from sgtest import MARKER, make_message, std_headers

ALICE = sgtest.SENDER
CAROL = sgtest.CAROL
SIGNED = "signed@other.example"
MAYBE = "maybe@other.example"
UNTRUSTED = "192.0.2.7"

ASSUMED = "127.0.0.1 (assumed: local submission; --client-ip/--auth to change)"
NOT_SIGNING = ("client 127.0.0.1 is not authenticated (SMTP AUTH) and not in "
               "gateway.signing_networks")
SIGN_STATUS = ("NEWSIG", "GOODSIG", "VALIDSIG", "BADSIG", "ERRSIG")

def policy(gateway_extra=""):
    return ("version: 1\n"
            "gateway:\n"
            "  keystore: \"../store\"\n"
            "  spool_dir: \"spool\"\n"
            + gateway_extra +
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { action: encrypt-if-key, methods: [openpgp] }\n"
            "  rules:\n" + sgtest.SIGN_RULES)


POLICIES = {
    "local": policy(),
    "nonloop": policy("  trusted_networks: [10.0.0.0/8]\n"),
    "signnets": policy("  signing_networks: [127.0.0.0/8]\n"),
}


class LocalSubmission(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        tmp = cls.tmp = sgtest.tmpdir("sgloc")
        cls.scratch = signtest.Scratch(os.path.join(tmp, "chk"))
        signers = sgtest.GpgHome(os.path.join(tmp, "signers"))
        cls.alice_fpr = signers.gen_key("Alice Example", ALICE)
        cls.verifier = sgtest.GpgHome(os.path.join(tmp, "vrf"))
        cls.verifier.import_keys(signers.export_public(ALICE))
        cls.carol, cls.carol_fpr = sgtest.new_key_home(tmp, CAROL)
        files = [signtest.write(os.path.join(tmp, "alice.sec.asc"),
                                signers.export_secret(ALICE)),
                 sgtest.export_public_key(tmp, cls.carol, CAROL)]
        signers.kill()
        cls.gw = sgtest.policy_gateways(tmp, POLICIES, files)

    @classmethod
    def tearDownClass(cls):
        cls.carol.kill()
        cls.verifier.kill()

    # -- helpers ---------------------------------------------------------

    @staticmethod
    def msg(to=CAROL):
        return make_message(std_headers(to="<%s>" % to)
                            + [("Content-Type", "text/plain; charset=us-ascii")],
                            "Figures. %s\r\n" % MARKER)

    def process(self, gwname, msg, rcpt, client_ip=None, auth=None):
        """`sealgate process` with only the client options given; stderr's
        first two lines must be the verdict and the client. Returns (rc,
        output or None, stderr, client line's value)."""
        extra = ["--auth", auth] if auth is not None else []
        rc, out, err = self.gw[gwname].process(msg, ALICE, [rcpt], client_ip=client_ip,
                                               extra_args=extra)
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        lines = err.splitlines()
        self.assertGreaterEqual(len(lines), 2, err)
        self.assertRegex(lines[0], r"^verdict: \S+$", "the verdict line is not first")
        self.assertTrue(lines[1].startswith("client: "), "no client line next to the "
                        "verdict:\n" + err)
        self.assertEqual(sgtest.stderr_field(err, "client"), [lines[1][len("client: "):]])
        return rc, out, err, lines[1][len("client: "):]

    def explain(self, gwname, rcpt, *args, msg=None):
        """(text output, JSON document) of `policy explain` with args."""
        gw = self.gw[gwname]
        argv = ["policy", "explain", "-c", gw.policy, "--from", ALICE, "--to", rcpt]
        argv += list(args)
        if msg is not None:
            inp = os.path.join(gw.dir, "explain-in.eml")
            with open(inp, "wb") as f:
                f.write(msg)
            argv += ["-i", inp]
        text = gw.run(*argv)
        self.assertEqual(text.returncode, 0, text.stdout + text.stderr)
        doc = gw.run(*(argv + ["--json"]))
        self.assertEqual(doc.returncode, 0, doc.stdout + doc.stderr)
        return text.stdout, json.loads(doc.stdout)

    @staticmethod
    def header_lines(text):
        """{name: value} of explain's lines before the first recipient."""
        head = text.split("recipient: ", 1)[0]
        return dict(line.split(": ", 1) for line in head.splitlines())

    def assert_same_as_loopback(self, gwname, msg, rcpt, got):
        """got (a process() result without client options) is what the
        milter's local submission gives: --client-ip 127.0.0.1, no login --
        same exit code, output and stderr but for the client line."""
        rc, out, err, client = self.process(gwname, msg, rcpt, client_ip="127.0.0.1")
        self.assertEqual(client, "127.0.0.1, no login (from --client-ip)")
        self.assertEqual(got[0], rc, got[2] + "\n---\n" + err)
        self.assertEqual(got[1] is None, out is None)
        drop = lambda e: [ln for ln in e.splitlines() if not ln.startswith("client: ")]
        self.assertEqual(drop(got[2]), drop(err))
        if out is not None and b"multipart/encrypted" not in out:
            self.assertEqual(got[1], out)   # encrypted copies differ in their keys

    def assert_explain_same_as_loopback(self, gwname, rcpt, doc, msg=None):
        _t, loop = self.explain(gwname, rcpt, "--client-ip", "127.0.0.1", msg=msg)
        self.assertEqual(loop["client"], {"address": "127.0.0.1", "login": None,
                                          "assumed": False})
        self.assertEqual(dict(doc, client=None), dict(loop, client=None))

    # -- a) no options: encrypted, like sendmail on the gateway host --------

    def test_a_no_options_encrypts_outbound(self):
        msg = self.msg()
        got = self.process("local", msg, CAROL)
        rc, out, err, client = got
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept")
        self.assertEqual(client, ASSUMED)
        self.assertNotIn(MARKER.encode(), out)
        sgtest.assert_outer_headers_kept(self, msg, out)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        self.assertEqual(sgtest.stderr_field(err, "key"), [self.carol_fpr])
        self.assert_same_as_loopback("local", msg, CAROL, got)

        text, doc = self.explain("local", CAROL, msg=msg)
        head = self.header_lines(text)
        self.assertEqual(head["outbound"], "yes (internal sender, client in trusted_networks)")
        self.assertEqual(head["client"], ASSUMED)
        self.assertIn("  outcome: encrypt\n", text)
        self.assertIn("  key: %s\n" % self.carol_fpr, text)
        self.assertIs(doc["outbound"], True)
        self.assertEqual(doc["client"], {"address": "127.0.0.1", "login": None,
                                         "assumed": True})
        self.assertEqual(doc["recipients"][0]["outcome"], "encrypt")
        self.assert_explain_same_as_loopback("local", CAROL, doc, msg=msg)

    # -- b) loopback not in trusted_networks --------------------------------

    def test_b_loopback_not_trusted_is_not_outbound(self):
        msg = self.msg()
        got = self.process("nonloop", msg, CAROL)
        rc, out, err, client = got
        self.assertEqual(rc, 0, err)
        self.assertEqual(client, ASSUMED)
        self.assertEqual(out, msg, "changed although local submission is not outbound here")
        self.assert_same_as_loopback("nonloop", msg, CAROL, got)

        text, doc = self.explain("nonloop", CAROL, msg=msg)
        head = self.header_lines(text)
        self.assertEqual(head["outbound"], "no (client 127.0.0.1 is neither authenticated "
                         "nor in trusted_networks)")
        self.assertEqual(head["client"], ASSUMED)
        self.assertIs(doc["outbound"], False)
        self.assertEqual(doc["recipients"][0]["outcome"], "pass")
        self.assert_explain_same_as_loopback("nonloop", CAROL, doc, msg=msg)

        # The policy's own trusted network is outbound: carol's key is there.
        rc, out, err, _c = self.process("nonloop", msg, CAROL, client_ip="10.1.2.3")
        self.assertEqual(rc, 0, err)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    # -- c) an untrusted client, and how the client is named ---------------

    def test_c_untrusted_client_ip(self):
        msg = self.msg()
        rc, out, err, client = self.process("local", msg, CAROL, client_ip=UNTRUSTED)
        self.assertEqual(rc, 0, err)
        self.assertEqual(client, "192.0.2.7, no login (from --client-ip)")
        self.assertEqual(out, msg, "an untrusted client's mail was changed")
        self.assertEqual(sgtest.stderr_field(err, "reason"), ["not outbound"])

        text, doc = self.explain("local", CAROL, "--client-ip", UNTRUSTED, msg=msg)
        head = self.header_lines(text)
        self.assertEqual(head["outbound"], "no (client 192.0.2.7 is neither authenticated "
                         "nor in trusted_networks)")
        self.assertEqual(head["client"], "192.0.2.7, no login (from --client-ip)")
        self.assertEqual(doc["client"], {"address": UNTRUSTED, "login": None,
                                         "assumed": False})
        self.assertEqual(doc["recipients"][0]["outcome"], "pass")

    def test_c_client_named_for_each_option(self):
        cases = [
            (["--client-ip", UNTRUSTED, "--auth", "alice"], True,
             "192.0.2.7, login alice (from --client-ip/--auth)",
             {"address": UNTRUSTED, "login": "alice", "assumed": False}),
            # A login from an address nobody told us.
            (["--auth", "alice"], True,
             "unknown address, login alice (from --auth)",
             {"address": None, "login": "alice", "assumed": False}),
            (["--client-ip", "unknown"], False,
             "unknown address, no login (from --client-ip)",
             {"address": None, "login": None, "assumed": False}),
            # Written as the milter writes a connection's address.
            (["--client-ip", "::FFFF:7F00:1"], True,
             "::ffff:127.0.0.1, no login (from --client-ip)",
             {"address": "::ffff:127.0.0.1", "login": None, "assumed": False}),
        ]
        for args, outbound, line, obj in cases:
            with self.subTest(args=args):
                text, doc = self.explain("local", CAROL, *args)
                self.assertEqual(self.header_lines(text)["client"], line)
                self.assertEqual(doc["client"], obj)
                self.assertIs(doc["outbound"], outbound)
                ip = args[args.index("--client-ip") + 1] if "--client-ip" in args else None
                auth = args[args.index("--auth") + 1] if "--auth" in args else None
                rc, out, err, client = self.process("local", self.msg(), CAROL,
                                                    client_ip=ip, auth=auth)
                self.assertEqual(rc, 0, err)
                self.assertEqual(client, line)
                self.assertEqual(b"multipart/encrypted" in out, outbound, err)

    # -- d) no login, no signing_networks: nothing signed ----------------------

    def test_d_sign_rule_without_login_does_not_sign(self):
        # alice's key is there and would sign for her login...
        text, _doc = self.explain("local", SIGNED, "--client-ip", "127.0.0.1",
                                  "--auth", "alice")
        self.assertIn("  signing key: %s\n" % self.alice_fpr, text)
        # ...but local submission has no login and loopback is not in
        # signing_networks.
        text, doc = self.explain("local", SIGNED)
        self.assertEqual(self.header_lines(text)["client"], ASSUMED)
        self.assertIn("  cannot sign: %s\n" % NOT_SIGNING, text)
        self.assertIn("  outcome: reject\n", text)
        self.assertNotIn("signing key:", text)
        self.assertEqual(doc["recipients"][0]["cannot_sign"], NOT_SIGNING)
        self.assert_explain_same_as_loopback("local", SIGNED, doc)

        # reject: the milter's 550 for 127.0.0.1 without a login.
        msg = self.msg(SIGNED)
        got = self.process("local", msg, SIGNED)
        rc, out, err, _client = got
        self.assertEqual(rc, 2, err)
        self.assertIsNone(out)
        self.assertEqual(sgtest.verdict(err), "reject")
        self.assertEqual([ln for ln in err.splitlines() if ln.startswith("550 ")],
                         ['550 5.7.1 signing required by rule "must-sign"; no usable '
                          'signing key for: %s (sender <%s> may not sign: %s)'
                          % (SIGNED, ALICE, NOT_SIGNING)])
        self.assert_same_as_loopback("local", msg, SIGNED, got)

        # send-plain: the message leaves as it came, unsigned.
        msg = self.msg(MAYBE)
        got = self.process("local", msg, MAYBE)
        rc, out, err, _client = got
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, msg)
        self.assertEqual(sgtest.stderr_field(err, "rule"), ["may-sign"])
        self.assertEqual(sgtest.stderr_field(err, "key"), [])
        self.assert_same_as_loopback("local", msg, MAYBE, got)

    # -- e) signing_networks with loopback -------------------------------------

    def test_e_signing_networks_with_loopback_signs(self):
        msg = self.msg(SIGNED)
        got = self.process("signnets", msg, SIGNED)
        rc, out, err, client = got
        self.assertEqual(rc, 0, err)
        self.assertEqual(client, ASSUMED)
        signtest.assert_pgp_verifies(self, self.scratch, sgtest.canon(out), self.verifier,
                                     self.alice_fpr)
        rc2, out2, err2, _c = self.process("signnets", msg, SIGNED, client_ip="127.0.0.1")
        self.assertEqual(rc2, 0, err2)
        signtest.assert_pgp_verifies(self, self.scratch, sgtest.canon(out2), self.verifier,
                                     self.alice_fpr)

    # -- f) option errors and --help -------------------------------------------

    def test_f_option_errors_and_help(self):
        gw = self.gw["local"]
        out = os.path.join(gw.dir, "not-written.eml")
        for verb, extra in ((["process"], ["-o", out]), (["policy", "explain"], ["--json"])):
            base = verb + extra + ["-c", gw.policy, "--from", ALICE, "--to", CAROL,
                                   "-i", "/dev/null"]
            for args, why in ((["--client-ip", "127.0.0.l"], '--client-ip "127.0.0.l" is not'),
                              (["--client-ip", ""], '--client-ip "" is not'),
                              (["--client-ip", "host.example"], "is not an IPv4 or IPv6"),
                              (["--auth", ""], "--auth needs a login")):
                with self.subTest(verb=verb, args=args):
                    cp = gw.run(*(base + args))
                    self.assertFalse(os.path.exists(out))
                    self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
                    self.assertIn(why, cp.stderr)
                    self.assertNotIn("verdict:", cp.stderr)
            with self.subTest(verb=verb, args="--help"):
                cp = gw.run(*(verb + ["--help"]))
                self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
                self.assertIn("--client-ip IP|unknown", cp.stdout)
                self.assertIn("local submission", cp.stdout)
                self.assertIn("client 127.0.0.1", cp.stdout)
                cp = gw.run(*verb)
                self.assertEqual(cp.returncode, 1)
                self.assertIn("without --client-ip and --auth: local submission "
                              "(client 127.0.0.1, no login)", cp.stderr)


if __name__ == "__main__":
    unittest.main()
