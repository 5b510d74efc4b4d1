"""S/MIME helpers for sealgate's end-to-end tests.

Standard library only; run with Debian's /usr/bin/python3. Builds on sgtest.

- TestCA: a throwaway certificate authority made with the `openssl` command
  (`openssl ca`, so that certificates can get fixed start and end dates),
  issuing RSA and EC certificates with chosen key usage, extended key usage
  and addresses.
- CMS checks with `openssl cms` (decrypt, -cmsout -print) as the independent
  implementation, never sealgate's own code.
- GpgsmHome: a gpgsm home holding a recipient's key, as a second independent
  decrypter.
- Checks of the S/MIME message that sealgate writes.
"""

import base64
import datetime
import os
import re
import shutil
import subprocess

import sgtest
from sgtest import canon, header_values, is_content_field, norm_fields, norm_value, \
    parse_content_type, split_header_body

SMIME_CT = "application/pkcs7-mime"


# --------------------------------------------------------------------------
# Running openssl


def _run(argv, input_bytes=None, cwd=None, env=None):
    return subprocess.run(argv, input=input_bytes,
                          stdin=None if input_bytes is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                          env=env, timeout=sgtest.CMD_TIMEOUT, check=False)


def openssl(*args, input_bytes=None, cwd=None, check=True):
    """Run `openssl ARGS...`; CompletedProcess with bytes. Raises when
    check is true and openssl fails."""
    cp = _run(["openssl"] + list(args), input_bytes=input_bytes, cwd=cwd)
    if check and cp.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s"
                           % (" ".join(args), cp.returncode,
                              cp.stderr.decode("utf-8", "replace")))
    return cp


def require_tools():
    """The sealgate binary and openssl must exist, else the file is skipped."""
    sgtest.require_binary()
    sgtest.require_program("openssl")


def asn1_time(when):
    """openssl ca's -startdate/-enddate form of a datetime (UTC)."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def days(n):
    return datetime.timedelta(days=n)


def cert_fingerprint(pem_path, digest="sha256"):
    """Fingerprint of a certificate as upper-case hex without colons."""
    out = openssl("x509", "-in", pem_path, "-noout", "-fingerprint", "-" + digest).stdout
    return out.decode().strip().split("=", 1)[1].replace(":", "").upper()


def write_file(path, data, mode=0o600):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------
# A test CA


_CA_CONF = """\
[ ca ]
default_ca = testca

[ testca ]
dir              = {dir}
database         = {dir}/index.txt
serial           = {dir}/serial
new_certs_dir    = {dir}/issued
certificate      = {dir}/ca.pem
private_key      = {dir}/ca.key
default_md       = sha256
policy           = any_name
unique_subject   = no
copy_extensions  = none
email_in_dn      = yes
preserve         = yes

