"""The one exception type for mistakes in what a user gave gdlab.

Its message must say what was wrong (with the value), where (file, key,
argument) and what to do about it. The CLI prints such errors as one clean
message and exits 2 instead of showing a traceback.
"""


class GdlabError(Exception):
    """A problem with the user's input, data or files, explained in its message."""
