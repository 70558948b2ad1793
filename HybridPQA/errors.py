"""The one exception type for bad user input (config keys, data files, flags).

The command line prints it as a single line `error: <message>` and exits with status 2,
so its message must name the file, line or key, and say what to do.
"""


class InputError(ValueError):
    """A problem with something the user gave us, not a bug in HybridPQA."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line, whatever it quotes
