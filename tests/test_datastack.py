"""datago.datastack: DataStack's API (storage, retrievers, factories, iterators, views, splits,
combinations) over datago datasets decoded map-style by the Go core."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from datago.datastack import (
    CombinedDatasetIterator,
    DatagoDatasetIterator,
    DatasetFileCorruptError,
    DatasetIteratorView,
    FileStorageConnector,
    HTTPRetriever,
    ImageFolderFactory,
    MaliciousFilePathError,
    ResourceDefinition,
    ResourceNotFoundError,
    RetrieverFactory,
    SplitterFactory,
    StreamedResource,
)
from photos_util import file_config

CLASSES = ("bird", "flower", "sea")


def _photos_tar(photos: list[Path]) -> bytes:
    """``train/<class>/<copy>_<photo>`` (3 copies of every photo: 36) and ``test/<class>/<photo>``
    (12): the class of photo i is CLASSES[i % 3]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i, p in enumerate(photos):
            cls = CLASSES[i % 3]
            for c in range(3):
                tf.add(p, arcname=f"train/{cls}/{c}_{p.name}")
            tf.add(p, arcname=f"test/{cls}/{p.name}")
    return buf.getvalue()


class _Server:
    """Serves files from a dict on 127.0.0.1 (a thread); counts GETs; ``corrupt[path] = n`` serves
    n corrupted copies of that file first."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.gets, self.corrupt = files, Counter(), Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.gets[self.path] += 1
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if server.corrupt[self.path] > 0:
                    server.corrupt[self.path] -= 1
                    data = data[:1000] + bytes(b ^ 0xFF for b in data[1000:1100]) + data[1100:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def photos_tar(photos: list[Path]) -> bytes:
    return _photos_tar(photos)


@pytest.fixture
def server(photos_tar: bytes) -> Iterator[_Server]:
    s = _Server({"/photos.tar": photos_tar})
    yield s
    s.close()


IMAGE_CONFIG = {"crop_and_resize": True, "default_image_size": 128, "downsampling_ratio": 16}


def _factory(storage: FileStorageConnector, server: _Server, photos_tar: bytes) -> ImageFolderFactory:
    resource = ResourceDefinition(
        identifier="photos/raw/photos.tar",
        source=server.url("/photos.tar"),
        md5_sum=hashlib.md5(photos_tar).hexdigest(),
    )
    return ImageFolderFactory(storage, name="photos", resource=resource, image_config=IMAGE_CONFIG)


def test_readme_example_with_photos_runs_as_written(
    tmp_path: Path, server: _Server, photos_tar: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    # DataStack's README, with the photos served over HTTP in place of MNIST
    dataset_path = str(tmp_path / "datasets")  # specify dataset path
    storage_connector = FileStorageConnector(root_path=dataset_path)

    photos_factory = _factory(storage_connector, server, photos_tar)
    photos_iterator, _ = photos_factory.get_dataset_iterator(config={"split": "train"})

    img, target, tag = photos_iterator[0]
    print(f"Sample has target {target} and tag {tag} and has a shape of {img.shape}")

    assert "Sample has target 0 and tag bird/0_Aqua.jpg" in capsys.readouterr().out
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert len(photos_iterator) == 36 and photos_iterator.classes == list(CLASSES)
    stored = sorted(p.relative_to(dataset_path).as_posix() for p in Path(dataset_path).rglob("*") if p.is_file())
    assert "photos/raw/photos.tar" in stored
    assert "photos/preprocessed/train/bird/0_Aqua.jpg" in stored
    assert "photos/preprocessed/test/sea/Dune.jpg" in stored

    # views, splits, combination
    view = DatasetIteratorView(photos_iterator, indices=[5, 1, 30])
    assert [t for _, _, t in view] == [photos_iterator.tags[i] for i in (5, 1, 30)]
    train, val = SplitterFactory.get_random_splitter(ratios=[0.8, 0.2], seed=0).split(photos_iterator)
    assert (len(train), len(val)) == (29, 7)
    test_iterator, _ = photos_factory.get_dataset_iterator(config={"split": "test"})
    combined = CombinedDatasetIterator([val, test_iterator])
    assert len(combined) == 7 + 12
    img_c, target_c, tag_c = combined[7]
    np.testing.assert_array_equal(img_c, test_iterator[0][0])
    assert (target_c, tag_c) == (test_iterator[0][1], test_iterator[0][2]) == (0, "bird/Aqua.jpg")
    items = combined.get_items([18, 0, 8])  # one parallel decode per underlying iterator
    assert [t for _, _, t in items] == [combined[18][2], combined[0][2], combined[8][2]]

    # the second time, the factory reads from the storage: no download
    assert server.gets["/photos.tar"] == 1
    again, _ = _factory(FileStorageConnector(dataset_path), server, photos_tar).get_dataset_iterator({"split": "train"})
    assert server.gets["/photos.tar"] == 1 and again.tags == photos_iterator.tags
    with pytest.raises(ResourceNotFoundError, match=r"'val'.*splits: \['test', 'train'\]"):
        photos_factory.get_dataset_iterator(config={"split": "val"})


def test_random_split_is_seeded_disjoint_and_complete(photo_dir: Path) -> None:
    it = DatagoDatasetIterator(file_config(photo_dir))
    splitter = SplitterFactory.get_random_splitter(ratios=[0.5, 0.25, 0.25], seed=42)
    first = splitter.get_indices(it)
    assert splitter.get_indices(it) == first  # same splitter, same split
    assert SplitterFactory.get_random_splitter(ratios=[0.5, 0.25, 0.25], seed=42).get_indices(it) == first
    assert SplitterFactory.get_random_splitter(ratios=[0.5, 0.25, 0.25], seed=43).get_indices(it) != first
    assert [len(s) for s in first] == [6, 3, 3]
    flat = [i for s in first for i in s]
    assert sorted(flat) == list(range(len(it)))  # disjoint and complete
    views = splitter.split(it)
    assert [v.indices for v in views] == first
    for v in views:
        assert [tag for _, _, tag in v] == [it.tags[i] for i in v.indices]
    with pytest.raises(ValueError, match="ratios"):
        SplitterFactory.get_random_splitter(ratios=[-1, 2], seed=0)


def test_stratified_split_keeps_class_proportions(tmp_path: Path, photos: list[Path]) -> None:
    # 3 classes of 30, 15 and 6 images (symlinks to the photos): proportions 30:15:6
    root = tmp_path / "strat"
    k = 0
    for cls, n in (("a", 30), ("b", 15), ("c", 6)):
        (root / cls).mkdir(parents=True)
        for j in range(n):
            p = photos[k % len(photos)]
            (root / cls / f"{j:02d}{p.suffix}").symlink_to(p)
            k += 1
    it = DatagoDatasetIterator(file_config(root))
    assert Counter(it.targets) == {0: 30, 1: 15, 2: 6}
    splitter = SplitterFactory.get_stratified_splitter(ratios=[2 / 3, 1 / 3], seed=7)
    first, second = splitter.split(it)
    assert Counter(first.targets) == {0: 20, 1: 10, 2: 4}
    assert Counter(second.targets) == {0: 10, 1: 5, 2: 2}
    assert sorted(first.indices + second.indices) == list(range(len(it)))
    assert splitter.get_indices(it) == [first.indices, second.indices]
    # the targets come from the listing; reading them through the samples agrees
    assert [t for _, t, _ in first.get_items(range(len(first)))] == first.targets


def test_retriever_downloads_once_and_refuses_a_corrupt_download(
    tmp_path: Path, server: _Server, photos_tar: bytes
) -> None:
    storage = FileStorageConnector(tmp_path / "store")
    md5 = hashlib.md5(photos_tar).hexdigest()
    job = ResourceDefinition(identifier="photos/raw/photos.tar", source=server.url("/photos.tar"), md5_sum=md5)

    server.corrupt["/photos.tar"] = 1  # the first download is corrupt: refused, fetched again
    retriever = HTTPRetriever(storage)
    assert retriever.retrieve([job]) == ["photos/raw/photos.tar"]
    assert server.gets["/photos.tar"] == 2 and retriever.downloads == 2
    with storage.get_resource("photos/raw/photos.tar") as resource:
        assert b"".join(resource) == photos_tar

    # stored and valid: read from the storage, not downloaded
    assert RetrieverFactory.get_http_retriever(storage).retrieve([job]) == ["photos/raw/photos.tar"]
    assert server.gets["/photos.tar"] == 2

    # every attempt corrupt: refused, nothing stored
    other = ResourceDefinition(identifier="other/photos.tar", source=server.url("/photos.tar"), md5_sum=md5)
    server.corrupt["/photos.tar"] = 3
    with pytest.raises(DatasetFileCorruptError, match=r"photos\.tar: md5 .* after 3 downloads, expected " + md5):
        HTTPRetriever(storage, max_attempts=3).retrieve([other])
    assert not storage.has_resource("other/photos.tar")

    # a stored copy that was corrupted on disk is fetched again
    Path(storage.get_path("photos/raw/photos.tar")).write_bytes(b"garbage")
    server.corrupt["/photos.tar"] = 0
    HTTPRetriever(storage).retrieve([job])
    assert server.gets["/photos.tar"] == 6
    assert hashlib.md5(Path(storage.get_path("photos/raw/photos.tar")).read_bytes()).hexdigest() == md5


def test_storage_connector_and_a_zip_archive(tmp_path: Path, photos: list[Path]) -> None:
    storage = FileStorageConnector(tmp_path / "store")
    storage.set_resource("a/b.bin", StreamedResource("a/b.bin", io.BytesIO(b"x" * 3_000_000)))
    assert storage.has_resource("a/b.bin") and not storage.has_resource("a/c.bin")
    with storage.get_resource("a/b.bin") as r:
        assert r.identifier == "a/b.bin" and r.read(3) == b"xxx"
    with pytest.raises(ResourceNotFoundError, match=r"a/c\.bin"):
        storage.get_resource("a/c.bin")
    with pytest.raises(MaliciousFilePathError):
        storage.set_resource("../escape", StreamedResource("x", io.BytesIO(b"")))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, p in enumerate(photos[:4]):
            zf.write(p, f"train/{CLASSES[i % 2]}/{p.name}")
    data = buf.getvalue()
    s = _Server({"/photos.zip": data})
    try:
        job = ResourceDefinition("zipped/raw/photos.zip", s.url("/photos.zip"), hashlib.md5(data).hexdigest())
        it, meta = ImageFolderFactory(storage, "zipped", job, image_config=IMAGE_CONFIG).get_dataset_iterator()
        assert len(it) == 4 and it.targets == [0, 0, 1, 1] and meta.target_pos == 1
    finally:
        s.close()
