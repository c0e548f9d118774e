"""competition: win image-classification contests, medical imaging first."""

__version__ = "0.1.0"
