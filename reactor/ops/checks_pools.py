"""`gpu-reactor check` on the GPU pools (issue 16): can each pool rent what it names?

pools-file (POOLS_FILE validates: the one line load_pools refuses it with), one line per
pool (``pool:NAME``: each of its GPU types is an id in Runpod's GPU catalog, with a price
in the pool's cloud, and its budget affords one worker at the price the reactor will
expect), pools-routing (a warning for a pool that only ever gets spill-over, because
earlier pools list every one of its task types first) and pools-fleet-cap (a warning
when the pools' maxima add up to more than the fleet's MAX_ACTIVE_GPUS: then the fleet
cap binds, the spawns of earlier pools first). The catalog is read once; the rest is pure
(``judge_pools``), so a table of cases drives it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from reactor.domain.globs import compile_globs, is_glob
from reactor.domain.pools import Pool, Pools
from reactor.errors import ConfigError, ReactorError
from reactor.logs import scrub
from reactor.ops.checks import CheckResult
from reactor.pools_file import load_pools
from reactor.providers.runpod_parse import CatalogGpu, MalformedBody, catalog_gpus
from reactor.settings import Settings

CATALOG = "Runpod's GPU catalog (GET /v2/catalog/gpus)"


async def check_pools(settings: Settings, *, provider_ok: bool) -> list[CheckResult]:
    """The pools' verdicts; nothing for the local provider without POOLS_FILE.

    :param provider_ok: whether the provider check passed (else the catalog is not read:
        that check already says why Runpod cannot be asked)."""
    runpod = settings.reactor_provider == "runpod"
    if not settings.pools_file and not runpod:
        return []
    out = []
    try:
        pools = load_pools(settings)
    except ConfigError as exc:
        return [CheckResult("pools-file", "FAIL", scrub(str(exc)))]
    if pools.routed:
        names = ", ".join(pools.names)
        out.append(
            CheckResult("pools-file", "PASS", f"{pools.source}: {len(pools)} pools ({names})")
        )
    catalog: list[CatalogGpu] | None = None
    skipped = "the provider check failed"
    if runpod and provider_ok:
        catalog, failure = await read_catalog(settings)
        if failure is not None:
            out.append(failure)
            skipped = "the GPU catalog could not be read"
    return out + judge_pools(pools, catalog, skipped=skipped, runpod=runpod)


async def read_catalog(settings: Settings) -> tuple[list[CatalogGpu] | None, CheckResult | None]:
    """The catalog's GPU types, or a failed ``gpu-catalog`` check saying why not."""
    from reactor.providers.runpod import RunpodProvider  # the provider loads lazily

    try:
        provider = RunpodProvider(settings=settings)
        try:
            async with asyncio.timeout(settings.runpod_request_timeout_sec * 3):
                return catalog_gpus(await provider.gpu_catalog()), None
        finally:
            await provider.close()
    except TimeoutError:
        return None, CheckResult("gpu-catalog", "FAIL", f"{CATALOG} did not answer in time")
    except (ReactorError, MalformedBody) as exc:
        return None, CheckResult("gpu-catalog", "FAIL", scrub(f"{CATALOG}: {exc}"))


# --- pure ------------------------------------------------------------------------------


def judge_pools(
    pools: Pools, catalog: list[CatalogGpu] | None, *, skipped: str, runpod: bool = True
) -> list[CheckResult]:
    """Per pool, then routing and the fleet cap (those two only with POOLS_FILE).

    :param catalog: the GPU catalog's types; None: not read (``skipped`` says why)."""
    out = [judge_pool(p, pools.settings, catalog, skipped=skipped, runpod=runpod) for p in pools]
    if pools.routed:
        out += [routing(pools), fleet_cap(pools)]
    return out


def judge_pool(
    pool: Pool,
    fleet: Settings,
    catalog: list[CatalogGpu] | None,
    *,
    skipped: str,
    runpod: bool = True,
) -> CheckResult:
    name, s = f"pool:{pool.name}", pool.settings
    if not runpod:
        return _local_pool(name, s, fleet)
    if catalog is None:
        return CheckResult(name, "SKIP", f"GPU types not checked: {skipped}")
    if not s.runpod_gpu_types:
        return CheckResult(
            name, "FAIL", "names no GPU type: set runpod_gpu_types (or RUNPOD_GPU_TYPES)"
        )
    looked = [(g, *gpu_price(catalog, g, s.runpod_cloud)) for g in s.runpod_gpu_types]
    problems = [problem for _, _, problem in looked if problem]
    if problems:
        return CheckResult(name, "FAIL", "; ".join(problems))
    fixed = s.gpu_hourly_price_usd
    price = fixed or max(p for _, p, _ in looked)
    where = "its gpu_hourly_price_usd" if fixed else "the dearest of its GPU types"
    budget, problem = _budget(s.max_hourly_spend_usd, fleet.max_hourly_spend_usd, price, where)
    if problem:
        return CheckResult(name, "FAIL", problem)
    seen = ", ".join(f"{g} ${p:.2f}/h" for g, p, _ in looked)
    return CheckResult(
        name,
        "PASS",
        f"{seen} in {s.runpod_cloud}; {budget}; max_active_gpus {s.max_active_gpus}",
    )


