"""Our secret regexes vs detect-secrets' plugins: what each catches of a corpus of credential
forms and harmless values, and what each costs per value (the recording budget).

    pip install detect-secrets && python bench/secret_detectors.py
"""

from __future__ import annotations

import hashlib
import string
import time

from reprokit._model.redact import is_secret_value

ALNUM = string.ascii_letters + string.digits


def chars(tag: str, n: int, alphabet: str = ALNUM) -> str:
    digest = hashlib.sha256(tag.encode()).digest() * 8
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


SECRETS = {
    "AWS key id": "AKIA" + chars("a", 16, string.ascii_uppercase + string.digits),
    "GitHub token": "ghp_" + chars("b", 36),
    "GitLab token": "glpat-" + chars("c", 20),
    "Slack token": "xoxb-123456789012-" + chars("d", 24),
    "OpenAI key": "sk-" + chars("e", 48),
    "Stripe key": "sk_live_" + chars("f", 24),
    "Hugging Face": "hf_" + chars("g", 34),
    "Google API key": "AIza" + chars("h", 35),
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJ" + chars("i", 30) + "." + chars("j", 43),
    "PEM": "-----BEGIN RSA PRIVATE KEY-----\nMIIE" + chars("k", 40) + "\n-----END RSA",
    "DB URL": "postgresql://u:" + chars("l", 16) + "@db:5432/x",
    "token-only URL": "https://" + chars("m", 30) + "@github.com/me/x.git",
    "libpq DSN": "host=db user=u password=" + chars("n", 16),
    "quoted password": "login failed: password '" + chars("o", 12) + "'",
    "Path with token": "/cache/hf_" + chars("p", 34),
    "npm token": "npm_" + chars("q", 36),
    "bare hex 32": chars("r", 32, "0123456789abcdef"),
    "bare base64 40": chars("s", 40),
}
HARMLESS = [
    "resnet50", "/data/imagenet/train", "https://github.com/me/project.git", "cosine",
    "bert-base-uncased", "0.001", "adamw", "s3://bucket/prefix/run-7", "lr=0.1,wd=0.01",
    "ssh://git@github.com/me/x.git", "sha256:" + "0" * 64, "2026-11-27T13:00:00Z",
    "facebook/opt-125m", "checkpoints/epoch-10.pt", "a3f1c2d4e5b6",
]  # fmt: skip


def ours(value: str) -> bool:
    return is_secret_value(value)


def detect_secrets_checker():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins = [cls() for cls in get_mapping_from_secret_type_to_class().values()]

    def check(value: str) -> bool:
        for line in value.splitlines() or [value]:
            for p in plugins:
                try:
                    if p.analyze_line(filename="x", line=line, line_number=1):
                        return True
                except Exception:
                    continue
        return False

    return check, len(plugins)


def measure(name: str, check) -> None:
    caught = [k for k, v in SECRETS.items() if check(v)]
    false = [v for v in HARMLESS if check(v)]
    values = list(SECRETS.values()) + HARMLESS
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        for v in values:
            check(v)
    per = (time.perf_counter() - t0) / (n * len(values)) * 1e6
    print(f"{name:28} caught {len(caught):2}/{len(SECRETS)}  false alarms {len(false)}/"
          f"{len(HARMLESS)}  {per:8.1f} us/value")  # fmt: skip
    missed = sorted(set(SECRETS) - set(caught))
    print(f"{'':28} missed: {', '.join(missed) or 'none'}; false: {false or 'none'}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    import reprokit._model.redact  # noqa: F401

    measure("reprokit regexes", ours)
    t0 = time.perf_counter()
    try:
        check, count = detect_secrets_checker()
    except ImportError:
        print("detect-secrets is not installed: pip install detect-secrets")
    else:
        print(f"detect-secrets: {count} plugins, import + set-up {time.perf_counter() - t0:.3f} s")
        measure("detect-secrets (all plugins)", check)
