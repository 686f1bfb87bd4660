"""The scheduled jobs (discover, refresh, assess, prune) and the daemon that runs them."""

from onchain.jobs.assess import assess, tier_of
from onchain.jobs.context import JobContext
from onchain.jobs.daemon import run_daemon, run_once, run_recorded

__all__ = ["JobContext", "assess", "run_daemon", "run_once", "run_recorded", "tier_of"]
