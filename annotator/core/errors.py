"""Errors a user can cause. The CLI prints their message as one line; pages show it with st.error."""


class AnnotatorError(Exception):
    """Base class: bad input or a state the user can fix. Never shown with a traceback."""

    exit_code = 1


class WorkspaceError(AnnotatorError):
    """The workspace is missing, incomplete or was made by a newer version."""


class InputError(AnnotatorError):
    """A path, file, option or value given by the user is unusable."""

    exit_code = 2


class QueueError(AnnotatorError):
    """A queue operation is not allowed (crop held by someone else, already labeled, ...)."""


class AuthError(AnnotatorError):
    """Unknown user, wrong password or missing role."""