[ any_name ]
countryName            = optional
organizationName       = optional
commonName             = supplied
emailAddress           = optional
"""


class Identity:
    """A key and certificate made by TestCA.

    Attributes: name, addrs (addresses in the certificate), cert (PEM path),
    key (unencrypted PEM private key path), der (DER path), fpr (SHA-256,
    upper-case hex, as sealgate prints it), sha1 (SHA-1 fingerprint), ca
    (the issuing TestCA), not_after (datetime).
    """

    def __init__(self, ca, name, addrs, cert, key, not_after):
        self.ca = ca
        self.name = name
        self.addrs = list(addrs)
        self.addr = self.addrs[0] if self.addrs else None
        self.cert = cert
        self.key = key
        self.not_after = not_after
        base = cert[:-len(".pem")]
        self.der = base + ".der"
        openssl("x509", "-in", cert, "-outform", "DER", "-out", self.der)
        self.fpr = cert_fingerprint(cert)
        self.sha1 = cert_fingerprint(cert, "sha1")
        self._base = base

    def pkcs12(self, passphrase, legacy=False, chain=(), path=None, pbe=None):
        """A PKCS#12 file with this key and certificate (and the PEM
        certificates in chain), protected with passphrase. OpenSSL 3's
        default encryption (AES, PBKDF2), with legacy=True the older
        RC2-40 (certificates) / 3DES (key) one that gpgsm 2.2 can read, or
        with pbe="PBE-SHA1-3DES" that algorithm for both and a SHA-1 MAC
        (as older Windows exports). Returns its path."""
        path = path or "%s%s.p12" % (self._base, "-legacy" if legacy else
                                     "-" + pbe if pbe else "")
        args = ["pkcs12", "-export", "-in", self.cert, "-inkey", self.key,
                "-name", self.name, "-passout", "pass:" + passphrase, "-out", path]
        for c in chain:
            args += ["-certfile", c]
        if legacy:
            args.append("-legacy")
        if pbe:
            args += ["-certpbe", pbe, "-keypbe", pbe, "-macalg", "sha1"]
        openssl(*args)
        return path

    def encrypted_key(self, passphrase, traditional=False, path=None):
        """This private key in an encrypted PEM file: PKCS#8
        (BEGIN ENCRYPTED PRIVATE KEY) or, with traditional=True, the older
        form with Proc-Type/DEK-Info header lines. Returns its path."""
        path = path or "%s-%s.key" % (self._base, "trad" if traditional else "p8")
        if traditional:
            openssl("pkey", "-in", self.key, "-aes256", "-traditional",
                    "-passout", "pass:" + passphrase, "-out", path)
        else:
            openssl("pkey", "-in", self.key, "-aes256",
                    "-passout", "pass:" + passphrase, "-out", path)
        return path


class TestCA:
    """A certificate authority in its own directory, made with `openssl ca`.

    A root (parent=None) signs itself; an intermediate is signed by parent.
    key is an `openssl req -newkey` argument ("rsa:3072", "ec").
    The CA is valid from two days ago for ten years unless start/end are given.
    """

    def __init__(self, path, name="sealgate Test CA", key="rsa:3072", parent=None,
                 start=None, end=None):
        self.dir = path
        self.name = name
        os.makedirs(os.path.join(path, "issued"), mode=0o700, exist_ok=True)
        write_file(os.path.join(path, "index.txt"), b"")
        write_file(os.path.join(path, "serial"), "%X\n" % (0x1000 + (os.getpid() & 0xfff)))
        self.conf = write_file(os.path.join(path, "ca.cnf"), _CA_CONF.format(dir=path))
        self.key = os.path.join(path, "ca.key")
        self.cert = os.path.join(path, "ca.pem")
        self._n = 0
        start = start or utcnow() - days(2)
        end = end or utcnow() + days(3650)
        ext = ("basicConstraints = critical, CA:TRUE\n"
               "keyUsage = critical, keyCertSign, cRLSign\n"
               "subjectKeyIdentifier = hash\n")
        if parent is None:
            csr = self._request(self.key, "/CN=%s" % name, key)
            extfile = write_file(os.path.join(path, "ca-ext.cnf"), "[ ext ]\n" + ext)
            openssl("ca", "-batch", "-config", self.conf, "-selfsign", "-keyfile", self.key,
                    "-extfile", extfile, "-extensions", "ext", "-notext",
                    "-startdate", asn1_time(start), "-enddate", asn1_time(end),
                    "-in", csr, "-out", self.cert)
        else:
            ident = parent.issue(name, (), key=key, ca=True, start=start, end=end,
                                 extensions=ext + "authorityKeyIdentifier = keyid\n")
            os.replace(ident.key, self.key)
            os.replace(ident.cert, self.cert)
        self.der = os.path.join(path, "ca.der")
        openssl("x509", "-in", self.cert, "-outform", "DER", "-out", self.der)
        self.fpr = cert_fingerprint(self.cert)
        self.sha1 = cert_fingerprint(self.cert, "sha1")
        self.parent = parent

    def _request(self, keyfile, subject, key, reuse=False):
        self._n += 1
        csr = os.path.join(self.dir, "req%d.csr" % self._n)
        if reuse:
            openssl("req", "-new", "-key", keyfile, "-out", csr, "-subj", subject)
            return csr
        args = ["req", "-new", "-nodes", "-keyout", keyfile, "-out", csr, "-subj", subject]
        if key.startswith("ec"):
            curve = key.split(":", 1)[1] if ":" in key else "P-256"
            args += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + curve]
        else:
            args += ["-newkey", key]
        openssl(*args)
        return csr

    def issue(self, name, addrs, key="rsa:2048", ku="default", eku="emailProtection",
              san=True, subject_email=False, start=None, end=None, ca=False,
              extensions=None, basename=None, keyfile=None):
        """Issue a certificate; returns an Identity.

        addrs: e-mail addresses, written as SAN rfc822Names (san=True) and/or
        as the subject's emailAddress (subject_email=True, first address).
        ku: keyUsage value; "default" means digitalSignature plus
        keyEncipherment (RSA) or keyAgreement (EC); None leaves it out.
        eku: extendedKeyUsage value or None. start/end: validity (default:
        from a day ago for a year). extensions: the whole extension section
        instead (for CA certificates). keyfile: an existing PEM private key
        to certify (of the type key says) instead of a new one.
        """
        start = start or utcnow() - days(1)
        end = end or utcnow() + days(365)
        subject = "/CN=%s" % name
        if subject_email and addrs:
            subject += "/emailAddress=%s" % addrs[0]
        if extensions is None:
            ext = ["basicConstraints = critical, CA:FALSE",
                   "subjectKeyIdentifier = hash",
                   "authorityKeyIdentifier = keyid"]
            if ku == "default":
                ku = "critical, digitalSignature, " + (
                    "keyAgreement" if key.startswith("ec") else "keyEncipherment")
            if ku:
                ext.append("keyUsage = " + ku)
            if eku:
                ext.append("extendedKeyUsage = " + eku)
            if san and addrs:
                ext.append("subjectAltName = " + ", ".join("email:" + a for a in addrs))
            extensions = "\n".join(ext) + "\n"
        base = basename or re.sub(r"[^A-Za-z0-9.-]+", "_", addrs[0] if addrs else name)
        certfile = os.path.join(self.dir, base + ".pem")
        if keyfile:
            csr = self._request(keyfile, subject, key, reuse=True)
        else:
            keyfile = os.path.join(self.dir, base + ".key")
            csr = self._request(keyfile, subject, key)
        extfile = write_file(os.path.join(self.dir, base + "-ext.cnf"),
                             "[ ext ]\n" + extensions)
        openssl("ca", "-batch", "-config", self.conf, "-extfile", extfile, "-extensions", "ext",
                "-notext", "-startdate", asn1_time(start), "-enddate", asn1_time(end),
                "-in", csr, "-out", certfile)
        return Identity(self, name, addrs, certfile, keyfile, end)


def pem_bundle(path, *pem_paths):
    """Concatenate PEM files into path; returns path."""
    return write_file(path, b"".join(read_file(p) for p in pem_paths))


def pkcs7_bundle(path, pem_paths, der=False):
    """A certs-only PKCS#7 bundle (`openssl crl2pkcs7 -nocrl -certfile ...`)."""
    args = ["crl2pkcs7", "-nocrl", "-out", path, "-outform", "DER" if der else "PEM"]
    for p in pem_paths:
        args += ["-certfile", p]
    openssl(*args)
    return path


