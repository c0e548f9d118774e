"""One exception type for everything the user can fix; the CLI prints it as one line."""


class CompetitionError(Exception):
    """A problem with the user's input (recipe, data, paths); printed without a traceback."""
