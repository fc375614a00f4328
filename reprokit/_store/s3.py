"""S3-compatible object storage as a store backend (AWS S3, MinIO, Ceph, R2, GCS's S3 API).

Needs s3fs (``pip install 'reprokit-verdict[s3]'``), imported only when an ``s3://`` store is used.
Credentials and the endpoint come from where boto3 looks for them (``AWS_*`` variables,
``~/.aws`` profiles, instance roles; ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for a
server that is not AWS); reprokit never records them.

The one write is a PUT with ``If-None-Match: *``: the server creates the key only if it does not
exist yet (HTTP 412 otherwise), which is what makes a manifest or a ledger slot a commit point.
"""

from __future__ import annotations

import time

from reprokit._model.errors import StoreError


class S3Backend:
    """``s3://bucket/prefix``: keys live under ``prefix/`` in ``bucket``."""

    def __init__(self, url: str) -> None:
        try:
            import s3fs  # type: ignore[import-untyped]
        except ImportError:
            raise StoreError(
                "an s3:// store needs s3fs: pip install 'reprokit-verdict[s3]'", url
            ) from None
        self.url = url.rstrip("/")
        rest = self.url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        # Short timeouts: recording waits on the network only as long as it must, and a run
        # that cannot be sent stays in the local folder.
        self.fs = s3fs.S3FileSystem(
            use_listings_cache=False,
            skip_instance_cache=True,
            config_kwargs={
                "connect_timeout": 5,
                "read_timeout": 30,
                "retries": {"max_attempts": 2, "mode": "standard"},
            },
        )
        # botocore retries once (above); s3fs would retry that again up to 5 times, with backoff:
        # a dead endpoint must cost a recording a second, not many.
        self.fs.retries = 1

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, key: str, exc: BaseException) -> StoreError:
        return StoreError(f"{self.url}: cannot {what} {key}: {exc}", self.url)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        for attempt in range(5):
            try:
                self.fs.call_s3(
                    "put_object",
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    IfNoneMatch="*",
                )
                return True
            except FileExistsError:  # 412 Precondition Failed: the key exists
                return False
            except Exception as exc:
                # 409 ConditionalRequestConflict: a concurrent conditional PUT on the same key
                # is in flight; asking again gives 412 (or success if that one failed).
                if "409" in str(exc) or "Conflict" in type(exc).__name__ + str(exc):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._fail("write", key, exc) from None
        raise StoreError(f"{self.url}: conflicting writes to {key} did not settle", self.url)

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(f"{self.bucket}/{self._key(key)}"))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def list(self, prefix: str) -> list[str]:
        base = f"{self.bucket}/{self.prefix}/" if self.prefix else f"{self.bucket}/"
        try:
            found = self.fs.find(base + prefix)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._fail("list", prefix, exc) from None
        # find() of "runs/" also matches "runs/x" below; of "runs/a" it may return "runs/ab":
        # keep exactly the keys that start with the prefix.
        keys = [k[len(base) :] for k in found if k.startswith(base)]
        return sorted(k for k in keys if k.startswith(prefix))