# --------------------------------------------------------------------------
# Policy files


def smime_policy(methods="smime", default_extra="", rules="",
                 internal_domains="example.com", action="encrypt-if-key"):
    """Policy text for S/MIME tests: keystore "store", spool_dir "spool",
    trusted_networks 127.0.0.0/8, the outbound default (plus default_extra,
    e.g. "smime_cipher: aes-128-gcm") and rules (YAML list items indented by
    four spaces)."""
    extra = (", " + default_extra) if default_extra else ""
    text = ("version: 1\n"
            "gateway:\n"
            "  keystore: \"store\"\n"
            "  spool_dir: \"spool\"\n"
            "  trusted_networks: [127.0.0.0/8]\n"
            "internal_domains: [%s]\n"
            "outbound:\n"
            "  default: { action: %s, methods: [%s]%s }\n"
            % (internal_domains, action, methods, extra))
    if rules:
        text += "  rules:\n" + rules
    return text


def smime_gateway(tmp, policy_text, anchors=(), certs=()):
    """A Gateway in tmp with policy_text (checked with `policy check`), the
    anchors (PEM paths) imported as trust anchors and then the certs
    (paths) as plain certificates."""
    gw = sgtest.policy_gateway(tmp, policy_text)
    gw.check_policy()
    if anchors:
        cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", *anchors)
        if cp.returncode != 0:
            raise RuntimeError("trust anchor import failed (%d): %s%s"
                               % (cp.returncode, cp.stdout, cp.stderr))
    if certs:
        gw.import_keys_checked(*certs)
    return gw


