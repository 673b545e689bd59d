"""Lists unified users through the real Truto Python SDK (truto-python-sdk, PyPI).

    python tests/python/sdk_list.py BASE_URL TOKEN ACCOUNT_ID [LIMIT [EXTRA_QUERY_JSON]]

- BASE_URL: the gateway, e.g. http://127.0.0.1:8080 (a trailing "/" is dropped: the SDK
  builds f"{base_url}/{endpoint}").
- TOKEN: the gateway API token (sent as "Authorization: Bearer TOKEN").
- ACCOUNT_ID: the integrated_account_id.
- LIMIT: optional page size ("" = none); sent as `limit`.
- EXTRA_QUERY_JSON: optional JSON object merged into the query dict, e.g.
  '{"status": "active", "remote_query": {"sortBy": "userName"}}' (the SDK encodes nested
  objects as a[b]=c and lists as a[]=x).

Iterates `unified_api.list("user-directory", "users", query)` with `async for` (or, when the
environment sets UNIGATE_SDK_TO_ARRAY=1, collects it with the SDK's `to_array()`), which follows
next_cursor until it is empty, and prints one JSON line per user (json.dumps(user,
sort_keys=True)); exit 0. On any error: one line "sdk_list: <Type>: <error>" on stderr, exit 1.
"""

import asyncio
import json
import os
import sys

from truto_python_sdk import TrutoApi


def build_query(argv: list[str]) -> dict:
    query: dict = {"integrated_account_id": argv[3]}
    if len(argv) > 4 and argv[4] != "":
        limit = argv[4]
        query["limit"] = int(limit) if limit.isdigit() else limit
    if len(argv) > 5 and argv[5] != "":
        extra = json.loads(argv[5])
        if not isinstance(extra, dict):
            raise ValueError("EXTRA_QUERY_JSON must be a JSON object")
        query.update(extra)
    return query


async def run(argv: list[str]) -> None:
    truto = TrutoApi(token=argv[2], base_url=argv[1].rstrip("/"))
    users = truto.unified_api.list("user-directory", "users", build_query(argv))
    if os.environ.get("UNIGATE_SDK_TO_ARRAY") == "1":
        for user in await users.to_array():
            print(json.dumps(user, sort_keys=True), flush=True)
        return
    async for user in users:
        print(json.dumps(user, sort_keys=True), flush=True)


def main(argv: list[str]) -> int:
    if not 4 <= len(argv) <= 6:
        print(
            "usage: sdk_list.py BASE_URL TOKEN ACCOUNT_ID [LIMIT [EXTRA_QUERY_JSON]]",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(run(argv))
    except Exception as error:  # noqa: BLE001 (any failure is the test's business)
        print(f"sdk_list: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
