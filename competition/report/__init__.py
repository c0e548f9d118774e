"""What the user reads: the leaderboard (`leaderboard`), a run's PNG plots and HTML page (`plots`), and the
augmentation preview (`previews`)."""

from competition.report.leaderboard import FORMATS, leaderboard, leaderboard_for, render, show_leaderboard, standing

__all__ = ["FORMATS", "leaderboard", "leaderboard_for", "render", "show_leaderboard", "standing"]
