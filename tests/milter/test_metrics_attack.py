"""The metrics endpoint and the JSON line per message under attack.

`sealgate milter` runs on a unix socket with gateway.metrics on a free
port of 127.0.0.1 and gateway.log_format: json; tests/lib/milterclient.py
plays the MTA, raw sockets play a local user on the gateway host, and
prometheus_client's OpenMetrics parser (python3-prometheus-client) reads
what the endpoint serves.

A stranger sending mail:
  a) hostile queue ids, envelope addresses, header fields and subjects
     (quotes, backslashes, line breaks, ESC, bytes that are not UTF-8,
     U+2028, U+202E, a BOM): each message gives exactly one log line,
     a JSON object that parses, whose raw bytes hold no control
     character and none of those invisible characters, and whose values
     are what was sent; no line carries the body's marker. The
     exposition parses, no label holds anything the sender wrote, and
     fifty messages from fifty different senders add no series;
  b) 1,000 recipients in one message: the line stays under 8 KiB (rsyslog
     cuts longer ones, journald splits them), valid JSON, the recipients
     it lists are the first ones in order and recipients_omitted counts
     the rest; a message with three lists all three;
  c) a locale with a decimal comma (de_DE.UTF-8, made with localedef):
     "ms" and "busy_ms" are still JSON numbers;
  d) aborted, dropped and refused transactions: after each the gauge
     sealgate_messages_in_flight is back to 0, and each refusal counted
     once in its family (an address at RCPT, a message over
     max_message_size, a MAIL FROM tempfailed because no keystore
     snapshot can be built).

An insider: a rule name with a quote, a backslash and a line break is
one label value that the parser reads back exactly.

A local user on the host:
  e) 300 connections over the connection limit: at most 10 of
     libmicrohttpd's lines in the log, and once the window has passed,
     one line that says how many were left out; with the idle
     connections gone a scrape works; SIGTERM with connections open ends
     the milter with exit code 0;
  f) requests with a body (POST with 100 MB announced, GET with a body,
     chunked) are answered at once (405/400) without the body being
     sent, and the server closes the connection; two GETs on one
     connection are both answered;
  g) started as root with gateway.user nobody: with the endpoint on a
     port below 1024 the start fails (exit 1) saying "Permission denied"
     and why, with the port in use it says "Address already in use", and
     no milter socket is left; on a free high port every thread of the
     milter, the HTTP server's included, is nobody's with no
     capabilities.
"""
import json
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import time
import unittest

import milterclient
import postfix
import sgtest

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

Z = milterclient._z
NOBODY = pwd.getpwnam("nobody")

RULES = """\
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key }
  rules:
    - name: %s
      when: { subject_tag: "[secure]" }
      action: encrypt
      on_missing_key: reject
"""
TAG_RULE = "subject-tag"
# An insider's rule name: a quote, a backslash, a line break.
ODD_RULE = 'tag "q" \\ new\nline'

# Characters that hide or reorder text, and line separators for JSON
# readers that split on them: never raw in a log line.
INVISIBLE = ("\u2028", "\u2029", "\u202e", "\ufeff", "\u200b")


