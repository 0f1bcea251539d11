"""Starting what the JWKS attacks run against: a fake identity provider (fakeidp.py)
and the relay in JWT mode, both on loopback, their files beside these scripts."""
import os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("TR_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "tickrelay"))


def start_idp(tag, set_file, port, secs=120):
    """The fake IdP on `port` serving `set_file` (mode file mode_<tag>, log idp_<tag>.log),
    stopping by itself after `secs`."""
    open(f"{HERE}/mode_{tag}", "w").write(f"ok {set_file}\n")
    open(f"{HERE}/idp_{tag}.log", "w").close()
    idp = subprocess.Popen([sys.executable, f"{HERE}/fakeidp.py", str(port), f"{HERE}/mode_{tag}",
                            f"{HERE}/idp_{tag}.log", str(secs)])
    time.sleep(0.5)
    return idp


def jwks_url(port):
    """The relay arguments that make it fetch its keys from the fake IdP on `port`."""
    return ["--set", f"auth.jwks_url=http://127.0.0.1:{port}/jwks.json"]


def start_relay(tag, port, *args):
    """The relay (TR_BIN, by default the release build) in JWT mode on ws://127.0.0.1:`port`
    with `args`, its output in relay_<tag>.out."""
    return subprocess.Popen([BIN, "--insecure-plain", "--listen", f"127.0.0.1:{port}", "--auth", "jwt", *args],
                            stdout=open(f"{HERE}/relay_{tag}.out", "w"), stderr=subprocess.STDOUT)