def place_certs(keystore, *paths):
    """Puts certificates (PEM paths) into the keystore's S/MIME store as FPR.pem, the
    way the passing of time leaves an expired certificate there: `keys
    import` refuses expired and not yet valid certificates."""
    certs = os.path.join(keystore, "smime", "certs")
    if not os.path.isdir(certs):
        raise RuntimeError("no S/MIME store in %s: import something first" % keystore)
    for path in paths:
        dest = os.path.join(certs, cert_fingerprint(path) + ".pem")
        shutil.copyfile(path, dest)
        os.chmod(dest, 0o600)


def place_identity(keystore, ident):
    """place_certs for ident's certificate, and its private key beside it
    in smime/keys (0600)."""
    place_certs(keystore, ident.cert)
    dest = os.path.join(keystore, "smime", "keys", ident.fpr + ".pem")
    shutil.copyfile(ident.key, dest)
    os.chmod(dest, 0o600)


def clone_gateway(gw, tmp):
    """A new Gateway in tmp with gw's policy and a copy of its keystore
    (a quick start for tests that each need their own keystore)."""
    with open(gw.policy) as f:
        text = f.read()
    new = sgtest.policy_gateway(tmp, text)
    if os.path.isdir(gw.keystore):
        shutil.copytree(gw.keystore, new.keystore, symlinks=True,
                        ignore=shutil.ignore_patterns("S.*", "*.lock"))
    return new


def new_key(path, key="rsa:2048"):
    """A new unencrypted PEM private key ("rsa:BITS" or "ec:CURVE") at path."""
    kind, _sep, param = key.partition(":")
    if kind == "ec":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:" + (param or "P-256"), "-out", path)
    else:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                "rsa_keygen_bits:" + (param or "2048"), "-out", path)
    os.chmod(path, 0o600)
    return path


def explain_class(gw, rcpt, sender=sgtest.SENDER, named=None):
    """The `class:` value `sealgate policy explain` gives rcpt (str); named:
    the canonical form explain shows rcpt as, when it differs."""
    cp = gw.run("policy", "explain", "-c", gw.policy, "--from", sender, "--to", rcpt,
                "--client-ip", "127.0.0.1")
    if cp.returncode != 0:
        raise AssertionError("policy explain failed (%d): %s%s"
                             % (cp.returncode, cp.stdout, cp.stderr))
    block = cp.stdout.split("recipient: %s\n" % (named or rcpt), 1)
    if len(block) != 2:
        raise AssertionError("no block for %s in explain output:\n%s" % (rcpt, cp.stdout))
    m = re.search(r"^  class: (.*)$", block[1], re.M)
    if not m:
        raise AssertionError("no class line for %s:\n%s" % (rcpt, cp.stdout))
    return m.group(1)


