"""User-facing errors: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix (bad path, unknown name, malformed file).

    The message must say what is wrong and what to do about it.
    """


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so user errors and Ctrl-C end in one line, not a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        except BrokenPipeError:  # output piped into `head`: not an error
            sys.stderr.close()
            return 0
        except KeyboardInterrupt:
            print("interrupted: finished work was kept; re-run with --resume to continue",
                  file=sys.stderr)
            return EXIT_INTERRUPTED

    return wrapper
