"""The one exception type for mistakes in what a user gave gdlab.

Its message must say what was wrong (with the value), where (file, key,
argument) and what to do about it. The CLI prints such errors as one clean
message and exits 2 instead of showing a traceback.
"""


class GdlabError(Exception):
    """A problem with the user's input, data or files, explained in its message."""


class StudyStopped(GdlabError):
    """A backend stopped a study partway (its Ray cluster went away); the runs saved so far stay saved.

    ``reason`` says why; the message adds the generic way on, which the study
    runner replaces with the folder and the command that continue the study.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(
            f"the study stopped: {reason}; the runs finished so far are saved: run the same command again "
            f"with --resume (add --backend sequential to train the rest on this machine)"
        )