LIST_RE = re.compile(r"^(?P<addr>\S+)\s+smime\s+(?P<fpr>[0-9A-F]{64})\s+(?P<state>\S+)\s+"
                     r"expires=(?P<expires>\d{4}-\d\d-\d\d)\s+usable=(?P<usable>\S+)"
                     r"(?: caps=(?P<caps>\S+(?: \([^)]*\))?))?"
                     r"(?: reason=(?P<reason>.*))?$")


def smime_list_lines(text):
    """[dict] of the S/MIME lines in `keys list` (or import) output; an
    optional leading "imported"/"unchanged" goes to key "prefix", what the
    certificate's owner is known to read to "caps" (None: unknown)."""
    out = []
    for line in text.splitlines():
        prefix = None
        m = re.match(r"^(imported|unchanged) +(.*)$", line)
        if m:
            prefix, line = m.group(1), m.group(2)
        m = LIST_RE.match(line)
        if m:
            d = m.groupdict()
            d["prefix"] = prefix
            out.append(d)
    return out


# --------------------------------------------------------------------------
# The S/MIME message sealgate writes


def smime_der(tc, original, out, smime_type):
    """Check out is an S/MIME encrypted message made from original and
    return the DER of its CMS object.

    Asserts: the top-level fields other than Content-* are the original's
    (same order and values; MIME-Version: 1.0 added when missing); the
    Content-* fields are exactly Content-Type application/pkcs7-mime with
    smime-type=smime_type and name="smime.p7m", Content-Transfer-Encoding
    base64, Content-Disposition attachment with filename="smime.p7m" and
    optionally a Content-Description; the body is base64 in CRLF lines of at
    most 76 characters, each ending in CRLF (LF when the original has
    no CRLF at all: `sealgate process` keeps the file's convention).
    """
    of, _ = split_header_body(canon(original))
    nf, body = split_header_body(out)
    orig_other = [(n.lower(), v) for n, v in of if not is_content_field(n)]
    new_other = [(n.lower(), v) for n, v in nf if not is_content_field(n)]
    if not header_values(of, "MIME-Version") and ("mime-version", "1.0") in new_other:
        new_other.remove(("mime-version", "1.0"))
    tc.assertEqual(new_other, orig_other, "outer header fields other than Content-* changed")
    tc.assertEqual([norm_value(v) for v in header_values(nf, "MIME-Version")], ["1.0"])

    content = [(n.lower(), v) for n, v in nf if is_content_field(n)]
    names = sorted(n for n, _v in content)
    allowed = {"content-type", "content-transfer-encoding", "content-disposition",
               "content-description"}
    tc.assertTrue(set(names) <= allowed, "unexpected outer Content-* fields: %r" % names)
    for n in ("content-type", "content-transfer-encoding", "content-disposition"):
        tc.assertEqual(names.count(n), 1, "outer %s fields: %r" % (n, content))
    tc.assertLessEqual(names.count("content-description"), 1)

    ctype, ct = parse_content_type(header_values(nf, "Content-Type")[0])
    tc.assertEqual(ctype, SMIME_CT)
    tc.assertEqual(ct.get_param("smime-type"), smime_type)
    tc.assertEqual(ct.get_param("name"), "smime.p7m")
    tc.assertEqual(norm_value(header_values(nf, "Content-Transfer-Encoding")[0]).lower(),
                   "base64")
    _d, disp = parse_content_type("x/x; " + header_values(nf, "Content-Disposition")[0]
                                  .split(";", 1)[-1])
    tc.assertEqual(header_values(nf, "Content-Disposition")[0].split(";")[0].strip().lower(),
                   "attachment")
    tc.assertEqual(disp.get_param("filename"), "smime.p7m")

    # `sealgate process` writes its file with the input file's line ending:
    # CRLF, or LF for an input without any CR.
    eol = b"\r\n" if b"\r\n" in original else b"\n"
    tc.assertTrue(body, "empty S/MIME body")
    if eol == b"\r\n":
        tc.assertEqual(body, canon(body), "S/MIME body lines do not end in CRLF")
    else:
        tc.assertNotIn(b"\r", body, "CR in the S/MIME body of an LF-only message")
    tc.assertTrue(body.endswith(eol), "S/MIME body does not end with a line ending")
    lines = body[:-len(eol)].split(eol)
    for line in lines:
        tc.assertTrue(re.fullmatch(rb"[A-Za-z0-9+/=]{1,76}", line),
                      "not a base64 line of at most 76 characters: %r" % line[:100])
    der = base64.b64decode(b"".join(lines), validate=True)
    tc.assertEqual(der[:1], b"\x30", "body is not a DER SEQUENCE")
    return der


