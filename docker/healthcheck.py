"""The serving image's HEALTHCHECK: healthy while /v2/health/ready answers 200 on $PORT
(every served variant loaded and past its start-up check)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (OSError, urllib.error.HTTPError) as e:
        print(f"{url}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
