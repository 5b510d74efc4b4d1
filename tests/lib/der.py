"""A minimal DER reader and writer for building hostile CMS objects in tests:
parse a definite-length DER object into a tree, change it, write it again
with all enclosing lengths recomputed."""

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OID = 0x06


class Node:
    """One element: tag (the identifier octet), and either children
    (constructed) or value (primitive)."""

    def __init__(self, tag, value=None, children=None):
        self.tag = tag
        self.value = value
        self.children = children

    @property
    def constructed(self):
        return self.children is not None

    def __getitem__(self, i):
        return self.children[i]

    def __repr__(self):
        if self.constructed:
            return "Node(%#x, %r)" % (self.tag, self.children)
        return "Node(%#x, %d bytes)" % (self.tag, len(self.value))


def _length(data, off):
    first = data[off]
    if first < 0x80:
        return first, off + 1
    n = first & 0x7F
    if n == 0 or n > 4:
        raise ValueError("unsupported length at %d" % off)
    return int.from_bytes(data[off + 1:off + 1 + n], "big"), off + 1 + n


def _parse_one(data, off):
    tag = data[off]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not supported")
    length, start = _length(data, off + 1)
    end = start + length
    if end > len(data):
        raise ValueError("element at %d runs past the end" % off)
    if tag & 0x20:
        children, pos = [], start
        while pos < end:
            child, pos = _parse_one(data, pos)
            children.append(child)
        return Node(tag, children=children), end
    return Node(tag, value=bytes(data[start:end])), end


def parse(data):
    node, end = _parse_one(data, 0)
    if end != len(data):
        raise ValueError("%d bytes after the object" % (len(data) - end))
    return node


def _encode_length(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def encode(node):
    body = b"".join(encode(c) for c in node.children) if node.constructed else node.value
    return bytes([node.tag]) + _encode_length(len(body)) + body


def oid(dotted):
    """The DER value of an object identifier given as "1.2.840..."."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


ENVELOPED_DATA = oid("1.2.840.113549.1.7.3")
AUTH_ENVELOPED_DATA = oid("1.2.840.113549.1.9.16.1.23")


class Cms:
    """The parts of an openssl-made EnvelopedData or AuthEnvelopedData that
    tests change (DER, no originatorInfo, no authenticated attributes)."""

    def __init__(self, der):
        self.root = parse(der)
        self.body = self.root[1][0]             # [0] EXPLICIT -> the SEQUENCE

    @property
    def recipient_infos(self):
        return self.body[1].children            # SET OF RecipientInfo

    @property
    def content_info(self):
        return self.body[2]                     # (Auth)EncryptedContentInfo

    @property
    def algorithm(self):
        return self.content_info[1]             # AlgorithmIdentifier

    @property
    def ciphertext(self):
        return self.content_info[2]             # [0] IMPLICIT OCTET STRING

    @property
    def mac(self):
        return self.body.children[-1]           # AuthEnvelopedData: the MAC

    def encode(self):
        return encode(self.root)
