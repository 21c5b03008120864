"""``kvern proxy``: check the prediction's settings, then run the proxy until Ctrl-C or SIGTERM."""

from __future__ import annotations

from kvern.infra.config import Config
from kvern.infra.console import Output
from kvern.proxy.settings import ProxySettings


def proxy(settings: ProxySettings, cfg: Config, out: Output) -> int:
    """A bad --profile, --policy or --capacity is exit 2 before anything listens (the worker that
    predicts starts later and would only warn)."""
    from kvern.infra.errors import UsageError
    from kvern.proxy import run_proxy
    from kvern.sim.capacity import parse_capacity
    from kvern.sim.online import OFFLINE_POLICIES
    from kvern.sim.policies import make_policy
    from kvern.sim.profiles import get_profile
    from kvern.sim.simulate import check_supported

    get_profile(settings.profile)
    check_supported(settings.profile, settings.policy)
    make_policy(settings.policy)
    if settings.policy in OFFLINE_POLICIES:
        raise UsageError(f"--policy {settings.policy}: needs the whole trace up front; the proxy predicts "
                         "with lru, fifo or lfu")
    parse_capacity(settings.capacity)
    return run_proxy(settings, cfg, out)
