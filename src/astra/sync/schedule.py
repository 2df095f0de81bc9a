"""When the periodic jobs run: cron lines procrastinate's periodic deferrer reads.

Each worker defers what is due and the database keeps it to one job per tick, so however
many workers and hosts run, each tick's job is queued once.
"""

from __future__ import annotations

from dataclasses import dataclass

from astra.settings import Settings

MINUTE, HOUR, DAY = 60, 3600, 86400


def cron_every(seconds: int) -> str:
    """A cron line that fires every `seconds` (procrastinate reads a sixth column as seconds).

    Cron counts within the minute, hour and day, so only intervals that divide one of them
    evenly repeat at a steady pace; anything else is refused rather than run unevenly.
    """
    if seconds < MINUTE and MINUTE % seconds == 0:
        return f"* * * * * */{seconds}"
    if seconds % MINUTE == 0 and seconds < HOUR and HOUR % seconds == 0:
        return f"*/{seconds // MINUTE} * * * *"
    if seconds % HOUR == 0 and seconds < DAY and DAY % seconds == 0:
        return f"0 */{seconds // HOUR} * * *"
    if seconds == DAY:
        return "0 0 * * *"
    raise ValueError(
        f"{seconds} s does not divide a minute, an hour or a day evenly "
        "(e.g. 30, 300, 900, 3600, 21600)"
    )


@dataclass(frozen=True)
class Schedule:
    # Retention: hourly, so each run removes about an hour's worth of old deliveries.
    prune_deliveries: str
    prune_jobs: str
    # Stalled-job recovery: as often as a worker can be found dead.
    retry_stalled_jobs: str
    # The sync's periodic jobs, for its tasks when they exist (astra.sync.queue.job_app):
    # each active integration with credentials reconciled every ASTRA_SYNC_INTERVAL_SECONDS,
    # and the daily check that the webhooks Astra registered still exist and are active.
    reconcile: str
    webhook_health: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Schedule:
        return cls(
            prune_deliveries="7 * * * *",
            prune_jobs="37 4 * * *",
            retry_stalled_jobs=cron_every(settings.worker_stalled_seconds),
            reconcile=cron_every(settings.sync_interval_seconds),
            webhook_health="17 5 * * *",
        )
