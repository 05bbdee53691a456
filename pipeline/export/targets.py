"""Export targets named by the command line or a setting."""

from __future__ import annotations

from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.exports import BlobTarget


def blob_target(cfg: Config, store: Store, spec: str, connection: str | None) -> BlobTarget:
    """`CONTAINER[/PREFIX]` in the audit account, or in the account `connection` names."""
    container, _, prefix = spec.partition("/")
    if connection:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(connection, retry_total=0)
    else:
        service = store.blobs
    return BlobTarget(service.get_container_client(container), prefix)


def export_target(cfg: Config, store: Store) -> BlobTarget | None:
    """The daily timer's target (EXPORT_TARGET = blob:CONTAINER[/PREFIX]), or None when off."""
    if not cfg.export_target:
        return None
    target = blob_target(cfg, store, cfg.export_target.removeprefix("blob:"), None)
    target.ensure()
    return target