def wait_for(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


class Milter:
    """`sealgate milter -f` on a unix socket with the endpoint on a free
    port (another one when it is taken meanwhile)."""

    def __init__(self, tmp, rule=TAG_RULE, env=None, gateway_extra="", log_format="json"):
        self.tmp = tmp
        self.log_format = log_format
        os.makedirs(tmp, exist_ok=True)
        self.sock = os.path.join(tmp, "m.sock")
        self.policy = os.path.join(tmp, "policy.yaml")
        self.keystore = os.path.join(tmp, "store")
        self.log_path = os.path.join(tmp, "milter.log")
        self.rule = rule
        self.env = env
        self.gateway_extra = gateway_extra
        os.makedirs(self.keystore, 0o700, exist_ok=True)
        os.makedirs(os.path.join(tmp, "spool"), 0o700, exist_ok=True)
        self.proc = None

    def write_policy(self, port):
        with open(self.policy, "w") as f:
            f.write('version: 1\ngateway:\n  socket: "unix:%s"\n'
                    '  keystore: "store"\n  spool_dir: "spool"\n'
                    '  max_message_size: 100000\n'
                    '  metrics: "127.0.0.1:%d"\n  log_format: %s\n%s'
                    % (self.sock, port, self.log_format, self.gateway_extra))
            f.write(RULES % json.dumps(self.rule))

    def start(self):
        for _attempt in range(3):
            self.port = postfix.free_port()
            self.write_policy(self.port)
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [sgtest.sealgate_bin(), "milter", "-c", self.policy, "-f"]
                + sgtest.milter_user_args(),
                stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                env=self.env)
            self.log.close()
            end = time.monotonic() + 20
            while time.monotonic() < end and self.proc.poll() is None:
                if os.path.exists(self.sock) and postfix.tcp_listening(self.port):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
                break
            if "Address already in use" not in self.log_text():
                break
        raise RuntimeError("the milter did not start:\n" + self.log_text())

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def json_lines(self):
        """The raw bytes of every JSON line of the log."""
        with open(self.log_path, "rb") as f:
            return [line.split(b" sealgate: ", 1)[1] for line in f.read().split(b"\n")
                    if b" sealgate: {" in line]

    def connect(self):
        conn = milterclient.Connection(self.sock)
        milterclient.negotiate(conn)
        answer = conn.step(b"C", Z("client.example") + b"4" + struct.pack(">H", 25)
                           + Z("127.0.0.1"))
        assert answer == "continue", answer
        return conn

    def scrape_text(self):
        status, _headers, body = http(self.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
        assert status == 200, status
        return body.decode("utf-8")

    def samples(self):
        """{name{labels}: value} of the exposition."""
        out = {}
        for line in self.scrape_text().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out


def http(port, request, read_timeout=10):
    """(status, header bytes, body bytes) of the one answer to request;
    the body as far as the server sends it before it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    data = b""
    try:
        s.sendall(request)
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    except ConnectionResetError:
        pass
    finally:
        s.close()
    head, _sep, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return (int(m.group(1)) if m else None), head, body


def parse_exposition(text):
    if text_string_to_metric_families is None:
        raise AssertionError("python3-prometheus-client is not installed "
                             "(make deps installs it)")
    return list(text_string_to_metric_families(text))


def message(subject="Quarterly figures", extra=(), body=None):
    headers = [("From", "Alice Example <alice@example.com>"),
               ("To", "Carol <carol@partner.example>"),
               ("Subject", subject), ("Date", sgtest.rfc5322_date()),
               ("Message-ID", "<%s@example.com>" % os.urandom(6).hex())]
    headers += list(extra)
    return headers, body if body is not None else (sgtest.MARKER + "\r\n").encode()


def send(milter, sender, rcpts, headers=None, body=None, queue_id=b"QID1",
         client_ip="127.0.0.1"):
    """One message through the protocol, the envelope and header values
    sent as the bytes given (str is encoded as UTF-8). Returns the final
    answer."""
    def raw(v):
        return v if isinstance(v, bytes) else v.encode("utf-8")
    if headers is None:
        headers, body = message()
    conn = milterclient.Connection(milter.sock)
    try:
        milterclient.negotiate(conn)
        conn.step(b"C", Z("client.example") + b"4" + struct.pack(">H", 25) + Z(client_ip))
        conn.sock.sendall(conn.packet(b"D", b"M" + b"i\0" + raw(queue_id) + b"\0")
                          + conn.packet(b"M", b"<" + raw(sender) + b">\0"))
        code, _data = conn.reply()
        answer = milterclient.FINAL[code]
        for r in rcpts:
            if answer != "continue":
                return answer
            answer = conn.step(b"R", b"<" + raw(r) + b">\0")
        if answer != "continue":
            return answer
        answer = conn.step(b"T")
        for name, value in headers:
            if answer != "continue":
                return answer
            answer = conn.step(b"L", raw(name) + b"\0" + raw(value) + b"\0")
        if answer == "continue":
            answer = conn.step(b"N")
        for off in range(0, len(body), milterclient.CHUNK):
            if answer != "continue":
                break
            answer = conn.step(b"B", body[off:off + milterclient.CHUNK])
        if answer != "continue":
            return answer
        conn.send(b"E")
        while True:
            code, _data = conn.reply()
            if code in milterclient.FINAL:
                return milterclient.FINAL[code]
    finally:
        conn.close()


class StrangerAndInsider(unittest.TestCase):
    """a), b), d) and the insider's rule name, on one milter."""

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgma")
        cls.milter = Milter(os.path.join(cls.tmp, "m"), rule=ODD_RULE).start()

    @classmethod
    def tearDownClass(cls):
        cls.milter.stop()

    def line_for(self, queue_id_text):
        """The one JSON line whose queue_id is queue_id_text, parsed."""
        found = []
        for raw in self.milter.json_lines():
            obj = json.loads(raw.decode("utf-8"))
            if obj["queue_id"] == queue_id_text:
                found.append((raw, obj))
        self.assertEqual(len(found), 1, "lines for %r: %r" % (queue_id_text, found))
        return found[0]

    def assert_safe_line(self, raw):
        self.assertNotIn(b"\n", raw)
        text = raw.decode("utf-8")      # strictly UTF-8
        for ch in text:
            self.assertFalse(ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0,
                             "control character %r in %r" % (ch, text[:200]))
        for ch in INVISIBLE:
            self.assertNotIn(ch, text)
        self.assertNotIn(sgtest.MARKER, text)

    def test_a_hostile_values_make_one_safe_line_and_no_labels(self):
        before = self.milter.samples()
        cases = [
            # (queue id sent, its value in the line, sender, recipient)
            (b"Q1\n{\"outcome\":\"accept\"}", "Q1\n{\"outcome\":\"accept\"}",
             "alice@example.com", "carol@partner.example"),
            (b"Q2\x1b[31m\xff\xfe\r", "Q2\x1b[31m\ufffd\ufffd\r",
             "alice@example.com", "carol@partner.example"),
            (b"Q3", "Q3", '"a\\" verdict=accept x=\\""@example.com',
             '"x\\\\y"@partner.example'),
            (b"Q4\xe2\x80\xa8\xe2\x80\xae\xef\xbb\xbf", "Q4\u2028\u202e\ufeff",
             "j\u00fcrgen@example.com", "carol@partner.example"),
        ]
        hostile_subject = "[secure] \x1b]0;owned\x07 \u202eevil \u2028 " + sgtest.MARKER
        hostile_headers = [
            ("X-Label", 'rule="x" cause="y"} 99\n# EOF\n'),
            ("Sensitivity", "company-confidential\r\n\"}"),
        ]
        for qid_raw, _qid, sender, rcpt in cases:
            headers, body = message(subject=hostile_subject, extra=hostile_headers)
            # accept, or a reply (the rule's 550)
            self.assertIn(send(self.milter, sender, [rcpt], headers, body, qid_raw),
                          ("accept", "reply"))
        for qid_raw, qid, sender, rcpt in cases:
            raw, obj = self.line_for(qid)
            self.assert_safe_line(raw)
            self.assertEqual(obj["from"], sender)
            self.assertEqual([r["address"] for r in obj["recipients"]], [rcpt])
            self.assertEqual(obj["recipients_omitted"], 0)
            self.assertIsInstance(obj["ms"], float)
        # The exposition: a parser reads it; nothing the sender wrote is
        # in a label, and the rule's odd name comes back exactly.
        text = self.milter.scrape_text()
        self.assertTrue(text.endswith("# EOF\n"))
        labels = [s.labels for f in parse_exposition(text) for s in f.samples]
        values = {v for lab in labels for v in lab.values()}
        self.assertIn(ODD_RULE, values, "the refusals by the [secure] rule")
        for qid_raw, qid, sender, rcpt in cases:
            for v in values:
                for bad in (qid, sender, rcpt, "owned", "evil", sgtest.MARKER, "99"):
                    self.assertNotIn(bad, v)
        # Fifty different senders add no series.
        series = set(self.milter.samples())
        for i in range(50):
            headers, body = message(subject="[secure] n%d" % i)
            send(self.milter, "u%d.%s@example.com" % (i, os.urandom(3).hex()),
                 ["r%d@nokey%d.example" % (i, i)], headers, body, b"F%d" % i)
        after = self.milter.samples()
        self.assertEqual(set(after), series)
        self.assertGreater(len(series), len(before))

    def test_b_many_recipients_keep_the_line_short(self):
        rcpts = ["user%04d@example.com" % i for i in range(1000)]
        headers, body = message()
        self.assertEqual(send(self.milter, "someone@outside.example", rcpts, headers,
                              body, b"MANY", client_ip="192.0.2.1"), "accept")
        raw, obj = self.line_for("MANY")
        self.assertLess(len(raw) + 64, 8192, "the line with its prefix")
        listed = [r["address"] for r in obj["recipients"]]
        self.assertGreater(len(listed), 10)
        self.assertEqual(listed, rcpts[:len(listed)])
        self.assertEqual(len(listed) + obj["recipients_omitted"], 1000)
        self.assertEqual(obj["keys_omitted"], 0)
        three = ["a@example.com", "b@example.com", "c@example.com"]
        self.assertEqual(send(self.milter, "someone@outside.example", three, headers,
                              body, b"THREE", client_ip="192.0.2.1"), "accept")
        _raw, obj = self.line_for("THREE")
        self.assertEqual([r["address"] for r in obj["recipients"]], three)
        self.assertEqual(obj["recipients_omitted"], 0)

    def test_d_in_flight_back_to_zero_and_refusals_counted_once(self):
        m = self.milter

        def in_flight():
            return m.samples()["sealgate_messages_in_flight"]

        def count(key):
            return m.samples().get(key, 0)

        self.assertEqual(in_flight(), 0)
        # MAIL, then abort.
        c = m.connect()
        self.assertEqual(c.step(b"M", Z("<alice@example.com>")), "continue")
        self.assertEqual(in_flight(), 1)
        c.send(b"A")
        wait_for(lambda: in_flight() == 0, what="in flight 0 after abort")
        c.close()
        # RCPT, then the connection drops.
        c = m.connect()
        c.step(b"M", Z("<alice@example.com>"))
        c.step(b"R", Z("<carol@partner.example>"))
        c.sock.close()
        wait_for(lambda: in_flight() == 0, what="in flight 0 after a drop at RCPT")
        # A drop in the middle of the body.
        c = m.connect()
        c.step(b"M", Z("<alice@example.com>"))
        c.step(b"R", Z("<carol@partner.example>"))
        c.step(b"T")
        c.step(b"L", Z("Subject", "x"))
        c.step(b"N")
        c.step(b"B", b"x" * 1000)
        c.sock.close()
        wait_for(lambda: in_flight() == 0, what="in flight 0 after a drop in DATA")
        # An address refused at RCPT, counted once, then abort.
        key = 'sealgate_rejects_total{rule="",cause="address"}'
        n = count(key)
        c = m.connect()
        c.step(b"M", Z("<alice@example.com>"))
        self.assertEqual(c.step(b"R", b"<\x01@partner.example>\0"), "reply")
        c.send(b"A")
        wait_for(lambda: in_flight() == 0, what="in flight 0 after a refused RCPT")
        c.close()
        self.assertEqual(count(key), n + 1)
        # Two MAIL FROMs without an abort between them.
        c = m.connect()
        c.step(b"M", Z("<alice@example.com>"))
        c.step(b"M", Z("<alice@example.com>"))
        self.assertEqual(in_flight(), 1)
        c.close()
        wait_for(lambda: in_flight() == 0, what="in flight 0 after close")
        # A body over max_message_size: one refusal, one message.
        size_key = 'sealgate_rejects_total{rule="",cause="size"}'
        msg_key = ('sealgate_messages_total{direction="unknown",action="reject",'
                   'method="",outcome="reject"}')
        n, nm = count(size_key), count(msg_key)
        headers, _body = message()
        self.assertEqual(send(m, "alice@example.com", ["carol@partner.example"], headers,
                              b"y" * 200000, b"BIG"), "reply")
        wait_for(lambda: in_flight() == 0, what="in flight 0 after a size refusal")
        self.assertEqual((count(size_key), count(msg_key)), (n + 1, nm + 1))

    def test_insider_rule_name_is_one_label(self):
        headers, body = message(subject="[secure] figures")
        self.assertEqual(send(self.milter, "alice@example.com", ["zoe@nokey.example"],
                              headers, body, b"RULE"), "reply")
        got = [s.labels for f in parse_exposition(self.milter.scrape_text())
               if f.name == "sealgate_rejects" for s in f.samples
               if s.labels.get("cause") == "missing-key"]
        self.assertEqual([lab["rule"] for lab in got], [ODD_RULE])
        _raw, obj = self.line_for("RULE")
        self.assertEqual(obj["rule"], ODD_RULE)