def cms_print(der):
    """Text of `openssl cms -cmsout -print` for DER input."""
    return openssl("cms", "-cmsout", "-print", "-inform", "DER",
                   input_bytes=der).stdout.decode("utf-8", "replace")


def cms_content_type(print_text):
    """The CMS contentType's short name (e.g. id-smime-ct-authEnvelopedData)."""
    m = re.search(r"^\s*contentType: (\S+)", print_text, re.M)
    return m.group(1) if m else None


def cms_content_cipher(print_text):
    """Short name of the content encryption algorithm (e.g. aes-256-gcm)."""
    m = re.search(r"contentEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)", print_text)
    return m.group(1) if m else None


def cms_recipient_infos(print_text):
    """[(kind, key encryption algorithm)] of the RecipientInfos, kind being
    "ktri" (key transport, RSA) or "kari" (key agreement, ECDH)."""
    out = []
    chunks = re.split(r"^\s*d\.(ktri|kari|kekri|pwri|ori):\s*$", print_text, flags=re.M)
    for kind, text in zip(chunks[1::2], chunks[2::2]):
        m = re.search(r"keyEncryptionAlgorithm:\s*\n\s*algorithm: (\S+)", text)
        out.append((kind, m.group(1) if m else None))
    return out


def cms_decrypt(der, ident):
    """`openssl cms -decrypt` with ident's certificate and key:
    (returncode, plaintext bytes, stderr text)."""
    cp = _run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER",
               "-recip", ident.cert, "-inkey", ident.key], input_bytes=der)
    return cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace")


def openssl_encrypt(data, idents, cipher="aes-256-cbc", oaep=False):
    """DER of a CMS message that openssl itself encrypts to idents (used to
    learn what the other checker can read)."""
    args = ["cms", "-encrypt", "-binary", "-outform", "DER", "-" + cipher]
    for ident in idents:
        args += ["-recip", ident.cert]
        if oaep:
            args += ["-keyopt", "rsa_padding_mode:oaep"]
    return openssl(*args, input_bytes=data).stdout


def assert_entity(tc, original, plain, who=""):
    """plain (a decrypted entity) is the original's Content-* fields and body,
    CRLF-canonical."""
    tc.assertEqual(plain, canon(plain), "decrypted entity is not CRLF-canonical %s" % who)
    pf, pb = split_header_body(plain)
    of, ob = split_header_body(canon(original))
    tc.assertEqual(norm_fields(pf), norm_fields([f for f in of if is_content_field(f[0])]),
                   "Content-* fields of the decrypted entity differ from the original %s" % who)
    tc.assertTrue(pb == ob, "decrypted body differs from the original body %s "
                  "(%d vs %d bytes)" % (who, len(pb), len(ob)))


def assert_openssl_decrypts(tc, der, ident, original):
    """openssl decrypts der with ident's key to the original entity."""
    rc, plain, err = cms_decrypt(der, ident)
    tc.assertEqual(rc, 0, "openssl cms -decrypt failed for %s: %s" % (ident.addr, err))
    assert_entity(tc, original, plain, "(openssl, %s)" % ident.addr)
    return plain


