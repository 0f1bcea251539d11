"""JWK sets with unusual keys against the relay's token check (aws-lc-rs).

Run: COUNT=100 python3 jwks_keys.py
Writes out/set_odd.json: a real RSA-2048 key "A" plus RSA keys of 1024, 3072, 4096,
8192 and 16384 bits (random moduli: a public-key operation costs the same on any
modulus), exponents 1, 3, 2^32+1, a 2048-bit one and an even one, EC keys on
secp256k1, P-521 and an off-curve P-256 point, X25519, an `oct` key, malformed base64,
a missing `n`, and a key id listed 8 times. Starts a fake IdP (../fourteenth/fakeidp.py)
and the relay in JWT mode (plain ws://) on it, then for each odd key sends COUNT
upgrades with a token naming it (a random signature of the modulus' length) and
reports the status and the relay's CPU per upgrade; then the honest key A still works.
Then out/set_big.json (~1 MiB: ~2,400 RSA keys without `alg`, A last) with malformed,
kid-less, wrong-alg and forged tokens: the relay's CPU per refused upgrade.
"""
import base64, json, os, random, sys, time, collections
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "fourteenth"), os.path.join(HERE, "..")]
import jwt, procstat, up
from cryptography.hazmat.primitives.asymmetric import rsa
import subprocess
F14 = os.path.join(HERE, "..", "fourteenth")
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))


def start_idp(tag, set_file, port, secs=300):
    open(f"{OUT}/mode_{tag}", "w").write(f"ok {set_file}\n")
    p = subprocess.Popen([sys.executable, f"{F14}/fakeidp.py", str(port), f"{OUT}/mode_{tag}", f"{OUT}/idp_{tag}.log", str(secs)])
    time.sleep(0.5)
    return p


def jwks_url(port):
    return ["--set", f"auth.jwks_url=http://127.0.0.1:{port}/jwks.json"]


def start_relay(tag, port, *args):
    return subprocess.Popen([BIN, "--insecure-plain", "--no-quic", "--listen", f"127.0.0.1:{port}", "--auth", "jwt", *args],
                            stdout=open(f"{OUT}/relay_{tag}.out", "w"), stderr=subprocess.STDOUT)
OUT = os.path.join(HERE, "out")
COUNT = int(os.environ.get("COUNT", "100"))
IDP, RP = 18161, 17661
rnd = random.Random(16)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ib(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rand_mod(bits):
    return rnd.getrandbits(bits) | (1 << (bits - 1)) | 1


_AP = os.path.join(OUT, "keyA.pem")
from cryptography.hazmat.primitives import serialization
if os.path.exists(_AP):
    A = serialization.load_pem_private_key(open(_AP, "rb").read(), None)
else:
    A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    open(_AP, "wb").write(A.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
pa = A.public_key().public_numbers()
keyA = {"kty": "RSA", "kid": "A", "alg": "RS256", "use": "sig", "n": ib(pa.n), "e": ib(pa.e)}


def rsa_jwk(kid, bits, e=65537):
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "n": ib(rand_mod(bits)), "e": ib(e)}


odd = {
    "r1024": rsa_jwk("r1024", 1024), "r2048": rsa_jwk("r2048", 2048), "r3072": rsa_jwk("r3072", 3072),
    "r4096": rsa_jwk("r4096", 4096), "r8192": rsa_jwk("r8192", 8192), "r16384": rsa_jwk("r16384", 16384),
    "e1": rsa_jwk("e1", 2048, 1), "e3": rsa_jwk("e3", 2048, 3), "e2p32": rsa_jwk("e2p32", 2048, 2**32 + 1),
    "ebig": rsa_jwk("ebig", 2048, rand_mod(2048)), "e16k": rsa_jwk("e16k", 16384, rand_mod(16384)),
    "eeven": rsa_jwk("eeven", 2048, 65536),
    "k1": {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": b64u(os.urandom(32)), "y": b64u(os.urandom(32))},
    "p521": {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64u(os.urandom(66)), "y": b64u(os.urandom(66))},
    "p256bad": {"kty": "EC", "kid": "p256bad", "crv": "P-256", "x": b64u(os.urandom(32)), "y": b64u(os.urandom(32))},
    "x25519": {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64u(os.urandom(32))},
    "oct": {"kty": "oct", "kid": "oct", "k": b64u(b"secret")},
    "badb64": {"kty": "RSA", "kid": "badb64", "n": "!!!not base64***", "e": "AQAB"},
    "non": {"kty": "RSA", "kid": "non", "e": "AQAB"},
    "ed_short": {"kty": "OKP", "kid": "ed_short", "crv": "Ed25519", "x": b64u(os.urandom(5))},
}
dup = [rsa_jwk("dup", 4096) for _ in range(8)]
ALG = {"k1": "ES256K", "p521": "ES512", "p256bad": "ES256", "x25519": "EdDSA", "oct": "HS256", "ed_short": "EdDSA"}
SIGLEN = {"p256bad": 64, "k1": 64, "p521": 132, "x25519": 64, "ed_short": 64, "oct": 32}


def forged(kid, alg="RS256", siglen=256, sub="u1", header=None):
    h = header or {"alg": alg, "typ": "JWT", "kid": kid}
    p = {"sub": sub, "exp": int(time.time()) + 3600}
    return f"{b64u(json.dumps(h).encode())}.{b64u(json.dumps(p).encode())}.{b64u(os.urandom(siglen))}"


def honest(kid="A"):
    return jwt.encode({"sub": "honest", "exp": int(time.time()) + 3600}, A, algorithm="RS256", headers={"kid": kid})




def write_small_big(n_big=2400):
    """out/set_small.json (key A) and out/set_big.json (~1 MiB: n_big RSA keys without
    `alg`, each verifying 6 algorithms, then A)."""
    big = [{"kty": "RSA", "kid": f"x{i}", "n": keyA["n"], "e": "AQAB"} for i in range(n_big)] + [keyA]
    json.dump({"keys": big}, open(os.path.join(OUT, "set_big.json"), "w"))
    json.dump({"keys": [keyA]}, open(os.path.join(OUT, "set_small.json"), "w"))