class Keystore(unittest.TestCase):
    """d) a MAIL FROM tempfailed because no snapshot can be built."""

    def test_keystore_gone_tempfail_counted_once(self):
        sgtest.require_binary()
        tmp = sgtest.tmpdir("sgmk")
        milter = Milter(os.path.join(tmp, "m"))
        carol, _fpr = sgtest.new_key_home(tmp, sgtest.CAROL)
        key = sgtest.export_public_key(tmp, carol, sgtest.CAROL)
        milter.write_policy(1)
        cp = sgtest.run([sgtest.sealgate_bin(), "keys", "-c", milter.policy, "import", key])
        self.assertEqual(cp.returncode, 0, cp)
        milter.start()
        try:
            key = 'sealgate_tempfails_total{cause="keystore"}'
            self.assertNotIn(key, milter.samples())
            os.rename(milter.keystore, milter.keystore + ".gone")
            c = milter.connect()
            c.send(b"M", Z("<alice@example.com>"))
            code, data = c.reply()
            c.close()
            self.assertEqual(code, b"y")
            self.assertTrue(data.startswith(b"451 4.3.0 "), data)
            s = milter.samples()
            self.assertEqual(s[key], 1)
            self.assertEqual(s["sealgate_keystore_snapshot"], 0)
            self.assertEqual(s["sealgate_messages_in_flight"], 0)
        finally:
            self.assertEqual(milter.stop(), 0)


