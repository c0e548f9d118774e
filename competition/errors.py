"""One exception type for everything the user can fix; the CLI prints it as one line."""


class CompetitionError(Exception):
    """A problem with the user's input (recipe, data, paths); printed without a traceback."""


class OptionError(CompetitionError):
    """A bad argument of a library function, named by its parameter (`executor`, `name`, `data_root`, ...);
    the command line names its flag instead (competition.cli.FLAGS)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option, self.message = option, message
