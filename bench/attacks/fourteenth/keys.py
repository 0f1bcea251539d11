"""Keys and tokens for the JWKS tests.

  python3 keys.py make            writes keyA.pem, keyB.pem (RSA 2048), pubA.pem (A's public
                                   half), set_A.json, set_AB.json, set_B.json,
                                   set_many_N.json (N = 8, 16, 100, 1000, 2000)
  import keys; keys.token(kid="A", sub="u1") -> a token signed by key A (kid may be None)
"""
import base64, json, os, sys, time
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization

D = os.path.dirname(os.path.abspath(__file__))


def b64(n):
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk(priv, kid):
    pub = priv.public_key().public_numbers()
    d = {"kty": "RSA", "use": "sig", "alg": "RS256", "n": b64(pub.n), "e": b64(pub.e)}
    if kid is not None:
        d["kid"] = kid
    return d


def load(name):
    return serialization.load_pem_private_key(open(os.path.join(D, name), "rb").read(), None)


def make():
    keys = {}
    for k in "AB":
        p = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        open(os.path.join(D, f"key{k}.pem"), "wb").write(p.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        keys[k] = p
    open(os.path.join(D, "pubA.pem"), "wb").write(keys["A"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for name, ks in (("A", "A"), ("B", "B"), ("AB", "AB")):
        json.dump({"keys": [jwk(keys[k], k) for k in ks]}, open(os.path.join(D, f"set_{name}.json"), "w"))
    # many distinct keys (fresh RSA moduli are slow to make: reuse a few with distinct kids and
    # tweak nothing else; verification cost is the same). The real key A is LAST.
    extra = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(8)]
    for n in (8, 16, 100, 1000, 2000):
        ks = [jwk(extra[i % 8], f"x{i}") for i in range(n - 1)] + [jwk(keys["A"], "A")]
        json.dump({"keys": ks}, open(os.path.join(D, f"set_many_{n}.json"), "w"))
        # the same without any kid (for no-kid tokens, every key is tried)
    print("made")


def token(kid="A", sub="u1", key="A", exp_in=3600, extra=None, alg="RS256"):
    priv = load(f"key{key}.pem")
    claims = {"sub": sub, "exp": int(time.time()) + exp_in}
    if extra:
        claims.update(extra)
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, priv, algorithm=alg, headers=headers)


if __name__ == "__main__" and sys.argv[1:] == ["make"]:
    make()