class Locale(unittest.TestCase):
    """c) a locale whose decimal point is a comma."""

    def test_json_numbers_under_decimal_comma(self):
        sgtest.require_binary()
        tmp = sgtest.tmpdir("sgml")
        locales = os.path.join(tmp, "locales")
        os.mkdir(locales)
        cp = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8",
                             os.path.join(locales, "de_DE.UTF-8")],
                            capture_output=True, text=True)
        env = dict(os.environ, LOCPATH=locales, LC_ALL="de_DE.UTF-8")
        # The locale exists and writes 1,500: the case this test is about.
        probe = subprocess.run(["/usr/bin/printf", "%.3f", "1.5"], env=env,
                               capture_output=True, text=True)
        self.assertEqual(probe.stdout, "1,500",
                         "localedef could not make de_DE.UTF-8 (package locales, "
                         "make deps installs it): %s %s" % (cp.stderr, probe.stderr))
        milter = Milter(os.path.join(tmp, "m"), env=env).start()
        try:
            self.assertEqual(send(milter, "alice@example.com", ["carol@partner.example"],
                                  queue_id=b"LOC"), "accept")
            lines = milter.json_lines()
            self.assertEqual(len(lines), 1, milter.log_text())
            obj = json.loads(lines[0].decode("utf-8"))
            self.assertIsInstance(obj["ms"], float)
            self.assertIsInstance(obj["busy_ms"], float)
            self.assertLess(obj["busy_ms"], 10000)
        finally:
            self.assertEqual(milter.stop(), 0)


