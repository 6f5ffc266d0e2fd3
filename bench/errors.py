"""User-facing errors: the CLI prints them on one line and exits with status 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown name, wrong type, unwritable path, bad file, ...).

    `message` names the problem; `hint` says how to fix it. The CLI prints
    `error: <message> (<hint>)` and exits with code 2, having written nothing partial.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