# --------------------------------------------------------------------------
# gpgsm as a second decrypter


class GpgsmHome:
    """A throwaway gpgsm home: CRL/OCSP checks off, loopback pinentry.

    trust(ca) imports a CA certificate and marks it trusted in
    trustlist.txt; add_identity(ident) imports ident's key and certificate
    from a legacy PKCS#12 file (gpgsm 2.2 cannot read OpenSSL 3's default
    one). The agent is stopped by sgtest's clean-up (the home holds
    pubring.kbx).
    """

    PASSPHRASE = "gpgsm-test"

    def __init__(self, path):
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        write_file(os.path.join(path, "gpgsm.conf"),
                   "disable-crl-checks\n"
                   "disable-trusted-cert-crl-check\n"
                   "disable-ocsp\n"
                   "no-common-certs-import\n")
        write_file(os.path.join(path, "gpg-agent.conf"),
                   "allow-loopback-pinentry\n"
                   "disable-scdaemon\n")
        write_file(os.path.join(path, "trustlist.txt"), b"")

    def gpgsm(self, *args, input_bytes=None, check=True):
        """Run gpgsm; the passphrase goes through file descriptor 0 when
        there is no input, else through a pipe named by --passphrase-fd."""
        rfd, wfd = os.pipe()
        os.write(wfd, (self.PASSPHRASE + "\n").encode())
        os.close(wfd)
        try:
            argv = ["gpgsm", "--homedir", self.path, "--batch", "--no-tty",
                    "--pinentry-mode", "loopback", "--passphrase-fd", str(rfd)] + list(args)
            cp = subprocess.run(argv, input=input_bytes,
                                stdin=None if input_bytes is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(rfd,), timeout=sgtest.CMD_TIMEOUT, check=False)
        finally:
            os.close(rfd)
        if check and cp.returncode != 0:
            raise RuntimeError("gpgsm %s failed (%d): %s"
                               % (" ".join(args), cp.returncode,
                                  cp.stderr.decode("utf-8", "replace")))
        return cp

    def trust(self, ca):
        self.gpgsm("--import", ca.cert)
        with open(os.path.join(self.path, "trustlist.txt"), "a") as f:
            f.write("%s S\n" % ca.sha1)

    def add_identity(self, ident):
        p12 = ident.pkcs12(self.PASSPHRASE, legacy=True,
                           path=os.path.join(self.path, "import-%s.p12" % ident.sha1[:8]))
        self.gpgsm("--import", p12)
        os.unlink(p12)
        cp = self.gpgsm("--with-colons", "--list-secret-keys", ident.sha1)
        if ident.sha1.encode() not in cp.stdout.upper():
            raise RuntimeError("gpgsm did not import the key of %s" % ident.addr)

    def decrypt(self, der):
        """(returncode, plaintext bytes, stderr text) of `gpgsm --decrypt`."""
        cp = self.gpgsm("--decrypt", input_bytes=der, check=False)
        return cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace")

    def can_decrypt(self, der):
        rc, plain, _err = self.decrypt(der)
        return rc == 0 and bool(plain)


def assert_gpgsm_decrypts(tc, home, der, original, who=""):
    rc, plain, err = home.decrypt(der)
    tc.assertEqual(rc, 0, "gpgsm --decrypt failed %s: %s" % (who, err))
    assert_entity(tc, original, plain, "(gpgsm %s)" % who)
    return plain


# --------------------------------------------------------------------------
# Keystore snapshots


def tree_snapshot(root):
    """{relative path: (mode, size, mtime_ns, content)} of every file and
    directory under root, to show that a refused or repeated import changed
    nothing."""
    snap = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.isdir(path):
                snap[rel + "/"] = (st.st_mode, None, None, None)
            else:
                snap[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, read_file(path))
    return snap
