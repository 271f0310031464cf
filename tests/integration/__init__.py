"""Independent adversarial end-to-end tests: the product is driven only through its public surface
(``python -m app ...``, ``app.cli.main``, ``app.core.medium.reader.open_medium``), on media built here."""
