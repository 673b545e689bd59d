"""Gets unified users one by one through the real Truto Python SDK (truto-python-sdk, PyPI).

    python tests/python/sdk_get.py BASE_URL TOKEN ACCOUNT_ID ID [ID ...]

For each ID, awaits `unified_api.get("user-directory", "users", ID, {"integrated_account_id":
ACCOUNT_ID})` and prints the answer as one JSON line (json.dumps(user, sort_keys=True)); exit 0.
On any error (the SDK raises on a non-2xx answer): one line "sdk_get: <Type>: <error>" on
stderr, exit 1.
"""

import asyncio
import json
import sys

from truto_python_sdk import TrutoApi


async def run(argv: list[str]) -> None:
    truto = TrutoApi(token=argv[2], base_url=argv[1].rstrip("/"))
    for record_id in argv[4:]:
        user = await truto.unified_api.get(
            "user-directory", "users", record_id, {"integrated_account_id": argv[3]}
        )
        print(json.dumps(user, sort_keys=True), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print("usage: sdk_get.py BASE_URL TOKEN ACCOUNT_ID ID [ID ...]", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(argv))
    except Exception as error:  # noqa: BLE001 (any failure is the test's business)
        print(f"sdk_get: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
