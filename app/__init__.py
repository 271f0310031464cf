"""DiscBridge: read any DICOM interchange medium, write media every other system can read."""

__version__ = "0.1.0"
APP_NAME = "DiscBridge"
# Implementation Class UID written into File Meta of files we (re)encode (PS3.10 §7.1).
# A UUID-derived root (PS3.5 §B.2, "2.25." + the UUID as an integer); version name ≤ 16 chars.
IMPLEMENTATION_CLASS_UID = "2.25.302846113915786346186935893154618240761"
IMPLEMENTATION_VERSION_NAME = f"DISCBRIDGE_{__version__.replace('.', '')}"[:16]
