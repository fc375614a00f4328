"""The one home of the secret-file policy: which files are never captured, and why.

A file is a secret file when its path matches one of ``SECRET_FILES`` (shell patterns matched on
the file name, or on the whole path when the pattern holds a ``/``) or a pattern the user added
in a ``.reprokitignore`` file at the repository root (one pattern a line, ``#`` comments, same
matching). Such files never enter a snapshot tree, a portable patch, a stored object or an
archive; the manifest lists each under ``code.excluded`` with the reason.

Values (tokens inside params, argv, URLs, text) are the business of ``redact.py``.
"""

from __future__ import annotations

import fnmatch
import os

POLICY_FILE = ".reprokitignore"

# (pattern, reason). A pattern without "/" matches the file name anywhere in the tree.
SECRET_FILES: tuple[tuple[str, str], ...] = (
    (".env", "environment file (credentials)"),
    (".env.*", "environment file (credentials)"),
    ("*.env", "environment file (credentials)"),
    (".envrc", "direnv file (credentials)"),
    ("*.pem", "PEM key or certificate"),
    ("*.key", "private key"),
    ("*.p12", "PKCS#12 key store"),
    ("*.pfx", "PKCS#12 key store"),
    ("*.jks", "Java key store"),
    ("*.keystore", "key store"),
    ("id_rsa*", "SSH private key"),
    ("id_dsa*", "SSH private key"),
    ("id_ecdsa*", "SSH private key"),
    ("id_ed25519*", "SSH private key"),
    (".netrc", "netrc (login credentials)"),
    ("_netrc", "netrc (login credentials)"),
    (".pypirc", "PyPI credentials"),
    (".npmrc", "npm credentials"),
    (".git-credentials", "git credential store"),
    (".pgpass", "PostgreSQL password file"),
    (".my.cnf", "MySQL credentials"),
    ("*/.aws/credentials", "AWS credentials"),
    (".aws/credentials", "AWS credentials"),
    ("credentials.json", "cloud credentials"),
    ("application_default_credentials.json", "Google Cloud credentials"),
    ("service-account*.json", "cloud service account key"),
    ("*-sa-key.json", "cloud service account key"),
    ("*/.azure/*", "Azure credentials"),
    (".azure/*", "Azure credentials"),
    ("*/.config/gcloud/*", "Google Cloud credentials"),
    (".config/gcloud/*", "Google Cloud credentials"),
    ("*/.docker/config.json", "Docker registry credentials"),
    (".docker/config.json", "Docker registry credentials"),
    ("kubeconfig", "Kubernetes credentials"),
    ("*.kubeconfig", "Kubernetes credentials"),
    ("kubeconfig.y*ml", "Kubernetes credentials"),
    ("*/.kube/config", "Kubernetes credentials"),
    (".kube/config", "Kubernetes credentials"),
    ("*.tfvars", "Terraform variables (credentials)"),
    ("secrets.y*ml", "secrets file"),
    ("secrets.json", "secrets file"),
    ("*.secret", "secrets file"),
    (".htpasswd", "password file"),
)


class SecretFiles:
    """The secret-file policy of one tree: built-in patterns plus the tree's ``.reprokitignore``."""

    __slots__ = ("patterns", "_names", "_paths")

    def __init__(self, extra: list[str] | tuple[str, ...] = ()) -> None:
        import re

        user = tuple((p, f"listed in {POLICY_FILE}") for p in extra)
        self.patterns: tuple[tuple[str, str], ...] = SECRET_FILES + user
        # One regex for all name patterns, one for all path patterns: a repository with 10,000
        # untracked files is checked in milliseconds. The reason is looked up only on a match.
        names = [p.rstrip("/") for p, _ in self.patterns if "/" not in p.rstrip("/")]
        paths = [p.rstrip("/") for p, _ in self.patterns if "/" in p.rstrip("/")]
        self._names = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in names) or "$^")
        self._paths = re.compile(
            "|".join(f"(?:{fnmatch.translate(q)})" for p in paths for q in (p, p + "/*")) or "$^"
        )

    @classmethod
    def for_tree(cls, root: str | os.PathLike[str] | None) -> SecretFiles:
        """The policy for the tree at ``root``: its ``.reprokitignore`` patterns added; never
        raises (an unreadable policy file adds nothing)."""
        if root is None:
            return cls()
        try:
            with open(os.path.join(root, POLICY_FILE), encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return cls()
        extra = [s.strip().lstrip("/") for s in lines if s.strip() and not s.startswith("#")]
        return cls([p for p in extra if p])

    def reason(self, rel: str) -> str | None:
        """Why ``rel`` (a ``/``-separated path relative to the tree root) is a secret file, or
        None when it may be captured."""
        rel = rel.replace(os.sep, "/").lstrip("/")
        parts = rel.split("/")
        if not (self._paths.match(rel) or any(self._names.match(part) for part in parts)):
            return None
        for pattern, why in self.patterns:
            pattern = pattern.rstrip("/")
            if "/" in pattern:
                hit = fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, pattern + "/*")
            else:  # a name: the file's, or a folder's on the way to it
                hit = any(fnmatch.fnmatchcase(part, pattern) for part in parts)
            if hit:
                return f"secret file: {why}"
        return None  # pragma: no cover - the combined regexes matched, so one pattern does

    def split(self, paths: list[str]) -> tuple[list[str], list[dict[str, str]]]:
        """``paths`` split into those that may be captured and ``{"path", "reason"}`` for each
        excluded one."""
        kept: list[str] = []
        excluded: list[dict[str, str]] = []
        for rel in paths:
            why = self.reason(rel)
            if why is None:
                kept.append(rel)
            else:
                excluded.append({"path": rel, "reason": why})
        return kept, excluded
