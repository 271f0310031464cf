"""The export wizard: its window, its pages and the summary a clerk checks."""
