"""The milter's metrics endpoint (gateway.metrics) and the JSON form of its
line per message (gateway.log_format: json), through a real Postfix.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. The gateway (internal domain example.com, trusted network
127.0.0.0/8, outbound default encrypt-if-key with OpenPGP and S/MIME, a
rule that refuses mail to locked.example without a key, one that defers
mail to later.example, mail to smime.example encrypted with S/MIME; inbound
decryption and verification) holds the OpenPGP and S/MIME key pairs of
alice and bob, carol's OpenPGP key and frank's S/MIME certificate. Every
exposition read from the endpoint is parsed strictly (parse_exposition: the
OpenMetrics text format, ABNF and rules of its section "Text format"); a
malformed one fails the test.

  1) Load run: a known mix from concurrent SMTP clients -- plain to a
     partner without a key, OpenPGP to carol, S/MIME to frank, internal
     mail, refusals by a rule (550) and deferrals by a rule (451), a
     message over max_message_size (552), recipients deferred to a
     transaction of their own (452), refused envelope addresses (553),
     inbound OpenPGP and S/MIME mail to alice that she decrypts, inbound
     mail she cannot decrypt, signed inbound mail, mail between two
     outside addresses. One message is held open after DATA began while
     the endpoint shows it in flight; the endpoint is read all through
     the run (every counter only grows). The counters' growth equals what
     the clients were told and what smtp-sink received: messages by
     direction, action and method from the delivered form of each message
     (gpg and openssl decrypt the encrypted ones), refusals by the rule
     named in the 5xx reply, deferrals by the 4xx replies, decryption
     results and signature statuses from the X-Sealgate-* fields
     delivered; the latency histogram counts every message.
  2) sealgate_keys_expiring counts the usable keys that stop being usable
     within 30 days: a partner key expiring in 10 days (not one in 60
     days, nor one that expired since it was imported), an S/MIME
     certificate and a trust anchor expiring within 30 days; a key
     imported while the milter runs is counted at the next scrape, and a
     removed one no longer.
  3) JSON log: every line per message of the load run is one JSON object
     with the documented fields, its queue_id Postfix's, its recipients,
     classes and fingerprints those of the message; no line holds a body,
     a Subject or key material. Addresses with quotes and backslashes and
     UTF-8 local parts still give one valid JSON line; a control
     character or bytes that are not UTF-8 in an address are refused at
     RCPT (553) and the log stays one line per entry.
  4) Endpoint robustness: 404, 405 (with Allow), HEAD; a request header
     over 16 KiB gets 431 (a URL 414), one log line each, and mail keeps
     flowing; 20 idle connections (from 20 loopback addresses) do not
     stop mail, and the endpoint answers once they are closed; SIGUSR1
     reloads are counted (ok and failed), and one that drops
     gateway.metrics leaves the endpoint until a restart; [::1]:PORT
     serves over IPv6 (skipped, and the file reported skipped, without
     IPv6 loopback); a metrics port in use stops the start with a clear
     message on stderr and no milter socket left; without gateway.metrics
     the milter listens on its milter socket only.
  5) A refusal during DATA that the milter makes itself (its spool
     directory gone) is counted as a message, in the histogram too.
"""

import concurrent.futures
import datetime
import email
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import unittest
from collections import Counter

import inboundtest
import miltertest
import postfix
import sgtest
import smimetest
import verifytest
from inboundtest import ALICE, BOB, CAROL, cms_encrypt, gpg_encrypt, outer_headers, \
    pgp_mime_message, smime_message
from miltertest import with_diagnostics

STATE = {}
SKIPPED = []        # reasons of tests that could not run here

BINARY = miltertest.require_tools()

FRANK = "frank@smime.example"
REJECT_RULE = 'vault "x" \\ y'          # quotes and a backslash: escaped labels
POLICY = """\
version: 1
gateway:
  keystore: "store"
  spool_dir: "spool"
  trusted_networks: [127.0.0.0/8]
  max_message_size: 2M
  metrics: "%(metrics)s"
  log_format: json
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp, smime] }
  rules:
    - name: "vault \\"x\\" \\\\ y"
      when: { recipient_domain: [locked.example] }
      action: encrypt
      on_missing_key: reject
    - name: hold
      when: { recipient_domain: [later.example] }
      action: encrypt
      on_missing_key: tempfail
    - name: smime-partner
      when: { recipient_domain: [smime.example] }
      action: encrypt
      methods: [smime]
inbound: { decrypt: true, verify: true }
"""

JSON_FIELDS = ["ts", "queue_id", "direction", "from", "class", "rule", "action", "method",
               "outcome", "cause", "recipients", "recipients_omitted", "keys",
               "keys_omitted", "cipher", "decryption",
               "decryption_reason", "signature", "reason", "ms", "busy_ms"]
LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d sealgate: (.*)$")
COUNTERS = ("sealgate_messages", "sealgate_rejects", "sealgate_tempfails",
            "sealgate_recipients_deferred", "sealgate_inbound_decryptions",
            "sealgate_inbound_signatures", "sealgate_policy_reloads")
WAIT = 20           # seconds to wait for a condition


# --------------------------------------------------------------------------
# The OpenMetrics text format, parsed strictly


