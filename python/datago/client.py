"""DatagoClient: the Python face of the Go pipeline."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import _lib, _logs
from ._s3env import with_aws_env
from .batch import Batch
from .errors import ClosedError, SampleTimeoutError
from .sample import Sample

# get_sample waits in slices of this many seconds so that Ctrl-C reaches Python promptly.
_WAIT_SLICE_S = 0.25


class DatagoClient:
    """Streams samples from a source through the Go core.

    Args:
        config: datago's client config, as a dict or a JSON string. Keys datago accepts are
            accepted unchanged (``source_type``, ``source_config``, ``image_config``, ``limit``,
            ``rank``, ``world_size``, ``samples_buffer_size``, ...); see the README.
            ``image_config.fail_on`` (``"warning"`` default, ``"error"``, ``"none"``) decides which
            damage in an image's data skips it (counted as ``corrupt_data``), the same with or
            without crop.

    Raises:
        ConfigError: (a ValueError) an unknown key (named in the message) or an invalid value
            (e.g. ``image_config.fail_on`` other than warning/error/none, named too).
        NotFoundError: (a FileNotFoundError) ``source_config.root_path`` does not exist (a local
            folder, or an ``s3://`` bucket).
        DatagoPermissionError: (a PermissionError) a bucket refuses the credentials.
        DatagoOSError: (an OSError) a bucket in another region, an unreachable endpoint.
        ForkError: the library was loaded by a parent process before fork().

    Every exception is a :class:`datago.DatagoError`. Warnings of the core (e.g. a skipped corrupt
    image, with its path) go to the ``datago`` logger.

    The client is iterable (yields :class:`Sample` — or :class:`~datago.Batch` with
    ``batch_size`` — until the end of the stream) and a context manager (stops and frees on exit).
    With a ``seed`` the delivery order is a function of (seed, epoch, rank, world_size) only;
    ``state_dict`` / ``load_state_dict`` resume an epoch exactly (see the README, "Batches, order
    and resume"). ``start`` and ``stop`` are idempotent; a start after a stop
    begins a new epoch. Waiting for a sample releases the GIL.
    """

    def __init__(self, config: Mapping[str, Any] | str) -> None:
        if isinstance(config, str):
            text = config
        elif isinstance(config, Mapping):
            text = json.dumps(config)
        else:
            raise TypeError(f"config must be a dict or a JSON string, not {type(config).__name__}")
        text = with_aws_env(text)  # s3:// URLs: AWS_* from os.environ as it is now
        self._handle = 0
        lib = _lib.lib()
        self._pid = os.getpid()
        err = _lib.new_error()
        handle = lib.datago_client_new(text.encode(), err)
        if handle == 0:
            _lib.raise_error(err)
        self._handle = handle
        self._lib = lib
        parsed = json.loads(text) if isinstance(text, str) else {}
        self._batched = bool(isinstance(parsed, dict) and (parsed.get("batch_size") or 0) > 0)

    # -- lifecycle -----------------------------------------------------------------------------
    def _check(self) -> None:
        _lib.check_not_forked(self._pid)
        if self._handle == 0:
            raise ClosedError("this DatagoClient was closed")

    def start(self) -> None:
        """Start the pipeline's goroutines (idempotent)."""
        self._check()
        err = _lib.new_error()
        if self._lib.datago_client_start(self._handle, err) != 0:
            _lib.raise_error(err)

    def stop(self) -> None:
        """Stop every stage, wait for its goroutines and free queued samples (idempotent).

        Samples already handed out stay valid.
        """
        if self._handle:
            self._check()
            self._lib.datago_client_stop(self._handle)

    def close(self) -> None:
        """Stop and release the client; it cannot be used afterwards (idempotent).

        Its goroutines and the OS threads that ran its decoders end, and the C heap's free pages
        go back to the system (``malloc_trim``), so the process's RSS drops back after a run.
        Samples already handed out stay valid.
        """
        if self._handle and os.getpid() == self._pid:
            self._lib.datago_client_free(self._handle)
        self._handle = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> DatagoClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- samples -------------------------------------------------------------------------------
    def get_sample(self, timeout: float | None = None) -> Sample | None:
        """Wait for the next sample.

        Args:
            timeout: seconds to wait; None waits as long as the stream goes on.

        Returns:
            The next :class:`Sample`, or None at the end of the stream (every sample delivered, or
            ``limit`` reached).

        Raises:
            SampleTimeoutError: (a TimeoutError) no sample arrived within ``timeout`` seconds (the
                stream goes on).
            DatagoOSError / NotFoundError / DatagoRuntimeError: the source failed (e.g. the listing
                could not be read); see :mod:`datago.errors`.
            ClosedError: the client was closed.
        """
        out = self._wait(self._lib.datago_client_get_sample, "datago_sample **", "sample", timeout)
        return None if out is None else Sample(out)

    def __iter__(self) -> Iterator[Any]:
        """Yields :class:`Sample` — or :class:`Batch` when the config sets ``batch_size`` — until
        the end of the epoch."""
        if self._batched:
            while (batch := self.get_batch()) is not None:
                yield batch
        else:
            while (sample := self.get_sample()) is not None:
                yield sample

    # -- batches -------------------------------------------------------------------------------
    def get_batch(self, timeout: float | None = None) -> Batch | None:
        """Wait for the next batch (config key ``batch_size`` > 0).

        Args:
            timeout: seconds to wait; None waits as long as the epoch goes on.

        Returns:
            The next :class:`Batch` (N samples of one bucket, N <= batch_size), or None at the end
            of the epoch.

        Raises:
            SampleTimeoutError: (a TimeoutError) no batch arrived within ``timeout`` seconds (the
                stream goes on).
            ConfigError: (a ValueError) the client has no ``batch_size``.
            DatagoOSError / NotFoundError / DatagoRuntimeError: the source failed.
            ClosedError: the client was closed.
        """
        out = self._wait(self._lib.datago_client_get_batch, "datago_batch **", "batch", timeout)
        return None if out is None else Batch(out)

    def _wait(self, get: Any, out_type: str, what: str, timeout: float | None) -> Any:
        """Call ``get`` (datago_client_get_sample or _get_batch) in slices of _WAIT_SLICE_S seconds
        until it delivers (the C pointer), the stream ends (None) or ``timeout`` seconds pass
        (SampleTimeoutError); a failed stream raises its DatagoError."""
        self._check()
        out = _lib.ffi.new(out_type)
        err = _lib.new_error()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _WAIT_SLICE_S
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            rc = get(self._handle, wait, out, err)
            if rc == self._lib.DATAGO_SAMPLE:
                return out[0]
            if rc == self._lib.DATAGO_END:
                _logs.drain()  # the warnings of the run (skipped samples) reach the logger first
                return None
            if rc == self._lib.DATAGO_ERROR:
                _logs.drain()
                _lib.raise_error(err)
            if deadline is not None and time.monotonic() >= deadline:
                raise SampleTimeoutError(f"no {what} within {timeout} s")

    # -- map-style access -----------------------------------------------------------------------
    def num_items(self) -> int:
        """Number of samples of the client's map-style index (see :meth:`get_items`).

        The index is listed once, on the first call, and kept until the client is closed.

        Raises:
            DatagoOSError / NotFoundError: the listing failed (names the path or URL).
            ClosedError: the client was closed.
        """
        self._check()
        err = _lib.new_error()
        n = self._lib.datago_client_len(self._handle, err)
        if n < 0:
            _lib.raise_error(err)
        return int(n)

    def index(self) -> list[dict[str, Any]]:
        """The map-style index, read from the listing (no image is decoded).

        Returns:
            Element i describes sample i of :meth:`get_items`: ``{"id": str, "source": str,
            "attributes": dict}`` (a folder: the path relative to ``root_path``, "filesystem", {}).

        Raises:
            DatagoOSError / NotFoundError: the listing failed.
            ClosedError: the client was closed.
        """
        self._check()
        err = _lib.new_error()
        ptr = self._lib.datago_client_index(self._handle, err)
        if ptr == _lib.ffi.NULL:
            _lib.raise_error(err)
        return json.loads(_lib.take_string(ptr))

    def get_items(self, indices: Sequence[int]) -> list[Sample | None]:
        """Fetch, decode and transform the samples at ``indices`` (map-style, random access).

        The Go core makes them in parallel on ``num_threads`` workers, with the client's image
        settings (buckets, ``image_to_rgb8``, ...), the GIL released. Index i is the i-th sample of
        the source's index: for a folder its sorted listing (whatever ``random_sampling``,
        ``rank`` and ``world_size`` say: a sampler chooses the order and the ranks' shares); for
        db the rows of the query in epoch 0's stream order; for WebDataset the samples of epoch
        0's stream, whose encoded payloads the core then holds in memory. Independent of the
        streaming methods (``get_sample`` may run at the same time).

        Args:
            indices: positions in ``[0, num_items())``, any order, repeats allowed.

        Returns:
            One entry per index, in order: a :class:`Sample`, or None when that sample was skipped
            (corrupt image, missing file: counted in ``stats()["skipped_reasons"]`` and logged with
            its path on the ``datago`` logger).

        Raises:
            IndexError: an index outside ``[0, num_items())`` (nothing is decoded then).
            ClosedError: the client was closed.
        """
        self._check()
        idx = [int(i) for i in indices]
        if not idx:
            return []
        ffi = _lib.ffi
        c_idx = ffi.new("int64_t[]", idx)
        out = ffi.new("datago_sample *[]", len(idx))
        err = _lib.new_error()
        made = self._lib.datago_client_get_items(self._handle, c_idx, len(idx), out, err)
        if made < 0:
            _logs.drain()
            if err.kind == self._lib.DATAGO_ERR_VALUE:
                message = _lib.take_string(err.message) or "index out of range"
                err.message = ffi.NULL
                raise IndexError(message)
            _lib.raise_error(err)
        result: list[Sample | None] = [None if out[k] == ffi.NULL else Sample(out[k]) for k in range(len(idx))]
        if made < len(idx):
            _logs.drain()  # the skipped samples' warnings reach the logger
        return result

    # -- order and resume ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The resume point after the last sample or batch delivered (a small JSON-able dict).

        Samples held back in bucket buffers or queues were not delivered: a resumed client
        delivers them again. See the README ("Resuming") for the format.
        """
        self._check()
        err = _lib.new_error()
        ptr = self._lib.datago_client_state(self._handle, err)
        if ptr == _lib.ffi.NULL:
            _lib.raise_error(err)
        return json.loads(_lib.take_string(ptr))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (this rank's, or one merged by :func:`merge_state_dicts`).

        Call it before the first sample. The epoch becomes the state's.

        Raises:
            ConfigError: (a ValueError) the state does not fit this client (source_type, seed, rank/world_size of
                an unmerged state, another world_size for a source without a global order, or a
                source whose order is not reproducible without a seed).
        """
        self._check()
        err = _lib.new_error()
        if self._lib.datago_client_load_state(self._handle, json.dumps(dict(state)).encode(), err) != 0:
            _lib.raise_error(err)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next start (the seeded order is a function of it).

        Raises:
            ConfigError: (a ValueError) epoch < 0.
        """
        self._check()
        err = _lib.new_error()
        if self._lib.datago_client_set_epoch(self._handle, int(epoch), err) != 0:
            _lib.raise_error(err)

    def stats(self) -> dict[str, Any]:
        """Counters of the current (or last) run.

        Returns a dict with ``samples_produced``, ``samples_skipped``, ``skipped_reasons``
        (reason -> count), ``corrupt_data`` (samples skipped because their image data is damaged,
        by ``image_config.fail_on``; also ``skipped_reasons["corrupt_data"]``), ``bytes_read``
        (bytes), ``elapsed_seconds``, ``stages`` (per stage: ``name``, ``items_in``,
        ``items_out``, ``busy_seconds`` summed over workers),
        ``queue_length`` and ``queue_capacity``; with ``batch_size`` also ``batches_produced``,
        ``partial_batches_flushed`` (delivered early because ``max_held_samples`` was reached),
        ``partial_batches_at_end`` and ``partial_batches_dropped`` (``drop_last``); ``http``: the
        run's HTTP counters (``requests``, ``retries``, ``resumes`` with Range, ``truncations``:
        bodies cut early, ``timeouts``: connect, headers, stalled or too slow bodies, ``failures``).
        """
        self._check()
        _logs.drain()
        return json.loads(_lib.take_string(self._lib.datago_client_stats(self._handle)))

    # -- Photoroom datago (Rust edition) compatibility ----------------------------------------
    def get_sample_auto_convert(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next sample as a dict of native Python types, as datago's method of this name
        returns it (keys ``id``, ``source``, ``duplicate_state``, ``attributes``, ``tags``,
        ``coca_embedding``, ``latents``, ``image``, ``masks``, ``additional_images``; see
        :func:`datago.compat.auto_convert`), or None at the end of the stream. Waits and raises
        like :meth:`get_sample`.
        """
        from .compat import auto_convert

        return auto_convert(self.get_sample(timeout))


def live_samples() -> tuple[int, int]:
    """Process-wide (samples, bytes) handed out by the core and not yet freed."""
    lib = _lib.lib()
    return int(lib.datago_live_samples()), int(lib.datago_live_bytes())