def _local_pool(name: str, s: Settings, fleet: Settings) -> CheckResult:
    """The local provider has no catalog: its pods cost the pool's gpu_hourly_price_usd."""
    where = "its gpu_hourly_price_usd"
    price = s.gpu_hourly_price_usd
    budget, problem = _budget(s.max_hourly_spend_usd, fleet.max_hourly_spend_usd, price, where)
    if problem:
        return CheckResult(name, "FAIL", problem)
    gpu = f"local pods named {s.runpod_gpu_types[0]!r}" if s.runpod_gpu_types else "local pods"
    return CheckResult(
        name, "PASS", f"{gpu} (no catalog); {budget}; max_active_gpus {s.max_active_gpus}"
    )


def gpu_price(catalog: Sequence[CatalogGpu], gpu_type: str, cloud: str) -> tuple[float, str]:
    """A GPU type's USD/h in ``cloud``, or what is wrong with naming it."""
    by_id = next((g for g in catalog if g.id == gpu_type), None)
    if by_id is None:
        by_name = next((g for g in catalog if g.name == gpu_type and g.id), None)
        if by_name is not None:
            return 0.0, (
                f"GPU type {gpu_type!r} is the catalog's display name of {by_name.id!r}: "
                "pods are created by id, so name that"
            )
        words = set(gpu_type.lower().split())
        near = [g.id for g in catalog if g.id and words <= set(g.id.lower().split())]
        hint = f" (did you mean {' or '.join(map(repr, near[:3]))}?)" if near else ""
        return 0.0, f"GPU type {gpu_type!r} is not in {CATALOG}{hint}"
    price = (by_id.prices or {}).get(cloud.lower(), 0.0)
    if price <= 0:
        return 0.0, (
            f"GPU type {gpu_type!r} has no price in the {cloud} cloud (runpod_cloud): "
            "it is not offered there"
        )
    return price, ""


def _budget(own: float | None, fleet: float | None, price: float, where: str) -> tuple[str, str]:
    """What the pool's budget affords at ``price``, or why it affords no worker."""
    if price <= 0:
        return "no price known before a pod reports one (budget not checked)", ""
    cap, what = own, "max_hourly_spend_usd"
    if fleet is not None and (own is None or fleet < own):
        cap, what = fleet, "the fleet's MAX_HOURLY_SPEND_USD"
    if cap is None:
        return f"no hourly budget, ${price:.2f}/h a worker", ""
    if cap < price:
        return "", (
            f"{what} ${cap:.2f} affords no worker at ${price:.2f}/h ({where}): "
            "the pool would never spawn"
        )
    return f"{what} ${cap:.2f} affords {int(cap // price)} at ${price:.2f}/h", ""


def shadowed_by(earlier: Sequence[str], pattern: str) -> bool:
    """Whether every task type ``pattern`` matches is matched by ``earlier`` patterns
    (a safe answer: True only when sure; one earlier pattern must cover it alone)."""
    if not is_glob(pattern):
        return compile_globs(earlier)(pattern)
    return any(_covers(q, pattern) for q in earlier)


def _covers(outer: str, inner: str) -> bool:
    """Whether glob ``outer`` matches every type glob ``inner`` does: ``inner``'s '*' can
    be taken only by a '*' of ``outer``, its '?' by a '?' or a '*' (sure, if not always
    able to tell: '*?' covers '?*' but is not found to)."""

    @functools.cache
    def at(i: int, j: int) -> bool:
        if i == len(outer):
            return j == len(inner)
        if outer[i] == "*":
            return at(i + 1, j) or (j < len(inner) and at(i, j + 1))
        if j == len(inner) or inner[j] == "*":
            return False
        if outer[i] == "?" or (inner[j] != "?" and inner[j] == outer[i]):
            return at(i + 1, j + 1)
        return False

    return at(0, 0)


def routing(pools: Pools) -> CheckResult:
    """A warning for each pool whose task types earlier pools all list first."""
    notes = []
    for i, pool in enumerate(pools.pools):
        before = pools.pools[:i]
        earlier = [p for q in before for p in q.patterns]
        if not before or not all(shadowed_by(earlier, p) for p in pool.patterns):
            continue
        firsts = [
            repr(q.name) for q in before if any(shadowed_by(q.patterns, p) for p in pool.patterns)
        ]
        one = len(firsts) == 1
        notes.append(
            f"pool {pool.name!r} gets only spill-over: {' and '.join(firsts)} "
            f"{'lists' if one else 'list'} each of its task types ({', '.join(pool.patterns)}) "
            f"first; it runs them only when {'that pool' if one else 'those pools'} cannot "
            "take them (at the max, the budget or out of capacity)"
        )
    if notes:
        return CheckResult("pools-routing", "WARN", "; ".join(notes))
    return CheckResult(
        "pools-routing", "PASS", "each pool is the first choice for some of its task types"
    )


def fleet_cap(pools: Pools) -> CheckResult:
    total = sum(p.settings.max_active_gpus for p in pools)
    cap = pools.settings.max_active_gpus
    if total > cap:
        return CheckResult(
            "pools-fleet-cap",
            "WARN",
            f"the pools' max_active_gpus add up to {total}, above the fleet's "
            f"MAX_ACTIVE_GPUS={cap}: the fleet cap binds (the spawns of earlier pools come "
            "first)",
        )
    return CheckResult(
        "pools-fleet-cap",
        "PASS",
        f"the pools' max_active_gpus add up to {total}, within MAX_ACTIVE_GPUS={cap}",
    )