class Exposition:
    """A parsed exposition: types {family: type}, samples {(sample name,
    frozenset of label pairs): value}."""

    def __init__(self, types, samples, text):
        self.types = types
        self.samples = samples
        self.text = text

    def series(self, name):
        """{frozenset of label pairs: value} of one sample name."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0)

    def by(self, name, *keys):
        """Counter of the values of a sample name by the label values keys."""
        out = Counter()
        for labels, v in self.series(name).items():
            d = dict(labels)
            out[tuple(d.get(k, "") for k in keys)] += v
        return out


_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_REAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?(?:e[+-]?\d+)?|\d*\.\d+(?:e[+-]?\d+)?)\Z", re.I)
_SAMPLE = re.compile(r"(%s)(\{.*\})? (\S+)\Z" % _METRIC_NAME)
# Canonical "le" values (section "Canonical Numbers"): %g with ".0" added
# when there is neither a decimal point nor an exponent.
_CANONICAL_LE = re.compile(r"(?:\d+\.\d+|\d(?:\.\d+)?e[+-]\d\d+|\+Inf)\Z")
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created")}


class ExpositionError(AssertionError):
    pass


def _labels(text, where):
    """[(name, value)] of a "{...}" label set; values unescaped."""
    out, i = [], 1
    if text == "{}":
        return out
    while True:
        m = _LABEL_NAME.match(text, i)
        if not m or text[m.end():m.end() + 2] != '="':
            raise ExpositionError("%s: malformed label at %r" % (where, text[i:]))
        name, i, value = m.group(0), m.end() + 2, []
        while True:
            if i >= len(text):
                raise ExpositionError("%s: unterminated label value" % where)
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("n", '"', "\\"):
                    raise ExpositionError("%s: undefined escape \\%s" % (where, nxt))
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        out.append((name, "".join(value)))
        if text[i:] == "}":
            return out
        if text[i:i + 1] != ",":
            raise ExpositionError("%s: expected ',' or '}' at %r" % (where, text[i:]))
        i += 1


def _number(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not _REAL.match(text):
        raise ExpositionError("%s: not a number: %r" % (where, text))
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_exposition(data):
    """An Exposition from the bytes of a response; ExpositionError when
    they are not a valid OpenMetrics text exposition (as far as sealgate's
    families go: counters, gauges, a histogram)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExpositionError("not UTF-8: %s" % e)
    if "\r" in text:
        raise ExpositionError("carriage return in the exposition")
    if not text.endswith("# EOF\n"):
        raise ExpositionError("does not end with '# EOF\\n': %r" % text[-40:])
    lines = text[:-1].split("\n")
    types, help_seen, samples, done, sampled = {}, set(), {}, set(), set()
    family = None          # the family whose lines are being read
    hist = {}              # family -> {"le": [...], "count": n, "sum": x}
    for no, line in enumerate(lines, 1):
        where = "line %d %r" % (no, line[:120])
        if no == len(lines):
            if line != "# EOF":
                raise ExpositionError("%s: last line is not '# EOF'" % where)
            break
        if line.startswith("#"):
            m = re.match(r"# (TYPE|HELP|UNIT) (%s) (.*)\Z" % _METRIC_NAME, line)
            if not m:
                raise ExpositionError("%s: a '#' line that is no metadata" % where)
            kind, name, rest = m.groups()
            if name != family:
                if family is not None:
                    done.add(family)
                if name in done or name in types:
                    raise ExpositionError("%s: family %s interleaved or repeated"
                                          % (where, name))
                family = name
            if name in sampled:
                raise ExpositionError("%s: metadata after samples" % where)
            if kind == "TYPE":
                if name in types:
                    raise ExpositionError("%s: second TYPE" % where)
                if rest not in SUFFIXES:
                    raise ExpositionError("%s: unexpected type %r" % (where, rest))
                types[name] = rest
            elif kind == "HELP":
                if name in help_seen:
                    raise ExpositionError("%s: second HELP" % where)
                help_seen.add(name)
                if "\\" in rest.replace("\\\\", "").replace("\\n", "").replace('\\"', ""):
                    raise ExpositionError("%s: undefined escape in HELP" % where)
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ExpositionError("%s: not a sample line" % where)
        name, label_text, value_text = m.groups()
        if family is None or family not in types:
            raise ExpositionError("%s: sample before its family's TYPE" % where)
        suffix = name[len(family):] if name.startswith(family) else None
        if suffix not in SUFFIXES[types[family]]:
            raise ExpositionError("%s: %s is no sample of %s family %s"
                                  % (where, name, types[family], family))
        labels = _labels(label_text, where) if label_text else []
        names = [n for n, _v in labels]
        if len(set(names)) != len(names):
            raise ExpositionError("%s: a label name twice" % where)
        value = _number(value_text, where)
        key = (name, frozenset(labels))
        if key in samples:
            raise ExpositionError("%s: duplicate label set" % where)
        samples[key] = value
        sampled.add(family)
        if types[family] == "counter" and suffix == "_total":
            if not isinstance(value, int) or value < 0:
                raise ExpositionError("%s: a counter total that is no "
                                      "non-negative integer" % where)
        if types[family] == "histogram":
            h = hist.setdefault(family, {"le": [], "count": None, "sum": None})
            if suffix == "_bucket":
                if names != ["le"]:
                    raise ExpositionError("%s: bucket labels %r" % (where, names))
                le = labels[0][1]
                if not _CANONICAL_LE.match(le):
                    raise ExpositionError("%s: le=%r is not canonical" % (where, le))
                if not isinstance(value, int) or value < 0:
                    raise ExpositionError("%s: bucket value not an integer" % where)
                h["le"].append((float(le.replace("Inf", "inf")), value))
            elif suffix == "_count":
                h["count"] = value
            elif suffix == "_sum":
                h["sum"] = value
    for fam, h in hist.items():
        les = [le for le, _v in h["le"]]
        vals = [v for _le, v in h["le"]]
        if not les or les[-1] != float("inf"):
            raise ExpositionError("%s: no +Inf bucket last" % fam)
        if any(b <= a for a, b in zip(les, les[1:])):
            raise ExpositionError("%s: bucket thresholds not increasing: %r" % (fam, les))
        if any(b < a for a, b in zip(vals, vals[1:])):
            raise ExpositionError("%s: buckets not cumulative: %r" % (fam, vals))
        if h["count"] != vals[-1]:
            raise ExpositionError("%s: _count %r != +Inf bucket %r"
                                  % (fam, h["count"], vals[-1]))
        if h["sum"] is None or h["sum"] < 0:
            raise ExpositionError("%s: _sum missing or negative" % fam)
    return Exposition(types, samples, text)


def _family_of(sample_name, types):
    for fam, t in types.items():
        if sample_name.startswith(fam) and sample_name[len(fam):] in SUFFIXES[t]:
            return fam
    return None


def counter_values(expo):
    """{(sample name, labels): value} of every counter and histogram sample."""
    return {k: v for k, v in expo.samples.items()
            if _family_of(k[0], expo.types) in COUNTERS
            or k[0].startswith("sealgate_message_seconds")}


def delta(after, before, name, *keys):
    """Growth of a counter between two expositions, by label values."""
    out = after.by(name, *keys)
    out.subtract(before.by(name, *keys))
    return Counter({k: v for k, v in out.items() if v != 0})


# --------------------------------------------------------------------------
# HTTP and SMTP at the byte level


def http_get(port, path="/metrics", method="GET", host="127.0.0.1", headers=None,
             timeout=10):
    """(status, {lower-case header: value}, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def raw_request(port, data, host="127.0.0.1", timeout=10):
    """Send bytes as they are; the whole answer until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


