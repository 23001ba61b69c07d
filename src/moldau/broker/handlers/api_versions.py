"""ApiVersions (key 18): which APIs and versions this broker serves.

v0: the API ranges. v1: throttle_time_ms. v2: no change. v3: flexible, the
client sends its software name and version. v4: no change (only tells the
broker the client can handle an UNSUPPORTED_VERSION answer in v4 itself).
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, api_version_ranges, handles


@handles(ApiKey.API_VERSIONS, range(0, 5))
def api_versions(context: RequestContext, request: Message) -> Message:
    ranges = api_version_ranges(context.core.cluster is not None)
    return {"error_code": 0, "api_keys": ranges, "throttle_time_ms": 0}
