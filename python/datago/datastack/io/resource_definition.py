"""What to retrieve: an identifier in storage, a source URL (or path) and its checksum."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResourceDefinition:
    """One file of a dataset to retrieve.

    Attributes:
        identifier: where to store it (a '/'-separated path in the storage).
        source: an http(s) URL (:class:`HTTPRetriever`) or a local path (file retriever).
        md5_sum: the expected MD5 of the bytes, hex (a download that differs is refused).
    """

    identifier: str
    source: str
    md5_sum: str