class Smtp:
    """An SMTP client that sends bytes as they are and keeps every reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()
        self.tail = b""

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed; replies so far %r" % lines)
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                break
        return int(lines[0][:3]), b"\n".join(l[4:] for l in lines).decode("utf-8", "replace")

    def cmd(self, line):
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send_data(self, data):
        """Message bytes (dot-stuffed here, CRLF line ends), whole lines,
        without the end."""
        data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
        data = re.sub(rb"(?m)^\.", b"..", data)
        self.sock.sendall(data)
        self.tail = data[-2:]

    def end_data(self):
        self.sock.sendall((b"" if self.tail == b"\r\n" else b"\r\n") + b".\r\n")
        return self.reply()

    def close(self):
        try:
            self.cmd(b"QUIT")
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def listening_inet(pid):
    """(address, port) of the TCP sockets the process listens on."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    out = set()
    for table, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open("/proc/net/" + table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if fam == socket.AF_INET:
                addr = socket.inet_ntop(fam, raw[::-1])
            else:
                addr = socket.inet_ntop(fam, b"".join(raw[i:i + 4][::-1]
                                                      for i in range(0, 16, 4)))
            out.add((addr, int(port_hex, 16)))
    return out


def wait_log(milter, rx, timeout=WAIT):
    """Wait until the milter's log matches rx; the match or None."""
    end = time.monotonic() + timeout
    while True:
        m = re.search(rx, milter.log_text())
        if m or time.monotonic() > end:
            return m
        time.sleep(0.05)


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Set-up


def gen_partner_key(tmp, name, addr, expire):
    """A new OpenPGP key for addr in a GnuPG home of its own (expire as
    `gpg --quick-gen-key` takes it); returns (home, armored public key file,
    expiry in seconds since the epoch or None)."""
    home = sgtest.GpgHome(os.path.join(tmp, addr.split("@")[0]))
    home.gpg("--quick-gen-key", "%s <%s>" % (name, addr), "future-default", "default", expire)
    path = sgtest.export_public_key(tmp, home, addr)
    rows = [l.split(":") for l in home.gpg("--with-colons", "--list-keys", "<%s>" % addr)
            .stdout.decode().splitlines()]
    exp = [r[6] for r in rows if r[0] == "pub"][0]
    return home, path, int(exp) if exp else None


def setUpModule():
    tmp = sgtest.tmpdir("sgme")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    gw_dir = os.path.join(tmp, "gw")
    metrics_port = postfix.free_port()
    gw = sgtest.policy_gateway(gw_dir, POLICY % {"metrics": "127.0.0.1:%d" % metrics_port})
    gw.check_policy()
    # First, as it must still be valid when imported: a partner key that
    # expires 25 seconds from now (expired by the time keys are counted).
    brief_home, brief_pub, brief_exp = gen_partner_key(tmp, "Brief Partner",
                                                       "brief@partner.example", "seconds=25")
    gw.import_keys_checked(brief_pub)
    ids = inboundtest.Identities(tmp)
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender, homes=[brief_home],
                 metrics_port=metrics_port, brief_exp=brief_exp)
    gw.import_keys_checked(*[ids.sec_files[a] for a in (ALICE, BOB)])
    cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", ids.ca.cert)
    if cp.returncode != 0:
        raise RuntimeError("trust anchor import failed: %s%s" % (cp.stdout, cp.stderr))
    cp = gw.run("keys", "-c", gw.policy, "import", ids.p12[ALICE], ids.p12[BOB],
                "--passphrase-file", ids.passfile)
    if cp.returncode != 0:
        raise RuntimeError("PKCS#12 import failed: %s%s" % (cp.stdout, cp.stderr))
    frank = ids.ca.issue("Frank Smime", [FRANK])
    carol_pub = sgtest.export_public_key(tmp, ids.sender, CAROL)
    gw.import_keys_checked(carol_pub, frank.cert)
    STATE.update(frank=frank, carol_pub=carol_pub,
                 carol_fpr=ids.sender.fingerprint(CAROL))
    before = time.time()
    # On 127.0.0.1: the milter's sockets are checked below, and every other
    # test file through Postfix uses a unix socket.
    miltertest.start_milter_and_postfix(STATE, BINARY, unix=False)
    STATE["started"] = (before, time.time())


def tearDownModule():
    for proc in STATE.get("extra", []):
        proc.stop()
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()
    for home in STATE.get("homes", []):
        home.kill()


# --------------------------------------------------------------------------
# Messages of the load run


class Job:
    """One SMTP transaction of the load run."""

    def __init__(self, n, kind, sender, rcpts, direction, msg=None, marker=None,
                 subject=None):
        self.id = "%s-%d-%s" % (kind, n, os.urandom(4).hex())
        self.kind = kind
        self.sender = sender
        self.rcpts = rcpts
        self.direction = direction
        self.msg = msg
        self.marker = marker
        self.subject = subject
        self.mail = self.data = None
        self.rcpt_replies = {}
        self.qid = None


