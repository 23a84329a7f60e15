"""Campaign manifests, the dry-run plan, the campaign runner and its resume state."""

from daskxpcs.campaign.manifest import Geometry, Manifest, ManifestError, ScanSpec, load_manifest
from daskxpcs.campaign.run import run_campaign

__all__ = ["Geometry", "Manifest", "ManifestError", "ScanSpec", "load_manifest", "run_campaign", "plan_campaign",
           "format_plan"]


def __getattr__(name):
    if name in ("plan_campaign", "format_plan"):
        from daskxpcs.campaign import plan

        return getattr(plan, name)
    raise AttributeError(name)
