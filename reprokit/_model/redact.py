"""Keep secrets out of everything reprokit writes: names, values, URLs and argv forms."""

from __future__ import annotations

import re

from reprokit._model.memo import BoundedMemo

REDACTED = "<redacted>"

# Names of settings whose values are credentials. Matched case-insensitively on the whole name,
# so "AUTHOR" and "TOKENIZER_NAME" stay visible while "GITHUB_TOKEN" and "db_password" do not.
# camelCase names are split first ("dbPassword" -> "db_Password"); "password" and "passphrase"
# count anywhere in a name (PGPASSWORD, SMTPPASSWORD), the other words only as whole parts.
_SECRET_NAME_RE = (
    r"(^|[_\-.])("
    r"api[_\-]?key|apikey|token|access[_\-]?token|auth[_\-]?token|secret|client[_\-]?secret|"
    r"passw(or)?d|pwd|passphrase|credentials?|private[_\-]?key|access[_\-]?key|secret[_\-]?key|"
    r"session[_\-]?key|bearer|auth|cookie|signature|pass|pw|passwd"
    r")($|[_\-.])"
    r"|passw(or)?d|passphrase|apikey"
)
# "key" as the last part of a name (wandb.key, --wandb-key, TF_SERVING_KEY, key) is a credential,
# unless the name says what kind of key it is: sort_key, rng_key, primary_key...
_KEY_NAME_RE = r"(^|[_\-.])key$"
_NOT_KEY_NAME_RE = (
    r"(^|[_\-.])(sort|primary|foreign|join|group|partition|index|lookup|cache|dict|map|hash|"
    r"metric|monitor|target|label|input|output|feature|column|col|row|id|random|rng|prng|seed|"
    r"jax|batch|image|text|audio|video|data|sample|query|value|attention|attn|dim|shard|split|"
    r"layer|state|param|config|cfg|model|dataset|field|name|file|path|dir|sample)[_\-.]key$"
)
_CAMEL_RE = r"(?<=[a-z0-9])(?=[A-Z])"
# A tokenizer's special tokens are vocabulary, not credentials: pad_token, eos_token_id...
_NOT_SECRET_NAME_RE = r"(^|[_\-.])(pad|eos|bos|unk|sep|cls|mask)_token(_ids?)?$"

# Values that are credentials whatever they are called.
_SECRET_VALUE_RE = (
    r"(AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|gl(pat|dt|rt|ptt|ft|cbt|soat)-[A-Za-z0-9_\-]{20,}"  # GitLab
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|sk-(proj-|ant-)?[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic style
    r"|(sk|rk)_(live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|npm_[A-Za-z0-9]{36}|pypi-AgE[A-Za-z0-9_\-]{50,}"  # package registries
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)"
    r"|[a-z][a-z0-9+.\-]*://[^/\s:@]*:[^/\s@]+@"  # URL with user:password@
    r"|[a-z][a-z0-9+.\-]*://[A-Za-z0-9_\-.~%]{20,}@"  # URL whose user name is a token
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]{16,}=*"  # an Authorization header's token
    r"|(?i:\bauthorization\s*[:=]\s*)\S+"
    # "password=..." inside a longer value: libpq DSNs, flags strings, query strings
    r"|(?i:\b(password|passwd|passphrase|secret|token|api[_\-]?key|access[_\-]?key|"
    r"access_token|private_token|client_secret)\s*[=:]\s*)[^\s&;,'\"<]{4,}"
    # an error message quoting one: "password 'hunter2'", 'token "abc..."', "password is x"
    r"|(?i:\b(password|passwd|passphrase|secret|token|api[_ \-]?key)\s+(is\s+)?)"
    r"('[^'\n]{3,}'|\"[^\"\n]{3,}\"|(?<=is )\S{4,})"
)

_URL_USERINFO_RE = r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@]+@"
# One query parameter of a URL: ``?access_token=...`` and ``&X-Amz-Signature=...`` are credentials.
_URL_QUERY_RE = r"(?P<sep>[?&;])(?P<key>[^=&#;\s]+)=(?P<value>[^&#;\s]*)"
# What an option or a setting's name looks like on a command line: --api-key, -p, DB_PASSWORD.
_OPTION_RE = r"-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*\Z"
_compiled: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    # Compiled on first use: importing reprokit must stay cheap.
    pat = _compiled.get(name)
    if pat is None:
        source = {
            "name": _SECRET_NAME_RE,
            "value": _SECRET_VALUE_RE,
            "url": _URL_USERINFO_RE,
            "camel": _CAMEL_RE,
            "not_name": _NOT_SECRET_NAME_RE,
            "option": _OPTION_RE,
            "query": _URL_QUERY_RE,
            "key": _KEY_NAME_RE,
            "not_key": _NOT_KEY_NAME_RE,
        }[name]
        flags = re.IGNORECASE if name in ("name", "not_name", "key", "not_key") else 0
        pat = _compiled[name] = re.compile(source, flags)
    return pat


# Substrings without which neither regex can match: checking them first spares most processes
# the milliseconds it takes to compile the big patterns (capture runs inside users' programs).
_NAME_HINTS = ("key", "token", "secret", "pass", "pwd", "pw", "credential", "auth", "bearer",
               "cookie", "signature")  # fmt: skip
_VALUE_HINTS_CASED = ("AKIA", "ASIA", "gh", "github_pat_", "gl", "xox", "xapp-", "sk-", "sk_",
                      "rk_", "hf_", "npm_", "pypi-", "AIza", "eyJ", "-----BEGIN")  # fmt: skip