class TextLine(unittest.TestCase):
    """The key=value line (log_format: text) under the same sender and
    locale: a quoted local part cannot end its field and forge another,
    and the times keep their decimal point."""

    def test_forged_fields_and_decimal_comma(self):
        sgtest.require_binary()
        tmp = sgtest.tmpdir("sgmt")
        locales = os.path.join(tmp, "locales")
        os.mkdir(locales)
        subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8",
                        os.path.join(locales, "de_DE.UTF-8")], capture_output=True)
        env = dict(os.environ, LOCPATH=locales, LC_ALL="de_DE.UTF-8")
        milter = Milter(os.path.join(tmp, "m"), env=env, log_format="text").start()
        forged = '"a> verdict=accept rule=x reason=\\"y\\" \\\\"@example.com'
        try:
            # Refused by the [secure] rule (no key): the forged fields
            # would say accept.
            headers, body = message(subject="[secure] figures")
            self.assertEqual(send(milter, forged, ["carol@nokey.example"], headers, body,
                                  b"TXT1"), "reply")
            headers, body = message()
            self.assertEqual(send(milter, "alice@example.com", ["carol@partner.example"],
                                  headers, body, b"TXT2"), "accept")
            lines = {}
            for line in milter.log_text().splitlines():
                for q in ("TXT1", "TXT2"):
                    if " sealgate: %s: from=" % q in line:
                        lines.setdefault(q, []).append(line.split(": ", 2)[2])
            self.assertEqual(sorted(lines), ["TXT1", "TXT2"], milter.log_text())
            one = lines["TXT1"]
            self.assertEqual(len(one), 1, one)
            line = one[0]
            # Every field appears once, and the verdict is the real one.
            for key in ("from", "verdict", "rule", "reason", "time", "busy"):
                self.assertEqual(len(re.findall(r"(?:^| )%s=" % key, line)), 1,
                                 "%s= in %r" % (key, line))
            self.assertIn(" verdict=reject ", line)
            self.assertIn(" rule=%s " % TAG_RULE, line)
            self.assertNotIn("verdict=accept", line)
            # The sender is there in full, its specials as \xHH (doubled
            # by the log's escaping of backslashes).
            m = re.match(r"from=<([^ >]*)> ", line)
            self.assertIsNotNone(m, line)
            unescaped = re.sub(r"\\\\x([0-9a-f]{2})",
                               lambda g: chr(int(g.group(1), 16)), m.group(1))
            self.assertEqual(unescaped, forged)
            for q in ("TXT1", "TXT2"):
                self.assertRegex(lines[q][0], r" time=\d+\.\d{3}ms busy=\d+\.\d{3}ms$")
        finally:
            self.assertEqual(milter.stop(), 0)


