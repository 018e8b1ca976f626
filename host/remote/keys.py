"""CURVE key pairs for remote workers: create, load, and allow-lists of public keys.

Files are pyzmq's certificate format (:func:`zmq.auth.create_certificates`): ``NAME.key`` holds the public
key (share it), ``NAME.key_secret`` holds both (keep it; written mode 0600). Keys are Z85 text, 40
characters. An allow-list is a directory of ``*.key`` files or a list of Z85 strings in the config; a
secret-key file that others may read is refused (like ssh refuses such a private key).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from ..errors import HostError

__all__ = ["KeyFileError", "KeyPair", "allow_list", "default_key_dir", "load_keypair", "load_public", "new_keypair",
           "parse_public"]


class KeyFileError(HostError):
    """A key file that is missing, malformed, or not private enough."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE key pair (Z85 bytes); ``secret`` is ``None`` for a public key alone."""

    public: bytes
    secret: bytes | None = None


def default_key_dir() -> Path:
    """``$XDG_CONFIG_HOME/kithost/keys`` (``~/.config/kithost/keys``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "kithost" / "keys"


def parse_public(text: str, source: str) -> bytes:
    """A Z85 public key given as text; raises :class:`KeyFileError` saying what is wrong."""
    key = text.strip().encode()
    if len(key) != 40:
        raise KeyFileError(f"{source}: a CURVE public key is 40 Z85 characters, got {len(key)}")
    try:
        z85.decode(key)
    except (ValueError, KeyError):
        raise KeyFileError(f"{source}: not a Z85-encoded key") from None
    return key


def new_keypair(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (0600) in ``directory``; returns both paths."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"bad key name {name!r}: a plain file name, e.g. 'worker1'")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise KeyFileError(f"{secret} already exists (use --force to replace it: peers that trust the old key "
                        "must then be given the new public key)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def load_public(path: Path) -> bytes:
    """The public key of a ``.key`` (or ``.key_secret``) file."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a CURVE key file ({exc})") from None
    if public is None:
        raise KeyFileError(f"{path}: holds no public key")
    return public


def load_keypair(path: Path) -> KeyPair:
    """Both keys of a ``.key_secret`` file; refused when others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file (create one with `kithost keys new`)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: secret key readable by others (mode {stat.S_IMODE(mode):o}); "
                        f"chmod 600 {path}")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a CURVE key file ({exc})") from None
    if public is None or secret is None:
        raise KeyFileError(f"{path}: holds no secret key (the .key_secret file is the one to give)")
    return KeyPair(public, secret)


def allow_list(entries: list[str] | tuple[str, ...], base: Path | None = None) -> frozenset[bytes]:
    """Public keys from ``entries``: Z85 strings, ``.key`` files, or directories of ``.key`` files."""
    keys: set[bytes] = set()
    for entry in entries:
        path = Path(entry).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if len(entry.strip()) == 40 and not path.exists():
            keys.add(parse_public(entry, "allow-list entry"))
        elif path.is_dir():
            keys.update(load_public(p) for p in sorted(path.glob("*.key")))
        elif path.exists():
            keys.add(load_public(path))
        else:
            raise KeyFileError(f"allow-list entry {entry!r}: neither a 40-character Z85 key nor a key file or folder")
    return frozenset(keys)
