"""Keep secrets out of everything reprokit writes: names, values, URLs and argv forms."""

from __future__ import annotations

import re

REDACTED = "<redacted>"

# Names of settings whose values are credentials. Matched case-insensitively on the whole name,
# so "AUTHOR" and "TOKENIZER_NAME" stay visible while "GITHUB_TOKEN" and "db_password" do not.
_SECRET_NAME_RE = (
    r"(^|[_\-.])("
    r"api[_\-]?key|apikey|token|access[_\-]?token|auth[_\-]?token|secret|client[_\-]?secret|"
    r"passw(or)?d|pwd|passphrase|credentials?|private[_\-]?key|access[_\-]?key|secret[_\-]?key|"
    r"session[_\-]?key|bearer|auth|cookie|signature"
    r")($|[_\-.])"
)

# Values that are credentials whatever they are called.
_SECRET_VALUE_RE = (
    r"(AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|sk-(proj-|ant-)?[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic style
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|[a-z][a-z0-9+.\-]*://[^/\s:@]*:[^/\s@]+@"  # URL with user:password@
)

_URL_USERINFO_RE = r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@]+@"
_compiled: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    # Compiled on first use: importing reprokit must stay cheap.
    pat = _compiled.get(name)
    if pat is None:
        source = {
            "name": _SECRET_NAME_RE,
            "value": _SECRET_VALUE_RE,
            "url": _URL_USERINFO_RE,
        }[name]
        pat = _compiled[name] = re.compile(source, re.IGNORECASE if name == "name" else 0)
    return pat


def is_secret_name(name: str) -> bool:
    """True when a setting called ``name`` probably holds a credential."""
    return bool(_re("name").search(name.replace(" ", "_")))


def is_secret_value(value: object) -> bool:
    """True when ``value`` looks like a credential, whatever it is called."""
    return isinstance(value, str) and bool(_re("value").search(value))


def strip_url_credentials(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``; other text is returned unchanged."""
    return _re("url").sub(r"\g<scheme>", url)


def redact_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Return argv with credential values replaced, and the names of what was redacted.

    Handles ``--api-key=V``, ``--token V``, ``password=V``, URLs with userinfo and values that
    look like credentials on their own.
    """
    out: list[str] = []
    redacted: list[str] = []
    hide_next: str | None = None
    for arg in argv:
        if hide_next is not None:
            out.append(REDACTED)
            redacted.append(hide_next)
            hide_next = None
            continue
        if arg.startswith("-") and "=" not in arg:
            name = arg.lstrip("-")
            if name and is_secret_name(name):
                hide_next = name
            out.append(arg)
            continue
        if "=" in arg:
            key, _, value = arg.partition("=")
            if is_secret_name(key.lstrip("-")) and value:
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
