"""The project's own exceptions. Anything a user can cause ends up as one of these."""

from __future__ import annotations


class DiscBridgeError(Exception):
    """Base class: a failure with a message fit to show a user (it names the file)."""


class UnreadableMedium(DiscBridgeError):
    """Nothing readable at the given path (it does not exist, or holds no DICOM data)."""


class UnsafePath(DiscBridgeError):
    """A path on the medium points outside the medium root (absolute, ``..``, symlink, drive, UNC)."""


class ExportError(DiscBridgeError):
    """An export could not be planned, written or verified. The destination was left as it was."""


class DicomdirUnreadable(DiscBridgeError):
    """A DICOMDIR could not be parsed at all (the reader then falls back to scanning)."""


class NotDicom(DiscBridgeError):
    """A file is not a DICOM file (no DICM prefix and no plausible dataset start)."""


class TruncatedFile(DiscBridgeError):
    """A DICOM file ends before its header does."""


class BadIcon(DiscBridgeError):
    """An Icon Image Sequence item that cannot be decoded."""


class RenderError(DiscBridgeError):
    """A frame that cannot be rendered (unsupported encoding, corrupt pixel data)."""
