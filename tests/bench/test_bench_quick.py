"""`make bench` in its quick mode (bench/bench.py --quick): small counts
and sizes, the same code paths. Checks that every figure of the report is
produced -- end to end (rate, ratio, sealgate's CPU, p50/p99 of the time
it adds), per operation (sealgate, bare call, command; every operation
and size), peak RSS (every case) and every target row -- not what the
figures are: timed values prove nothing on a shared machine.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import postfix
import sgtest

E2E = ["postfix", "pass", "pass-tcp", "openpgp", "smime", "smime-sign",
       "in-smime", "in-openpgp"]
OPS = ["OpenPGP encrypt", "S/MIME encrypt", "S/MIME sign", "OpenPGP decrypt",
       "S/MIME decrypt"]
RSS = ["out-openpgp", "out-smime", "in-openpgp", "in-smime", "par-openpgp",
       "par-smime"]


def number(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


class QuickBench(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = sgtest.require_binary()
        ok, why = postfix.can_run()
        if not ok:
            sgtest.skip_file(why)
        for prog in ("smtp-source", "gpg", "openssl"):
            if not postfix._which(prog):
                sgtest.skip_file("%s is not installed" % prog)
        cls.tmp = tempfile.mkdtemp(prefix="sgbq.", dir="/tmp")
        cls.json_path = os.path.join(cls.tmp, "quick.json")
        cls.md_path = os.path.join(cls.tmp, "quick.md")
        cp = subprocess.run(
            [sys.executable, os.path.join(sgtest.src_dir(), "bench",
                                          "bench.py"),
             "--bin", binary, "--quick", "--out", cls.md_path,
             "--json", cls.json_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        cls.output = cp.stdout.decode("utf-8", "replace")
        cls.rc = cp.returncode

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.tmp], check=False)

    def setUp(self):
        self.assertEqual(self.rc, 0, self.output[-4000:])
        with open(self.json_path) as f:
            self.res = json.load(f)

    def test_end_to_end_figures(self):
        rows = {r["key"]: r for r in self.res["e2e"]}
        self.assertEqual(sorted(rows), sorted(E2E))
        for key in E2E:
            r = rows[key]
            for field in ("rate", "ratio"):
                self.assertTrue(number(r[field]), (key, field, r))
            self.assertGreaterEqual(len(r["runs"]), 2, "a median of one run")
            if key == "postfix":
                # Right before each of the other scenarios, every round.
                self.assertEqual(len(r["runs"]), self.res["params"]["rounds"]
                                 * (len(E2E) - 1))
                self.assertEqual(r["ratio"], 1.0)
                continue
            self.assertEqual(len(r["runs"]), self.res["params"]["rounds"])
            for field in ("cpu_ms", "p50_ms", "p99_ms"):
                self.assertTrue(number(r[field]), (key, field, r))
            self.assertGreaterEqual(r["p99_ms"], r["p50_ms"])
        # gpg runs outside the daemon to decrypt: its CPU must have been
        # counted. Encryption runs in process (librnp): a figure, 0 when no
        # message went to gpg.
        self.assertTrue(number(rows["in-openpgp"]["started_cpu_ms"]), rows["in-openpgp"])
        started = rows["openpgp"]["started_cpu_ms"]
        self.assertIsInstance(started, (int, float), rows["openpgp"])
        self.assertGreaterEqual(started, 0, rows["openpgp"])

    def test_per_operation_figures(self):
        seen = {(r["op"], r["size"]): r for r in self.res["ops"]}
        sizes = sorted({size for _op, size in seen})
        self.assertEqual(len(sizes), 3, sizes)
        for op in OPS:
            for size in sizes:
                r = seen.get((op, size))
                self.assertIsNotNone(r, (op, size))
                for field in ("sealgate_ms", "bare_ms", "command_ms",
                              "vs_bare", "command_vs"):
                    self.assertTrue(number(r[field]), (op, size, field, r))

    def test_peak_rss_figures(self):
        rows = {r["key"]: r for r in self.res["rss"]}
        self.assertEqual(sorted(rows), sorted(RSS))
        for key in RSS:
            self.assertTrue(number(rows[key]["peak_mb"]), rows[key])

    def test_targets_and_report(self):
        self.assertEqual(len(self.res["targets"]), 9)
        for t in self.res["targets"]:
            self.assertTrue(number(t["value"]), t)
            self.assertIn(t["met"], (True, False))
        with open(self.md_path) as f:
            md = f.read()
        self.assertNotIn("| – |", md.split("## End to end")[1].split(
            "| Postfix alone")[1].split("\n", 1)[1])
        for line in ("## Targets", "## End to end",
                     "## Per operation, in process",
                     "## Peak RSS of the milter", "GPGME", "OpenSSL",
                     "Postfix", "cores"):
            self.assertIn(line, md)
        # The table is also printed.
        self.assertIn("## Targets", self.output)


if __name__ == "__main__":
    unittest.main()
