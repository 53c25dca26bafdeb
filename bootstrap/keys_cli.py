"""``lwm2m-bootstrap keys``: generate a master key, rotate the one secrets are sealed with, verify it.

The helpers of :mod:`bootstrap.cli` are imported inside the commands, so :mod:`bootstrap.cli` can import this
module (``main.add_command(keys)``) without an import cycle.

Rotation, in short (``docs/operations.md`` has the whole runbook)::

    lwm2m-bootstrap keys generate --output /secure/new-master.key
    # stop every server, then, with the settings the servers use (old key included):
    lwm2m-bootstrap keys rotate --new-key-file /secure/new-master.key
    # point the servers at the new key (LWM2M_BOOTSTRAP_MASTER_KEY_FILE, the Kubernetes Secret...),
    # start them, and check:
    lwm2m-bootstrap keys verify
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .secretbox import KEY_BYTES

if TYPE_CHECKING:
    from .config import Settings


def _storage_options(func: Any) -> Any:
    from .cli import storage_options

    return storage_options(func)


def _current_key(settings: Settings) -> bytes:
    """The configured master key (environment or key file); never creates one."""
    from .secretbox import load_master_key

    return load_master_key(settings.master_key, settings.key_file, create=False)


def new_key_text() -> str:
    """A fresh random master key, base64 (what every key file holds)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


@click.group()
def keys() -> None:
    """The master key that seals secrets at rest (generate, rotate, verify)."""


@keys.command("generate")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the key to this new file (mode 0600; an existing file is never overwritten).",
)
def keys_generate(output: Path | None) -> None:
    """Print a new random master key (base64 of 32 bytes), or write it to --output."""
    text = new_key_text()
    if output is None:
        click.echo(text)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        from .cli import fail

        fail(f"{output} exists; not overwriting a key file")
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    click.echo(f"wrote a new master key to {output} (mode 0600)", err=True)


@keys.command("rotate")
@_storage_options
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="File with the new base64 master key (mode 0600; see 'keys generate').",
)
@click.option(
    "--allow-running-servers",
    is_flag=True,
    help="Rotate even though servers still listen on this database (they must be restarted at once).",
)
def keys_rotate(new_key_file: Path, allow_running_servers: bool, **values: Any) -> None:
    """Re-seal every secret in the database under the key in --new-key-file, in one transaction.

    The current key comes from the usual settings (LWM2M_BOOTSTRAP_MASTER_KEY, --master-key-file /
    LWM2M_BOOTSTRAP_MASTER_KEY_FILE, or DATA_DIR/master.key) and is only read: no key file is
    written. If any secret does not open with the current key, nothing is changed.

    Afterwards every server must use the new key: stop the servers before rotating, switch their
    key (environment, key file or Secret) to the new one, and start them. Keep the old key as long
    as you keep database backups taken before the rotation: they are sealed with it.
    """
    from .cli import database_for, fail, run_async, settings_or_exit
    from .keys import listening_servers, rotate_master_key
    from .secretbox import SecretBox, load_master_key

    settings = settings_or_exit(**values)

    async def body() -> dict[str, int]:
        old = SecretBox(_current_key(settings))
        new = SecretBox(load_master_key(None, new_key_file, create=False))
        async with database_for(settings) as database:
            running = await listening_servers(database.pool)
            if running and not allow_running_servers:
                fail(
                    f"{running} server process(es) are connected to this database; stop them first"
                    " (a running server keeps the old key and cannot open what is re-sealed), or pass"
                    " --allow-running-servers and restart them with the new key right after"
                )
            return await rotate_master_key(database.pool, old, new)

    counts = run_async(body)()
    for label, count in counts.items():
        click.echo(f"{label}\t{count}")
    click.echo(f"total\t{sum(counts.values())}")
    click.echo(
        f"re-sealed every secret under the new key in {new_key_file}. Now give the servers that key"
        " (LWM2M_BOOTSTRAP_MASTER_KEY_FILE / LWM2M_BOOTSTRAP_MASTER_KEY, or replace the key file's"
        " contents) and start them; 'lwm2m-bootstrap keys verify' with the new key checks every"
        " secret. Keep the old key for backups taken before now.",
        err=True,
    )


@keys.command("verify")
@_storage_options
def keys_verify(**values: Any) -> None:
    """Open every sealed secret with the configured master key; exit 1 if any does not open."""
    from .cli import database_for, fail, run_async, settings_or_exit
    from .keys import verify_master_key
    from .secretbox import SecretBox

    settings = settings_or_exit(**values)

    async def body() -> None:
        box = SecretBox(_current_key(settings))
        async with database_for(settings) as database:
            check = await verify_master_key(database.pool, box)
        for label, count in check.counts.items():
            click.echo(f"{label}\t{count}")
        if not check.ok:
            fail(check.summary())
        click.echo("every sealed secret opens with the configured master key", err=True)

    run_async(body)()
