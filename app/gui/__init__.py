"""The PySide6 desktop application. The only package that imports Qt (core logic stays in app.core)."""

from PySide6.QtCore import QCoreApplication


def ntr(context: str, text: str, n: int) -> str:
    """Translate a counted phrase (``"%n image(s)"``) with Qt's plural forms.

    Without a translation for the current language the English source is shown, so its
    ``(s)``/``(ies)`` markers are resolved here: ``1 image``, ``2 images``, ``1 study``.
    """
    s = QCoreApplication.translate(context, text, None, n)
    if "(" in s:
        s = s.replace("y(ies)", "y" if n == 1 else "ies").replace("(s)", "" if n == 1 else "s")
    return s
