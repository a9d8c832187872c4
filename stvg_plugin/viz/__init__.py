"""Looking without the App: tubes rendered onto videos, and plots of a scored run (no FiftyOne import)."""
