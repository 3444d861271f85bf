"""Settings of the lab for the Python tools, resolved exactly like env.sh so a tool never talks to another
lab's ports: INFRA_ROOT (else INBOXD_TEST_INFRA_ROOT, else /tmp/inboxd-infra); then for each knob the caller's
environment, else $INFRA_ROOT/lab.env (written by up.sh), else the matching INBOXD_TEST_* variable of
test-env.sh, else the default. Use: `from labenv import lab, ca`."""
import os

_TEST = {"INFRA_DOMAIN": "INBOXD_TEST_DOMAIN", "IMAP_PORT": "INBOXD_TEST_IMAP_PORT",
         "IMAPS_PORT": "INBOXD_TEST_IMAPS_PORT", "LMTP_PORT": "INBOXD_TEST_LMTP_PORT",
         "SMTP_PORT": "INBOXD_TEST_SMTP_PORT", "SINK_PORT": "INBOXD_TEST_SINK_PORT",
         "PROXY_PORT": "INBOXD_TEST_PROXY_PORT", "PROXY_CONTROL_PORT": "INBOXD_TEST_PROXY_CONTROL_PORT",
         "TEST_PASSWORD": "INBOXD_TEST_IMAP_PASSWORD"}
_DEFAULT = {"INFRA_DOMAIN": "inboxd.test", "IMAP_PORT": "10143", "IMAPS_PORT": "10993", "LMTP_PORT": "10024",
            "SMTP_PORT": "10025", "SINK_PORT": "10026", "PROXY_PORT": "10994", "TEST_PASSWORD": "secret",
            "SINK": "1", "PROXY": "1"}

ROOT = os.path.abspath(os.environ.get("INFRA_ROOT") or os.environ.get("INBOXD_TEST_INFRA_ROOT") or "/tmp/inboxd-infra")
_SAVED = {}
try:
    with open(os.path.join(ROOT, "lab.env")) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                _SAVED[k] = v
except FileNotFoundError:
    pass


def lab(name):
    """A lab knob (str; int for *_PORT)."""
    if name == "INFRA_ROOT":
        return ROOT
    v = os.environ.get(name) or _SAVED.get(name) or os.environ.get(_TEST.get(name, "-"))
    if not v and name == "PROXY_CONTROL_PORT":
        v = os.environ.get("FAULT_CONTROL_PORT") or str(lab("PROXY_PORT") + 1)
    v = v or _DEFAULT.get(name, "")
    return int(v) if name.endswith("_PORT") else v


def ca():
    """The lab's test CA (what clients trust)."""
    return os.environ.get("INBOXD_TEST_IMAP_CA") or os.path.join(ROOT, "dovecot/tls/ca.pem")
