"""The schedules view: every schedule of the hub with its spec, next and last tick and
whether it is paused; contributors may pause, resume and trigger one (CSRF-checked
forms, the same calls as ``taskloom schedules ...``, :mod:`taskloom.manage`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from taskloom import manage
from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import app_of, back_to, managed_store, now, posted

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views


def register(views: Views) -> None:
    views.router.add_api_route("/schedules", schedules_page, methods=["GET"])
    views.router.add_api_route("/schedules/{name:path}/{verb}", schedule_action, methods=["POST"])
    views.nav("Schedules", "/schedules")


@render.html_errors
async def schedules_page(request: Request) -> Response:
    session = await auth.require(request)
    records = await manage.list_schedules(managed_store(request))
    app = app_of(request)
    return render.page(
        request,
        "views_schedules.html",
        schedules=records,
        registered=None if app is None else set(app.schedules),
        done=request.query_params.get("done", ""),
        can_write=session.can_write,
    )


@render.html_errors
async def schedule_action(request: Request) -> Response:
    await posted(request, "write")
    name, verb = request.path_params["name"], request.path_params["verb"]
    store = managed_store(request)
    moment = now(request)
    if verb == "pause":
        await manage.pause_schedule(store, name)
        done = f"paused {name}"
    elif verb == "resume":
        tick = await manage.resume_schedule(store, name, moment)
        done = f"resumed {name}; next tick {render.env.filters['when'](tick)}"
    elif verb == "trigger":
        await manage.trigger_schedule(store, name, moment)
        done = f"triggered {name} once (queued for the schedule runner)"
    else:
        raise ValueError(f"unknown schedule action {verb!r}; use pause, resume or trigger")
    return back_to(request, "/schedules", done=done)