_VALUE_HINTS_LOWER = ("bearer", "authorization", "passw", "passphrase", "secret", "token", "api",
                      "access", "client_secret")  # fmt: skip


def is_secret_name(name: str) -> bool:
    """True when a setting called ``name`` probably holds a credential."""
    return _SECRET_NAMES[name]  # the same names recur on every run


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if not any(h in lowered for h in _NAME_HINTS):
        return False
    name = _re("camel").sub("_", name.replace(" ", "_"))
    if _re("key").search(name) and not _re("not_key").search(name):
        return True
    return bool(_re("name").search(name)) and not _re("not_name").search(name)


_SECRET_NAMES = BoundedMemo(_is_secret_name)


def is_secret_value(value: object) -> bool:
    """True when ``value`` looks like a credential, whatever it is called."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str) or len(value) < 8:
        return False
    url_userinfo = "://" in value and "@" in value
    if not url_userinfo and not any(h in value for h in _VALUE_HINTS_CASED):
        lowered = value.lower()
        if not any(h in lowered for h in _VALUE_HINTS_LOWER):
            # a URL's secret query parameter (?sig=...) under a name the regex does not know
            return "://" in value and "=" in value and strip_url_credentials(value) != value
    return bool(_re("value").search(value))


def strip_url_credentials(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``, and secret query parameters
    (``?access_token=...``, ``&X-Amz-Signature=...``) -> ``<redacted>``; other text is returned
    unchanged."""
    url = _re("url").sub(r"\g<scheme>", url)
    if "://" in url and "=" in url:

        def hide(m: re.Match[str]) -> str:
            key, value = m.group("key"), m.group("value")
            if value and (is_secret_name(key) or is_secret_value(value)):
                return f"{m.group('sep')}{key}={REDACTED}"
            return m.group(0)

        url = _re("query").sub(hide, url)
    return url


def redact_text(text: str) -> str:
    """Free text (an error message, a traceback) with URL credentials and every credential-looking
    value replaced by ``<redacted>``."""
    if not isinstance(text, str) or not text:
        return text
    return _re("value").sub(REDACTED, strip_url_credentials(text))


def redact_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Return argv with credential values replaced, and the names of what was redacted.

    Handles ``--api-key=V``, ``--token V``, ``--db-pass V``, ``--key V``, ``password=V``,
    ``-p V`` (unless a number, ``host:port`` or ``no:plugin``), ``-u user:password``, URLs with
    userinfo and values that look like credentials on their own.
    """
    out: list[str] = []
    redacted: list[str] = []
    hide_next: str | None = None
    p_next = user_next = False
    for arg in argv:
        if hide_next is not None:
            out.append(REDACTED)
            redacted.append(hide_next)
            hide_next = None
            continue
        # Only what looks like an option or a setting's name is treated as one: a PEM block
        # ("-----BEGIN ...") or a URL before "=" is a value, and its text is never a "name".
        if user_next:  # curl -u user:password
            user_next = False
            if ":" in arg and "://" not in arg:
                out.append(arg.split(":", 1)[0] + ":" + REDACTED)
                redacted.append(f"argv[{len(out) - 1}] password")
                continue
        if arg.startswith("-") and "=" not in arg and _re("option").match(arg):
            name = arg.lstrip("-")
            if is_secret_value(arg):
                out.append(REDACTED)
                redacted.append(f"argv[{len(out) - 1}]")
                continue
            if name and is_secret_name(name):
                hide_next = name
            elif arg == "-p":
                p_next = True
            elif arg in ("-u", "--user"):
                user_next = True
            out.append(arg)
            continue
        if p_next:
            # "-p" is a password for mysql, sshpass and many scripts, a port or a plugin for
            # others: a number, "host:port" and "no:plugin" stay, anything else is hidden.
            p_next = False
            if not (arg.isdigit() or ":" in arg or arg.startswith("-")):
                out.append(REDACTED)
                redacted.append("p")
                continue
        if "=" in arg:
            key, _, value = arg.partition("=")
            if value and _re("option").match(key) and is_secret_name(key.lstrip("-")):
                out.append(f"{key}={REDACTED}")
                redacted.append(key.lstrip("-"))
                continue
        cleaned = strip_url_credentials(arg)
        if is_secret_value(cleaned):
            out.append(REDACTED)
            redacted.append(f"argv[{len(out) - 1}]")
            continue
        if cleaned != arg:
            redacted.append(f"argv[{len(out)}] userinfo")
        out.append(cleaned)
    return out, redacted


# Files that hold credentials by their name alone: an input like this is listed by path, never
# hashed into a manifest (a digest of a short secret can be brute-forced) nor archived.
_SECRET_FILE_NAMES = {".env", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc", "credentials",
                      ".git-credentials", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519",
                      "secrets.yaml", "secrets.yml", "secrets.json", "secrets.toml"}  # fmt: skip
_SECRET_FILE_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".keystore", ".jks", ".kdbx")


def is_secret_file(path: str) -> bool:
    """True when the file at ``path`` holds credentials by its name (``.env``, ``*.pem``, ...)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if name in _SECRET_FILE_NAMES or name.startswith(".env."):
        return True
    if name.endswith(_SECRET_FILE_SUFFIXES):
        return True
    return "/.ssh/" in path or "/.aws/" in path or "/.gnupg/" in path
