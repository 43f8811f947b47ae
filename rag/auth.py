"""Who may change the knowledge base: users with salted PBKDF2 password hashes, read from a file outside the repo.

`python -m rag.auth NAME` asks for a password and prints the line to add to the users file (`NAME:hash`).
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
import sys
from pathlib import Path

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
SALT_BYTES = 16


def hash_password(password: str, salt: str | None = None, iterations: int = ITERATIONS) -> str:
    """"pbkdf2_sha256$iterations$salt$hash" for a password (a fresh random salt unless given)."""
    salt = salt or secrets.token_hex(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"{ALGORITHM}${iterations}${salt}${digest}"


def verify(users: dict[str, str], name: str, password: str) -> bool:
    """Whether the name is a user and the password matches its hash (in constant time)."""
    stored = users.get(name)
    if stored is None or stored.count("$") != 3:
        return False
    algorithm, iterations, salt, _ = stored.split("$")
    if algorithm != ALGORITHM or not iterations.isdigit():
        return False
    return hmac.compare_digest(hash_password(password, salt, int(iterations)), stored)


def load_users(path: Path) -> dict[str, str]:
    """Users from a file of `name:hash` lines (blank lines and # comments skipped); ValueError for a malformed line."""
    users = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not stored.startswith(ALGORITHM + "$"):
            raise ValueError(f"{path}, line {number}: expected `name:{ALGORITHM}$…` (made by `python -m rag.auth NAME`)")
        users[name] = stored
    return users


def main(argv: list[str] | None = None) -> int:
    """Ask for a user's password twice and print their users-file line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or ":" in args[0]:
        print("usage: python -m rag.auth NAME   (then add the printed line to the users file)", file=sys.stderr)
        return 2
    password = getpass.getpass(f"Password for {args[0]}: ")
    if not password or password != getpass.getpass("Again: "):
        print("The passwords are empty or differ.", file=sys.stderr)
        return 1
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
