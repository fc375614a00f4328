"""Signing archives with SSH keys, in the format git uses: ``ssh-keygen -Y sign`` writes
``FILE.sig`` beside the archive; ``ssh-keygen -Y verify`` checks it against an allowed-signers
file (one ``principal key-type key`` a line, as for git's ``gpg.ssh.allowedSignersFile``)."""

from __future__ import annotations

import os
import shutil
import subprocess

from reprokit._model.errors import ReprokitError, TamperedError

NAMESPACE = "reprokit-archive"  # signatures made for one purpose never pass for another


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ReprokitError("ssh-keygen is not installed (needed to sign or check signatures)")
    return found


def sign_file(path: str, key: str) -> str:
    """Sign ``path`` with the SSH private key file ``key``; returns the signature's path
    (``path`` + ``.sig``)."""
    if not os.path.isfile(key):
        raise ReprokitError(f"no such key file: {key}")
    sig = path + ".sig"
    if os.path.exists(sig):
        os.unlink(sig)  # ssh-keygen will not overwrite an old signature
    proc = subprocess.run(
        [_ssh_keygen(), "-Y", "sign", "-q", "-f", key, "-n", NAMESPACE, path],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0 or not os.path.isfile(sig):
        last = (proc.stderr.strip().splitlines() or ["ssh-keygen failed"])[-1]
        raise ReprokitError(f"signing {path} with {key} failed: {last}")
    return sig


def verify_signature(path: str, allowed_signers: str) -> str:
    """The principal of ``allowed_signers`` whose key signed ``path`` (signature in
    ``path.sig``); TamperedError when there is no valid signature by an allowed signer."""
    if not os.path.isfile(allowed_signers):
        raise ReprokitError(f"no such allowed-signers file: {allowed_signers}")
    sig = path + ".sig"
    if not os.path.isfile(sig):
        raise TamperedError(f"{path} is not signed (no {os.path.basename(sig)} beside it)")
    tool = _ssh_keygen()
    found = subprocess.run(
        [tool, "-Y", "find-principals", "-s", sig, "-f", allowed_signers],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    principals = [p for p in found.stdout.split() if p] if found.returncode == 0 else []
    if not principals:
        raise TamperedError(f"{path}: the signature is not by anyone in {allowed_signers}")
    for principal in principals:
        with open(path, "rb") as fh:
            proc = subprocess.run(
                [tool, "-Y", "verify", "-f", allowed_signers, "-I", principal, "-n", NAMESPACE,
                 "-s", sig],
                stdin=fh,
                capture_output=True,
                text=True,
            )  # fmt: skip
        if proc.returncode == 0:
            return principal
    raise TamperedError(f"{path}: the signature does not match the archive (edited?)")
