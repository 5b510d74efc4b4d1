"""Mail processed while the keystore changes never misses a key.

Every keystore change replaces the OpenPGP keyring or the S/MIME store whole
and then deletes the previous one. A gateway reading the store at that moment
must still find every key that was there before and after the change: under
`encrypt-if-key` a missed key would send the message in clear.

Each round starts `sealgate process` on a message to a partner and waits
until the reader of the store has it open: sealgate itself with the S/MIME
certificate directory (which holds 40 other certificates, so reading it
takes a while), or the gpg that sealgate runs with the OpenPGP keyring. That
process is stopped (SIGSTOP), another partner's key or certificate is
imported or removed, and the process continues (SIGCONT). The message must
come out encrypted, and openssl or gpg decrypts it to the original.
"""
import os
import signal
import time
import unittest

import sgtest
import smimetest
from sgtest import CAROL, DAVE, MARKER, SENDER, make_message, std_headers

PADDING = 40                   # other certificates in the S/MIME store
CAUGHT_AT_LEAST = 5            # rounds per partner that must catch the reader
MAX_ROUNDS = 80                # per partner: rounds until that many caught


def open_files(pid):
    """Paths of pid's open file descriptors (nothing once it is gone)."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return []
    paths = []
    for fd in fds:
        try:
            paths.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return paths


def processes_with(argument):
    """Pids of processes with argument among their command-line arguments."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if argument in f.read().split(b"\0"):
                    pids.append(int(name))
        except OSError:
            pass
    return pids


def stopped(pid):
    """Waits until pid has stopped; False when it is gone."""
    for _ in range(1000):
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("T", "t"):
            return True
        time.sleep(0.001)
    return False


class ConcurrentChanges(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        smimetest.require_tools()
        cls.tmp, [(cls.dave_home, _f), (churn_home, _g)] = sgtest.class_set_up(
            "sgconc", DAVE, sgtest.BOB)
        cls.ca = smimetest.TestCA(os.path.join(cls.tmp, "ca"), key="ec")
        cls.carol = cls.ca.issue("Carol Partner", [CAROL], key="ec:P-256")
        cls.churn_cert = cls.ca.issue("Churn", ["churn@churn.example"],
                                      key="ec:P-256")
        padding = smimetest.pem_bundle(os.path.join(cls.tmp, "padding.pem"),
                                       *cls.padding_certs())
        cls.churn_pgp = sgtest.export_public_key(cls.tmp, churn_home, sgtest.BOB)

        cls.gw = smimetest.smime_gateway(
            os.path.join(cls.tmp, "gw"),
            smimetest.smime_policy(methods="openpgp, smime"),
            anchors=[cls.ca.cert], certs=[cls.carol.cert, padding])
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.dave_home, DAVE)])

    @classmethod
    def padding_certs(cls):
        """Self-signed certificates of other partners, sharing one key."""
        key = os.path.join(cls.tmp, "pad.key")
        smimetest.openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-out", key)
        paths = []
        for i in range(PADDING):
            path = os.path.join(cls.tmp, "pad%d.pem" % i)
            smimetest.openssl("req", "-x509", "-new", "-key", key, "-days", "30",
                              "-subj", "/CN=Pad %d" % i, "-out", path,
                              "-addext", "subjectAltName=email:pad%d@pad.example" % i,
                              "-addext", "basicConstraints=critical,CA:FALSE")
            paths.append(path)
        return paths

    def change(self, steps, n):
        verb, what = steps[n % len(steps)]
        cp = self.gw.run("keys", "-c", self.gw.policy, verb, what)
        self.assertEqual(cp.returncode, 0, "keys %s %s: %s" % (verb, what, cp.stderr))

    def run_rounds(self, rcpt, readers, target, steps):
        """Messages to rcpt until CAUGHT_AT_LEAST rounds caught the reader
        (at most MAX_ROUNDS: a busy machine misses more); in each, the
        first of readers(proc) found with target open is stopped while one
        of steps is made."""
        caught = rounds = 0
        for n in range(MAX_ROUNDS):
            if caught >= CAUGHT_AT_LEAST:
                break
            rounds += 1
            msg = make_message(std_headers(to=rcpt, subject="n%d" % n),
                               "%s %d\r\n" % (MARKER, n))
            run = self.gw.start_process(msg, SENDER, [rcpt])
            done = False
            while not done and run.proc.poll() is None:
                for pid in readers(run.proc):
                    if target not in open_files(pid):
                        continue
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        if stopped(pid) and target in open_files(pid):
                            self.change(steps, caught)
                            caught += 1
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    done = True
                    break
            rc, out, err = run.result()
            with self.subTest(rcpt=rcpt, round=n):
                self.assertEqual(rc, 0, err)
                self.assertIsNotNone(out)
                self.assertNotIn(MARKER.encode(), out, "sent in clear")
                if rcpt == CAROL:
                    der = smimetest.smime_der(self, msg, out, "authEnveloped-data")
                    smimetest.assert_openssl_decrypts(self, der, self.carol, msg)
                else:
                    sgtest.assert_decrypts_to_original(self, self.dave_home, msg, out)
        self.assertGreaterEqual(caught, CAUGHT_AT_LEAST,
                                "the reader was caught with the store open in only "
                                "%d of %d rounds" % (caught, rounds))

    def test_smime_certificate_found_while_the_store_is_replaced(self):
        certs = os.path.join(os.path.realpath(self.gw.keystore), "smime", "certs")
        self.run_rounds(CAROL, lambda proc: [proc.pid], certs,
                        [("import", self.churn_cert.cert),
                         ("remove", self.churn_cert.fpr)])

    def test_openpgp_key_found_while_the_keyring_is_replaced(self):
        home = os.path.join(os.path.realpath(self.gw.keystore), "openpgp")
        self.run_rounds(DAVE, lambda proc: processes_with(home.encode()),
                        os.path.join(home, "pubring.kbx"),
                        [("import", self.churn_pgp), ("remove", sgtest.BOB)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
