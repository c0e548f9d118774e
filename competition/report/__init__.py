"""What the user reads: the leaderboard (`leaderboard` scores the runs, `tables` renders them), a run's PNG plots
and HTML page (`plots`), and the augmentation preview (`previews`)."""

from competition.report.leaderboard import leaderboard, leaderboard_for, standing
from competition.report.tables import FORMATS, render, show_leaderboard

__all__ = ["FORMATS", "leaderboard", "leaderboard_for", "render", "show_leaderboard", "standing"]
