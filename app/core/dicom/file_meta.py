"""The File Meta Information (group 0002, PS3.10 §7.1) DiscBridge gives files it (re)encodes."""

from __future__ import annotations

from pydicom.dataset import FileMetaDataset

from app import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME


def our_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str,
                  source_ae: str | None = None) -> FileMetaDataset:
    """A complete group 0002 with our Implementation Class UID and Version Name."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    return meta
