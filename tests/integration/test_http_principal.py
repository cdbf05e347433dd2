"""User routes learn who calls them: ``authorize`` yields a ``taskloom.http.Principal``
with the key's id, role and name (or no key id on an open loopback host)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends

import taskloom as tl
import taskloom.http
from taskloom.http import Principal


def make_app() -> tl.App:
    app = tl.App("principal")

    @app.api.get("/whoami")
    async def whoami(
        caller: Annotated[Principal, Depends(taskloom.http.authorize("read"))],
    ) -> dict[str, Any]:
        return {"key_id": caller.key_id, "role": caller.role, "name": caller.name}

    return app


def test_authorize_gives_user_routes_the_callers_key_name_and_role() -> None:
    assert taskloom.http.Principal is taskloom.http.auth.Principal
    with tl.testing.TestEnv(make_app(), http=True) as env:
        assert env.base_url is not None
        with httpx.Client(base_url=env.base_url, timeout=10) as http:
            open_caller = http.get("/whoami").json()
            assert open_caller == {"key_id": None, "role": "admin", "name": None}
            made = http.post(
                "/runtime/webhooks/durabletask/keys", json={"name": "alice", "role": "reader"}
            )
            assert made.status_code == 201, made.text
            key = made.json()["key"]
            mine = http.get("/whoami", headers={"Authorization": f"Bearer {key}"}).json()
            assert mine == {"key_id": made.json()["id"], "role": "reader", "name": "alice"}
            assert http.get("/whoami").status_code == 401  # a key exists: no more open access