def outbound_message(job, to, size=0):
    job.marker = sgtest.MARKER + "-" + job.id
    job.subject = "Figures %s" % os.urandom(6).hex()
    headers = sgtest.std_headers(sender="Alice Example <%s>" % ALICE, to="<%s>" % to,
                                 subject=job.subject, extra=[("X-Load-Id", job.id)])
    headers += [("Content-Type", "text/plain; charset=us-ascii")]
    body = "Hello,\r\n%s\r\n" % job.marker
    if size:
        body += ("0123456789abcdef" * 4 + "\r\n") * (size // 66)
    return sgtest.make_message(headers, body)


def inbound_headers(job):
    job.subject = "Figures %s" % os.urandom(6).hex()
    return outer_headers(subject=job.subject, extra=[("X-Load-Id", job.id)])


def build_jobs(ids):
    """The mix of the load run (see the module's docstring)."""
    jobs = []

    def add(kind, count, sender, rcpts_fn, direction, make):
        for n in range(count):
            job = Job(n, kind, sender, rcpts_fn(n), direction)
            job.msg = make(job)
            jobs.append(job)

    def entity(job):
        job.marker = inboundtest.new_marker()
        return inboundtest.text_entity(job.marker)

    add("plain", 3, ALICE, lambda n: ["zoe%d@nokey.example" % n], "outbound",
        lambda j: outbound_message(j, j.rcpts[0]))
    add("openpgp", 3, ALICE, lambda n: [CAROL], "outbound",
        lambda j: outbound_message(j, CAROL))
    add("smime", 3, ALICE, lambda n: [FRANK], "outbound",
        lambda j: outbound_message(j, FRANK))
    add("internal", 3, ALICE, lambda n: [BOB], "internal",
        lambda j: outbound_message(j, BOB))
    add("reject", 2, ALICE, lambda n: ["lock%d@locked.example" % n], "outbound",
        lambda j: outbound_message(j, j.rcpts[0]))
    add("tempfail", 2, ALICE, lambda n: ["held%d@later.example" % n], "outbound",
        lambda j: outbound_message(j, j.rcpts[0]))
    add("size", 1, ALICE, lambda n: ["big@nokey.example"], "outbound",
        lambda j: outbound_message(j, j.rcpts[0], size=2560 * 1024))
    add("mixed", 1, ALICE, lambda n: [CAROL, "zoe-mixed@nokey.example"], "outbound",
        lambda j: outbound_message(j, CAROL))
    add("in-openpgp", 2, CAROL, lambda n: [ALICE], "inbound",
        lambda j: pgp_mime_message(gpg_encrypt(ids, entity(j), [ALICE]),
                                   headers=inbound_headers(j)))
    add("in-smime", 2, CAROL, lambda n: [ALICE], "inbound",
        lambda j: smime_message(cms_encrypt(entity(j), [ids.smime[ALICE].cert]),
                                headers=inbound_headers(j)))
    add("in-fail", 2, CAROL, lambda n: [ALICE], "inbound",
        lambda j: pgp_mime_message(gpg_encrypt(ids, entity(j), [BOB]),
                                   headers=inbound_headers(j)))
    add("in-signed", 2, CAROL, lambda n: [ALICE], "inbound",
        lambda j: verifytest.pgp_signed_message(ids.sender, entity(j),
                                                headers=inbound_headers(j)))
    add("other", 1, CAROL, lambda n: ["zoe-other@nokey.example"], "other",
        lambda j: outbound_message(j, j.rcpts[0]))
    add("bad-rcpt", 1, ALICE, lambda n: ["bob%relay.example@example.com"], None,
        lambda j: outbound_message(j, BOB))
    add("bad-from", 1, '"a\x01b"@example.com', lambda n: [BOB], None,
        lambda j: outbound_message(j, BOB))
    return jobs


def run_job(port, job, hold=None):
    """Send job over SMTP, keeping every reply. hold: an Event to wait for
    after the first lines of the message (the message stays in flight)."""
    smtp = Smtp(port)
    try:
        smtp.cmd(b"EHLO client.sgtest.invalid")
        job.mail = smtp.cmd(b"MAIL FROM:<" + job.sender.encode() + b">")
        if job.mail[0] != 250:
            return job
        for r in job.rcpts:
            job.rcpt_replies[r] = smtp.cmd(b"RCPT TO:<" + r.encode() + b">")
        if not any(c == 250 for c, _t in job.rcpt_replies.values()):
            return job
        code, text = smtp.cmd(b"DATA")
        if code != 354:
            job.data = (code, text)
            return job
        if hold is not None:
            head, sep, rest = job.msg.partition(b"\r\n")
            smtp.send_data(head + sep)
            hold.wait(WAIT * 2)
            smtp.send_data(rest)
        else:
            smtp.send_data(job.msg)
        job.data = smtp.end_data()
        m = re.search(r"queued as (\w+)", job.data[1])
        job.qid = m.group(1) if job.data[0] == 250 and m else None
        return job
    finally:
        smtp.close()


def status_value(value):
    """(status word, reason or "") of an X-Sealgate-* field value."""
    word, params, _names = verifytest.parse_status(sgtest.norm_value(value))
    return word, params.get("reason", "")


# --------------------------------------------------------------------------
# Tests


class MetricsCase(miltertest.MilterTestCase):

    state = STATE

    def setUp(self):
        super().setUp()
        self.port = self.state["metrics_port"]
        self.ids = self.state["ids"]

    def scrape(self, port=None, host="127.0.0.1"):
        """The endpoint's exposition, parsed strictly."""
        status, headers, body = http_get(port or self.port, host=host)
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(headers.get("content-type"),
                         "application/openmetrics-text; version=1.0.0; charset=utf-8")
        try:
            return parse_exposition(body)
        except ExpositionError as e:
            self.fail("malformed exposition: %s\n%s" % (e, body.decode("utf-8", "replace")))

    def wait_scrape(self, pred, what, timeout=WAIT):
        """Scrape until pred(exposition) holds; returns that exposition."""
        end = time.monotonic() + timeout
        while True:
            expo = self.scrape()
            if pred(expo):
                return expo
            if time.monotonic() > end:
                self.fail("%s: not seen within %ss\n%s" % (what, timeout, expo.text))
            time.sleep(0.05)

    def deliver_one(self, rcpt=None):
        """A plain message from alice to a partner without a key passes."""
        rcpt = rcpt or "zoe-%s@nokey.example" % os.urandom(3).hex()
        secret = miltertest.marker()
        msg = miltertest.make_msg(rcpt, secret)
        code, text, refused = self.pf.send_smtplib(ALICE, [rcpt], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30)
        self.assertIn(secret.encode(), bytes(msgs[0]))
        self.pf.sink.clear()

    def log_lines(self, since=0):
        """Lines of sealgate's log from byte offset since (the test
        harness's own "=== " lines left out)."""
        return [l for l in self.milter.log_since(since).splitlines()
                if not l.startswith("=== ")]

    def json_lines(self, since=0):
        """The JSON objects of the lines per message since the offset;
        fails on a line that is no log line or a JSON line that does not
        parse."""
        out = []
        for line in self.log_lines(since):
            m = LOG_LINE_RE.match(line)
            self.assertIsNotNone(m, "not a log line: %r" % line)
            if m.group(1).startswith("{"):
                try:
                    out.append(json.loads(m.group(1)))
                except ValueError as e:
                    self.fail("a JSON line that does not parse (%s): %r" % (e, line))
        return out

    # -- 1) load ---------------------------------------------------------

    def load_run(self):
        """Run the load once (test 1 and 3 read its results)."""
        if "load" not in STATE:
            STATE["load"] = None
            STATE["load"] = self._load_run()
        if STATE["load"] is None:
            self.fail("the load run failed (see the first test)")
        return STATE["load"]

    def _load_run(self):
        jobs = build_jobs(self.ids)
        log_mark = self.milter.log_size()
        before = self.scrape()
        # A message held open after DATA began: in flight.
        held = Job(0, "held", ALICE, ["zoe-held@nokey.example"], "outbound")
        held.msg = outbound_message(held, held.rcpts[0])
        release = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=5)
        held_future = pool.submit(run_job, self.pf.port, held, release)
        try:
            during = self.wait_scrape(lambda e: e.value("sealgate_messages_in_flight") >= 1,
                                      "a message in flight")
            self.assertEqual(during.value("sealgate_messages_in_flight"),
                             before.value("sealgate_messages_in_flight") + 1)
            scrapes, errors, done = [], [], threading.Event()

            def scraper():
                while not done.is_set():
                    try:
                        scrapes.append(parse_exposition(http_get(self.port)[2]))
                    except Exception as e:      # reported in the main thread
                        errors.append(e)
                        return
                    done.wait(0.05)

            t = threading.Thread(target=scraper)
            t.start()
            try:
                list(pool.map(lambda j: run_job(self.pf.port, j), jobs))
            finally:
                done.set()
                t.join(30)
            in_flight_seen = max(e.value("sealgate_messages_in_flight") for e in scrapes)
        finally:
            release.set()
            held_future.result(WAIT * 3)
            pool.shutdown()
        jobs.append(held)
        self.assertEqual(errors, [], "a scrape during the run failed")
        self.assertGreaterEqual(len(scrapes), 2, "too few scrapes during the run")
        self.assertGreaterEqual(in_flight_seen, 1)
        # Every counter only grows from one scrape to the next.
        for a, b in zip([during] + scrapes, scrapes):
            av, bv = counter_values(a), counter_values(b)
            for k, v in av.items():
                self.assertGreaterEqual(bv.get(k, -1), v, "%s went down" % (k,))
            self.assertEqual(sum(b.by("sealgate_messages_total").values()),
                             b.value("sealgate_message_seconds_count"),
                             "the histogram does not count every message")
        accepted = sum(1 for j in jobs if j.data and j.data[0] == 250)
        self.pf.wait_for_sink(accepted, timeout=60)
        self.assertTrue(self.pf.wait_queue_empty(30), self.pf.postqueue_p())
        delivered = self.pf.sink_messages()
        self.assertEqual(len(delivered), accepted)
        after = self.wait_scrape(lambda e: e.value("sealgate_messages_in_flight") == 0,
                                 "no message in flight after the run")
        return {"jobs": jobs, "before": before, "during": during, "after": after,
                "delivered": delivered, "log_mark": log_mark,
                "log_end": self.milter.log_size()}

    def delivered_form(self, job, msg):
        """(action, method) of a delivered message, from its content; the
        encrypted ones are decrypted with gpg or openssl on the way."""
        parsed = email.message_from_bytes(bytes(msg))
        ctype = parsed.get_content_type()
        dec = parsed.get_all(inboundtest.DECRYPTED) or []
        if dec:
            # Inbound (or internal): decrypted, or delivered as it came.
            if status_value(dec[0])[0] == "yes":
                self.assertIn(job.marker.encode(), bytes(msg))
                return "decrypt", re.search(r"method=(\w+)", dec[0]).group(1)
            if job.kind == "in-fail":
                self.assertEqual(ctype, "multipart/encrypted")
                self.assertNotIn(job.marker.encode(), bytes(msg))
            else:
                self.assertIn(job.marker.encode(), bytes(msg))
            return "pass", ""
        if ctype == "multipart/encrypted":
            _control, armored = sgtest.pgp_mime_parts(sgtest.canon(bytes(msg)))
            rc, plain, err = self.state["carol"].decrypt(armored)
            self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
            self.assertIn(job.marker.encode(), plain)
            return "encrypt", "openpgp"
        if ctype == "application/pkcs7-mime":
            rc, plain, err = smimetest.cms_decrypt(parsed.get_payload(decode=True),
                                                   self.state["frank"])
            self.assertEqual(rc, 0, err)
            self.assertIn(job.marker.encode(), plain)
            return "encrypt", "smime"
        self.assertIn(job.marker.encode(), bytes(msg), "%s: marker not delivered" % job.id)
        return "pass", ""

    @with_diagnostics
    def test_1_load_counters_match_what_happened(self):
        run = self.load_run()
        jobs, before, after = run["jobs"], run["before"], run["after"]
        by_id = {j.id: j for j in jobs}
        replies = {j.kind: set() for j in jobs}
        for j in jobs:
            replies[j.kind].add((j.mail[0],) + tuple(c for c, _t in j.rcpt_replies.values())
                                + ((j.data[0],) if j.data else ()))
        self.assertEqual(replies, {
            "plain": {(250, 250, 250)}, "openpgp": {(250, 250, 250)},
            "smime": {(250, 250, 250)}, "internal": {(250, 250, 250)},
            "reject": {(250, 250, 550)}, "tempfail": {(250, 250, 451)},
            "size": {(250, 250, 552)}, "mixed": {(250, 250, 452, 250)},
            "in-openpgp": {(250, 250, 250)}, "in-smime": {(250, 250, 250)},
            "in-fail": {(250, 250, 250)}, "in-signed": {(250, 250, 250)},
            "other": {(250, 250, 250)}, "bad-rcpt": {(250, 553)}, "bad-from": {(553,)},
            "held": {(250, 250, 250)}})

        # What arrived, by the X-Load-Id each message carries.
        want_messages, want_dec, want_sig = Counter(), Counter(), Counter()
        arrived = Counter()
        for msg in run["delivered"]:
            ids = miltertest.header(msg, "X-Load-Id")
            self.assertEqual(len(ids), 1, msg[:2000])
            job = by_id[ids[0]]
            arrived[job.id] += 1
            self.assertEqual(msg.rcpts, [r for r, (c, _t) in job.rcpt_replies.items()
                                         if c == 250])
            action, method = self.delivered_form(job, msg)
            want_messages[(job.direction, action, method, "accept")] += 1
            parsed = email.message_from_bytes(bytes(msg))
            for value in parsed.get_all(inboundtest.DECRYPTED) or []:
                want_dec[status_value(value)] += 1
            for value in parsed.get_all(inboundtest.SIGNATURE) or []:
                want_sig[(status_value(value)[0],)] += 1
        self.assertEqual(sorted(arrived), sorted(j.id for j in jobs
                                                 if j.data and j.data[0] == 250))
        self.assertEqual(set(arrived.values()), {1})
        # What the clients were told.
        want_rejects, want_tempfails, want_deferred = Counter(), Counter(), Counter()
        for j in jobs:
            for code, text in [j.mail] + list(j.rcpt_replies.values()):
                if code == 553:
                    want_rejects[("", "address")] += 1
                elif code == 452:
                    self.assertIn("separate transaction", text)
                    want_deferred[("mixed-classes",)] += 1
            if not j.data:
                continue
            code, text = j.data
            if code == 550:
                m = re.match(r'5\.7\.1 encryption required by rule "(.*)"; no usable key',
                             text)
                self.assertIsNotNone(m, text)
                want_rejects[(m.group(1), "missing-key")] += 1
                want_messages[(j.direction, "reject", "", "reject")] += 1
            elif code == 552:
                self.assertIn("5.3.4 message size exceeds the limit", text)
                want_rejects[("", "size")] += 1
                want_messages[("unknown", "reject", "", "reject")] += 1
            elif code == 451:
                self.assertRegex(text, r'^4\.7\.1 encryption required by rule "hold"')
                want_tempfails[("missing-key",)] += 1
                want_messages[(j.direction, "tempfail", "", "tempfail")] += 1
        self.assertEqual(want_rejects[(REJECT_RULE, "missing-key")], 2)

        self.assertEqual(delta(after, before, "sealgate_messages_total", "direction",
                               "action", "method", "outcome"), want_messages)
        self.assertEqual(delta(after, before, "sealgate_rejects_total", "rule", "cause"),
                         want_rejects)
        self.assertEqual(delta(after, before, "sealgate_tempfails_total", "cause"),
                         want_tempfails)
        self.assertEqual(delta(after, before, "sealgate_recipients_deferred_total", "cause"),
                         want_deferred)
        self.assertEqual(delta(after, before, "sealgate_inbound_decryptions_total",
                               "result", "reason"), want_dec)
        self.assertEqual(delta(after, before, "sealgate_inbound_signatures_total", "status"),
                         want_sig)
        # The mix is what it claims to be.
        self.assertEqual(want_dec[("yes", "")], 4)
        self.assertEqual(want_dec[("no", "not-for-recipient")], 2)
        self.assertEqual(want_sig[("valid",)], 2)
        self.assertEqual(want_messages[("outbound", "encrypt", "openpgp", "accept")], 4)
        self.assertEqual(want_messages[("outbound", "encrypt", "smime", "accept")], 3)
        self.assertEqual(want_messages[("inbound", "decrypt", "openpgp", "accept")], 2)
        self.assertEqual(want_messages[("inbound", "decrypt", "smime", "accept")], 2)
        self.assertEqual(want_messages[("other", "pass", "", "accept")], 1)

        # The histogram counts every message, cumulatively.
        n = sum(want_messages.values())
        self.assertEqual(after.value("sealgate_message_seconds_count")
                         - before.value("sealgate_message_seconds_count"), n)
        self.assertEqual(sum(after.by("sealgate_messages_total").values()),
                         after.value("sealgate_message_seconds_count"))
        self.assertGreater(after.value("sealgate_message_seconds_sum"),
                           before.value("sealgate_message_seconds_sum"))
        buckets = sorted((float(dict(l)["le"].replace("Inf", "inf")), v)
                         for l, v in after.series("sealgate_message_seconds_bucket").items())
        self.assertEqual(buckets[-1][1], after.value("sealgate_message_seconds_count"))
        self.assertEqual(after.value("sealgate_keystore_snapshot"), 1)

    # -- 2) keys expiring --------------------------------------------------

    @with_diagnostics
    def test_2_keys_expiring(self):
        tmp = self.state["tmp"]
        homes = self.state["homes"]
        files = []
        for name, addr, expire in (("Soon Partner", "soon@partner.example", "10d"),
                                   ("Later Partner", "later@partner.example", "60d")):
            home, path, _exp = gen_partner_key(tmp, name, addr, expire)
            homes.append(home)
            files.append(path)
        gina = self.ids.ca.issue("Gina Smime", ["gina@smime.example"],
                                 end=smimetest.utcnow() + smimetest.days(20))
        files.append(gina.cert)
        anchor = smimetest.TestCA(os.path.join(tmp, "ca-short"), name="Short Lived CA",
                                  key="rsa:2048", end=smimetest.utcnow() + smimetest.days(25))
        self.gw.import_keys_checked(*files)
        cp = self.gw.run("keys", "-c", self.gw.policy, "import", "--trust-anchor", anchor.cert)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        # brief@partner.example's key, usable when imported, has expired.
        while time.time() <= self.state["brief_exp"] + 1:
            time.sleep(0.2)
        listing = self.gw.list_keys().stdout
        self.assertRegex(listing, r"(?m)^brief@partner\.example +openpgp +\w+ +expired")

        expo = self.scrape()
        kinds = {dict(l)["kind"]: v for l, v in expo.series("sealgate_keys_expiring").items()}
        self.assertEqual(kinds, {"openpgp": 1, "smime": 1, "smime-anchor": 1}, listing)

        # Imported while the milter runs, no signal: the next scrape.
        home, path, _exp = gen_partner_key(tmp, "Sooner Partner", "sooner@partner.example",
                                           "5d")
        homes.append(home)
        self.gw.import_keys_checked(path)
        self.assertEqual(self.scrape().value("sealgate_keys_expiring", kind="openpgp"), 2)
        cp = self.gw.run("keys", "-c", self.gw.policy, "remove", "soon@partner.example")
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertEqual(self.scrape().value("sealgate_keys_expiring", kind="openpgp"), 1)

    # -- 3) JSON log -----------------------------------------------------

    def key_material(self):
        """Lines of base64 from every key and certificate file the test
        made (armored OpenPGP keys, PEM certificates and private keys)."""
        paths = list(self.ids.sec_files.values()) + [self.state["carol_pub"]]
        for ident in list(self.ids.smime.values()) + [self.state["frank"]]:
            paths += [ident.cert, ident.key]
        out = set()
        for p in paths:
            with open(p) as f:
                for line in f.read().splitlines():
                    if re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line.strip()):
                        out.add(line.strip())
        self.assertGreater(len(out), 20)
        return out

    @with_diagnostics
    def test_3_json_lines_of_the_load_run(self):
        run = self.load_run()
        with open(self.milter.log_path, "rb") as f:
            f.seek(run["log_mark"])
            log = f.read(run["log_end"] - run["log_mark"]).decode("utf-8")
        lines = []
        for line in log.splitlines():
            m = LOG_LINE_RE.match(line)
            self.assertIsNotNone(m, "not a log line: %r" % line)
            if m.group(1).startswith("{"):
                lines.append(json.loads(m.group(1)))
        messages = sum(delta(run["after"], run["before"], "sealgate_messages_total").values())
        self.assertEqual(len(lines), messages, "one JSON line per message")
        by_qid = {}
        for obj in lines:
            self.assertEqual(list(obj), JSON_FIELDS)
            self.assertNotIn(obj["queue_id"], by_qid, "a queue id twice")
            by_qid[obj["queue_id"]] = obj
            datetime.datetime.strptime(obj["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            for name in ("ms", "busy_ms"):
                self.assertIsInstance(obj[name], (int, float))
                self.assertGreaterEqual(obj[name], 0)
        # Postfix's queue id of each message: its reply, or (refused) its log.
        maillog = self.pf.maillog()
        carol_fpr, frank_fpr = self.state["carol_fpr"], self.state["frank"].fpr
        for job in run["jobs"]:
            if not job.data:
                continue
            qid = job.qid
            if qid is None:
                m = re.search(r"(\w+): milter-reject: END-OF-MESSAGE [^\n]*to=<%s>"
                              % re.escape(job.rcpts[0]), maillog)
                self.assertIsNotNone(m, "no milter-reject line for %s" % job.rcpts[0])
                qid = m.group(1)
            self.assertIn(qid, by_qid, "no JSON line for %s (%s)" % (job.id, qid))
            obj = by_qid.pop(qid)
            accepted = [r for r, (c, _t) in job.rcpt_replies.items() if c == 250]
            klass, key, keys = {
                "openpgp": ("openpgp", carol_fpr, [carol_fpr]),
                "mixed": ("openpgp", carol_fpr, [carol_fpr]),
                "smime": ("smime", frank_fpr, [frank_fpr]),
                "internal": ("internal", None, []),
            }.get(job.kind, ("pass", None, []) if job.sender == CAROL else
                  ("plain", None, []))
            with self.subTest(job=job.id):
                self.assertEqual(obj["from"], job.sender)
                self.assertEqual(obj["recipients"], [{"address": r, "class": klass, "key": key}
                                                     for r in accepted])
                self.assertEqual(obj["class"], klass)
                self.assertEqual(obj["direction"],
                                 "unknown" if job.kind == "size" else job.direction)
                self.assertEqual(obj["keys"], keys)
                outcome = {550: "reject", 552: "reject", 451: "tempfail"}.get(job.data[0],
                                                                              "accept")
                self.assertEqual(obj["outcome"], outcome)
                self.assertEqual(obj["rule"], {"reject": REJECT_RULE, "tempfail": "hold",
                                               "smime": "smime-partner"}.get(job.kind))
                self.assertEqual(obj["cause"], {"reject": "missing-key", "size": "size",
                                                "tempfail": "missing-key"}.get(job.kind))
                self.assertEqual(obj["method"], {"openpgp": "openpgp", "mixed": "openpgp",
                                                 "smime": "smime", "in-openpgp": "openpgp",
                                                 "in-smime": "smime"}.get(job.kind))
                self.assertEqual(obj["cipher"] is not None, job.kind == "smime")
                inbound = job.direction in ("inbound", "internal")
                self.assertEqual(obj["decryption"] is not None, inbound)
                self.assertEqual(obj["signature"] is not None, inbound)
                if job.kind in ("in-openpgp", "in-smime"):
                    self.assertEqual((obj["decryption"], obj["decryption_reason"]), ("yes", None))
                if job.kind == "in-fail":
                    self.assertEqual((obj["decryption"], obj["decryption_reason"]),
                                     ("no", "not-for-recipient"))
                if job.kind == "in-signed":
                    self.assertEqual(obj["signature"], "valid")
        self.assertEqual(by_qid, {}, "JSON lines of no message of the run")
        # Neither content nor key material.
        for job in run["jobs"]:
            for secret in (job.marker, job.subject):
                if secret:
                    self.assertNotIn(secret, log)
        self.assertNotIn("-----BEGIN", log)
        leaked = [k for k in self.key_material() if k in log]
        self.assertEqual(leaked, [], "key material in the log")

    @with_diagnostics
    def test_3_odd_addresses(self):
        """Quotes, backslashes and UTF-8 in addresses give valid JSON on
        one line; control characters and bytes that are not UTF-8 are
        refused at RCPT and counted, and the log stays line by line."""
        before = self.scrape()
        mark = self.milter.log_size()
        sent = {}
        for rcpt in (b'"o\\"brien\\\\x"@example.com', "j\u00fcrgen@example.com".encode()):
            smtp = Smtp(self.pf.port)
            try:
                smtp.cmd(b"EHLO client.sgtest.invalid")
                self.assertEqual(smtp.cmd(b'MAIL FROM:<"o\\"neil"@example.com>')[0], 250)
                code, text = smtp.cmd(b"RCPT TO:<" + rcpt + b">")
                if code == 250:
                    self.assertEqual(smtp.cmd(b"DATA")[0], 354)
                    smtp.send_data(miltertest.make_msg(BOB, miltertest.marker()))
                    code, text = smtp.end_data()
                sent[rcpt] = (code, text)
            finally:
                smtp.close()
        refused = {}
        for rcpt in (b'"a\x01b"@example.com', b'"tab\\\tx"@example.com', b"a\xffb@example.com",
                     b'"a\xc3("@example.com', b'"zo\x1b[31me"@nokey.example'):
            smtp = Smtp(self.pf.port)
            try:
                smtp.cmd(b"EHLO client.sgtest.invalid")
                smtp.cmd(b"MAIL FROM:<alice@example.com>")
                refused[rcpt] = smtp.cmd(b"RCPT TO:<" + rcpt + b">")
            finally:
                smtp.close()
        self.assertEqual({r: c for r, (c, _t) in sent.items()},
                         {r: 250 for r in sent}, sent)
        self.assertEqual({r: c for r, (c, _t) in refused.items()},
                         {r: 553 for r in refused}, refused)
        after = self.wait_scrape(lambda e: e.value("sealgate_messages_in_flight") == 0,
                                 "no message in flight")
        self.assertEqual(delta(after, before, "sealgate_rejects_total", "rule", "cause"),
                         Counter({("", "address"): len(refused)}))
        self.assertEqual(delta(after, before, "sealgate_messages_total"),
                         Counter({(): len(sent)}))
        with open(self.milter.log_path, "rb") as f:
            raw = f.read()[mark:]
        self.assertEqual(raw.decode("utf-8").encode("utf-8"), raw)
        self.assertIsNone(re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", raw), "raw control byte")
        objs = self.json_lines(mark)
        self.assertEqual(len(objs), len(sent))
        got = sorted((o["from"], o["recipients"][0]["address"]) for o in objs)
        self.assertEqual(got, sorted(('"o\\"neil"@example.com', r.decode("utf-8"))
                                     for r in sent))

    # -- 4) the endpoint -----------------------------------------------------

    @with_diagnostics
    def test_4_paths_and_methods(self):
        status, headers, body = http_get(self.port, "/")
        self.assertEqual(status, 404, body)
        for path in ("/metrics/", "/metricsx", "/../metrics", "/favicon.ico"):
            self.assertEqual(http_get(self.port, path)[0], 404, path)
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"):
            status, headers, body = http_get(self.port, method=method,
                                             headers={"Content-Length": "0"})
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("allow"), "GET, HEAD", method)
        answer = raw_request(self.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 11\r\nConnection: close\r\n\r\nhello world")
        self.assertTrue(answer.startswith(b"HTTP/1.1 405 "), answer[:200])
        status, headers, body = http_get(self.port, method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertGreater(int(headers["content-length"]), 100)
        expo = self.scrape()
        start = expo.value("sealgate_start_time_seconds")
        lo, hi = self.state["started"]
        self.assertTrue(lo - 1 <= start <= hi + 1, (lo, start, hi))
        self.assertEqual(listening_inet(self.milter.proc.pid),
                         {("127.0.0.1", self.milter.port), ("127.0.0.1", self.port)})

    @with_diagnostics
    def test_4_huge_header(self):
        mark = self.milter.log_size()
        for name, request, status in (
                ("header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 +
                 b"\r\nConnection: close\r\n\r\n", b"431"),
                ("many headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\n" +
                 b"".join(b"X-%d: %s\r\n" % (i, b"b" * 60) for i in range(400)) +
                 b"Connection: close\r\n\r\n", b"431"),
                ("url", b"GET /metrics?" + b"c" * 17000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"414")):
            with self.subTest(name):
                answer = raw_request(self.port, request)
                self.assertTrue(answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:300])
        # Said in the log, one line each, and none of the request in it.
        lines = self.log_lines(mark)
        self.assertEqual(len([l for l in lines if "metrics: Error processing request" in l]),
                         3, lines)
        self.assertNotIn("aaaaaaaa", "\n".join(lines))
        self.deliver_one()
        self.scrape()
        self.assertTrue(self.milter.running())

    @with_diagnostics
    def test_4_idle_connections(self):
        socks = []
        try:
            for i in range(20):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.%d" % (i + 2), 0))
                s.settimeout(10)
                s.connect(("127.0.0.1", self.port))
                socks.append(s)
            self.deliver_one()
            # Mail went through while every connection was still open.
            for s in socks:
                s.setblocking(False)
                with self.assertRaises(BlockingIOError):
                    s.recv(1)
        finally:
            for s in socks:
                s.close()
        # Once they are closed, the endpoint answers again (as soon as it
        # has seen them go).
        end = time.monotonic() + WAIT
        while True:
            try:
                self.scrape()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    @with_diagnostics
    def test_4_reloads_counted(self):
        policy = self.gw.policy
        with open(policy) as f:
            good = f.read()

        def reloads(e):
            return (e.value("sealgate_policy_reloads_total", result="ok"),
                    e.value("sealgate_policy_reloads_total", result="failed"))

        def write(text):
            tmp = policy + ".new"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, policy)

        ok, failed = reloads(self.scrape())
        try:
            self.milter.proc.send_signal(signal.SIGUSR1)
            self.wait_scrape(lambda e: reloads(e) == (ok + 1, failed), "reload ok")
            write(good.replace("log_format: json", "log_format: json\n  colour: blue"))
            self.milter.proc.send_signal(signal.SIGUSR1)
            self.wait_scrape(lambda e: reloads(e) == (ok + 1, failed + 1), "reload failed")
            self.assertIsNotNone(self.wait_sealgate_log(r"reload of \S+ failed; the previous "
                                                        r"policy stays in force"))
            # A policy without the endpoint: it still serves until a restart.
            write(re.sub(r"(?m)^  metrics: .*\n", "", good))
            self.milter.proc.send_signal(signal.SIGUSR1)
            self.wait_scrape(lambda e: reloads(e) == (ok + 2, failed + 1), "reload ok")
            self.assertIsNotNone(self.wait_sealgate_log(
                r"gateway\.metrics changed; it takes effect only when the milter is restarted"))
        finally:
            write(good)
        self.milter.proc.send_signal(signal.SIGUSR1)
        self.wait_scrape(lambda e: reloads(e) == (ok + 3, failed + 1), "reload ok")
        self.deliver_one()

    def extra_milter(self, name, metrics):
        """A second milter on the gateway's keystore whose policy has
        metrics (None: no gateway.metrics)."""
        with open(self.gw.policy) as f:
            text = f.read()
        if metrics is None:
            text = re.sub(r"(?m)^  metrics: .*\n", "", text)
        else:
            text = re.sub(r'(?m)^  metrics: .*$', '  metrics: "%s"' % metrics, text)
        path = os.path.join(self.gw.dir, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        self.gw.check_policy(text)
        return path

    @with_diagnostics
    def test_4_ipv6(self):
        if not ipv6_loopback():
            SKIPPED.append("no IPv6 loopback address")
            self.skipTest("no IPv6 loopback address")
        port = postfix.free_port()
        path = self.extra_milter("v6", "[::1]:%d" % port)
        milter = postfix.MilterProcess(
            lambda spec: [BINARY, "milter", "-c", path, "-s", spec, "-f"]
            + sgtest.milter_user_args(), os.path.join(self.state["tmp"], "v6.log"))
        self.state.setdefault("extra", []).append(milter)
        milter.start()
        try:
            # The endpoint starts after the milter's socket listens.
            self.assertIsNotNone(wait_log(milter, r"metrics at http://\[::1\]:%d/metrics"
                                          % port))
            expo = self.scrape(port=port, host="::1")
            self.assertEqual(expo.value("sealgate_keystore_snapshot"), 1)
            self.assertEqual(listening_inet(milter.proc.pid),
                             {("127.0.0.1", milter.port), ("::1", port)})
        finally:
            milter.stop()

    @with_diagnostics
    def test_4_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            path = self.extra_milter("busy", "127.0.0.1:%d" % port)
            sock = os.path.join(self.state["tmp"], "busy.sock")
            cp = sgtest.run([BINARY, "milter", "-c", path, "-s", "unix:" + sock]
                            + sgtest.milter_user_args(), timeout=60)
        err = cp.stderr.decode("utf-8", "replace")
        self.assertNotEqual(cp.returncode, 0, err)
        self.assertIn("sealgate: gateway.metrics: cannot listen on 127.0.0.1:%d: "
                      "Address already in use\n" % port, err)
        self.assertFalse(os.path.lexists(sock), "milter socket left behind")

    @with_diagnostics
    def test_4_no_metrics_no_listener(self):
        path = self.extra_milter("nometrics", None)
        milter = postfix.MilterProcess(
            lambda spec: [BINARY, "milter", "-c", path, "-s", spec, "-f"]
            + sgtest.milter_user_args(), os.path.join(self.state["tmp"], "nometrics.log"))
        self.state.setdefault("extra", []).append(milter)
        milter.start()
        try:
            # Its milter socket and nothing else: no endpoint on a default
            # port (such as the 9108 of the documentation's example).
            self.assertEqual(listening_inet(milter.proc.pid), {("127.0.0.1", milter.port)})
            self.assertNotIn("metrics at", milter.log_text())
        finally:
            milter.stop()

    # -- 5) refusals the milter makes itself ---------------------------------

    @with_diagnostics
    def test_5_spool_gone_counted_as_message(self):
        before = self.scrape()
        away = self.gw.spool + ".away"
        os.rename(self.gw.spool, away)
        try:
            rcpt = "zoe-spool@nokey.example"
            msg = outbound_message(Job(0, "spool", ALICE, [rcpt], "outbound"), rcpt,
                                   size=1536 * 1024)
            code, text, refused = self.pf.send_smtplib(ALICE, [rcpt], msg)
        finally:
            os.rename(away, self.gw.spool)
        self.assertEqual((code, refused), (451, {}), text)
        after = self.wait_scrape(lambda e: e.value("sealgate_messages_in_flight") == 0,
                                 "no message in flight")
        self.assertEqual(delta(after, before, "sealgate_tempfails_total", "cause"),
                         Counter({("spool",): 1}))
        self.assertEqual(delta(after, before, "sealgate_messages_total", "outcome"),
                         Counter({("tempfail",): 1}))
        self.assertEqual(after.value("sealgate_message_seconds_count")
                         - before.value("sealgate_message_seconds_count"), 1)
        objs = self.json_lines(self.log_mark)
        self.assertEqual([(o["outcome"], o["cause"], o["recipients"][0]["address"])
                          for o in objs], [("tempfail", "spool", rcpt)])
        self.assertRegex(objs[0]["reason"], r"^cannot spool body in ")


if __name__ == "__main__":
    sgtest.main_with_skips(SKIPPED)