class LocalUser(unittest.TestCase):
    """e) and f): connections and requests from the host."""

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgmu")
        cls.milter = Milter(os.path.join(cls.tmp, "m")).start()

    @classmethod
    def tearDownClass(cls):
        cls.milter.stop()

    def answer_without_body(self, request):
        """Sends only request (its body announced, never sent) and reads
        what comes back until the server closes: (status, closed)."""
        s = socket.create_connection(("127.0.0.1", self.milter.port), timeout=5)
        try:
            s.sendall(request)
            data = b""
            while True:
                got = s.recv(65536)      # a timeout fails the test
                if not got:
                    break
                data += got
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
        return int(m.group(1)) if m else data[:80]

    def test_f_bodies_are_not_read(self):
        self.assertEqual(self.answer_without_body(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
            b"Expect: 100-continue\r\n\r\n"), 405)
        self.assertEqual(self.answer_without_body(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"), 400)
        self.assertEqual(self.answer_without_body(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 400)
        self.assertEqual(self.answer_without_body(
            b"GET /other HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"), 404)
        # A scraper's connection stays open for its next request.
        s = socket.create_connection(("127.0.0.1", self.milter.port), timeout=10)
        try:
            for _ in range(2):
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"# EOF\n"):
                    got = s.recv(65536)
                    self.assertTrue(got, "closed after %r" % data[:60])
                    data += got
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "))
        finally:
            s.close()

    def test_e_connection_flood_is_not_a_log_flood(self):
        m = self.milter

        def http_lines():
            return [l for l in m.log_text().splitlines() if "sealgate: -: metrics: " in l]

        before = len(http_lines())
        idle = [socket.create_connection(("127.0.0.1", m.port)) for _ in range(4)]
        try:
            # The four are accepted before the flood starts.
            wait_for(lambda: http(m.port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] is None,
                     what="the per-address limit reached")
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", m.port))
                s.close()
            # Every refused connection has been handled once a new
            # one is refused after them.
            wait_for(lambda: http(m.port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] is None,
                     what="a refusal after the flood")
            flood = http_lines()[before:]
            self.assertGreater(len(flood), 0)
            self.assertLessEqual(len(flood), 10, "\n".join(flood[:20]))

            # Past the window, the next line says how many were left out.
            def left_out():
                s = socket.create_connection(("127.0.0.1", m.port))
                s.close()
                return [l for l in http_lines()[before:] if "left out" in l]
            said = wait_for(left_out, timeout=30, what="the line that counts the rest")
            n = int(re.search(r"metrics: (\d+) line\(s\) of the HTTP server left out",
                              said[0]).group(1))
            self.assertGreaterEqual(n, 290)
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: http(m.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")[0]
                 == 200, what="a scrape once the idle connections are gone")


class Shutdown(unittest.TestCase):
    """e) SIGTERM with HTTP connections open."""

    def test_sigterm_with_connections_open(self):
        sgtest.require_binary()
        tmp = sgtest.tmpdir("sgms")
        milter = Milter(os.path.join(tmp, "m")).start()
        idle = [socket.create_connection(("127.0.0.1", milter.port)) for _ in range(3)]
        half = socket.create_connection(("127.0.0.1", milter.port))
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")     # never finished
        try:
            self.assertEqual(milter.stop(timeout=20), 0, milter.log_text())
            self.assertIn("stopped", milter.log_text())
        finally:
            for s in idle + [half]:
                s.close()


class Privileges(unittest.TestCase):
    """g) the endpoint opens after the milter became nobody."""

    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        cls.tmp = sgtest.tmpdir("sgmp")
        os.chmod(cls.tmp, 0o755)
        cls.dir = os.path.join(cls.tmp, "gw")
        cls.milter = Milter(cls.dir, gateway_extra="  user: nobody\n")
        for d in (cls.dir, cls.milter.keystore, os.path.join(cls.dir, "spool")):
            os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)

    def start(self, port):
        self.milter.write_policy(port)
        os.chmod(self.milter.policy, 0o644)
        return subprocess.Popen([sgtest.sealgate_bin(), "milter", "-c", self.milter.policy],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)

    def refused(self, port):
        p = self.start(port)
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("the milter started on port %d" % port)
        self.assertEqual(p.returncode, 1, err)
        self.assertFalse(os.path.exists(self.milter.sock), "socket left behind")
        return err.decode()

    def test_privileged_port_refused_with_the_reason(self):
        low = None
        for port in range(1000, 700, -1):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
                low = port
                break
            except OSError:
                continue
            finally:
                s.close()
        self.assertIsNotNone(low, "no free port below 1024")
        err = self.refused(low)
        self.assertIn("gateway.metrics: cannot listen on 127.0.0.1:%d: Permission denied" % low,
                      err)
        self.assertIn("use a port above 1023", err)

    def test_port_in_use_refused_with_the_reason(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            err = self.refused(s.getsockname()[1])
        finally:
            s.close()
        self.assertIn(": Address already in use", err)

    def test_every_thread_is_nobody(self):
        for _attempt in range(3):
            port = postfix.free_port()
            p = self.start(port)
            try:
                ok = wait_for(lambda: p.poll() is not None or (
                    os.path.exists(self.milter.sock) and postfix.tcp_listening(port)) or None,
                    what="the milter listening")
                if p.poll() is not None:
                    err = p.communicate()[1].decode()
                    if "Address already in use" in err:
                        continue
                    self.fail(err)
                self.assertTrue(ok)
                self.assertEqual(http(port, b"GET /metrics HTTP/1.1\r\nConnection: close"
                                      b"\r\n\r\n")[0], 200)
                tasks = os.listdir("/proc/%d/task" % p.pid)
                # libmilter's threads, the reload thread, the HTTP server's.
                self.assertGreaterEqual(len(tasks), 3)
                for tid in tasks:
                    with open("/proc/%d/task/%s/status" % (p.pid, tid)) as f:
                        st = dict(line.rstrip("\n").split(":\t", 1) for line in f
                                  if ":\t" in line)
                    self.assertEqual(st["Uid"].split(), [str(NOBODY.pw_uid)] * 4, tid)
                    self.assertEqual(st["Gid"].split(), [str(NOBODY.pw_gid)] * 4, tid)
                    self.assertEqual(int(st["CapEff"], 16), 0, tid)
                    self.assertEqual(int(st["CapPrm"], 16), 0, tid)
                return
            finally:
                if p.poll() is None:
                    p.terminate()
                    p.communicate(timeout=30)
        self.fail("no free port found")


if __name__ == "__main__":
    unittest.main()
