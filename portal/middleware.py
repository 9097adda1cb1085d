"""Refuse a request that carries a NUL character (\\0), with a 400 that says where it is.

PostgreSQL's text cannot hold a NUL: a query-string filter, form field, cookie or path segment
with one reached the database and failed there with a 500, while SQLite and MySQL kept it. No
form or link puts a NUL in text a person typed, so it is refused, not stripped, free text
included: a request is handled as it was sent or not at all, and the audit log never records
something other than what was submitted.
"""

from django.http import HttpResponseBadRequest, JsonResponse

FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def _pairs(params):
    """(name, value) for every value of a QueryDict or a plain dict."""
    if hasattr(params, "lists"):
        return ((key, value) for key, values in params.lists() for value in values)
    return params.items()


def _nul_in(params) -> str | None:
    """The name of the first parameter whose name or value holds a NUL."""
    return next((key for key, value in _pairs(params) if "\x00" in key + value), None)


class RefuseNulMiddleware:
    """The path, query string and cookies are checked before any other middleware reads them
    (the session cookie is a database lookup); form fields are checked before the view, and
    only for views that take forms: CSRF-exempt views (the GitHub webhook, the JSON API) read
    their own bodies, the webhook up to 25 MB, which parsing it here would cap at 2.5 MB."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The API checks its own path parameters and names the one at fault.
        if "\x00" in request.path_info and not request.path_info.startswith("/api/"):
            return refuse(request, "the path")
        for kind, params in (("query-string parameter", request.GET), ("cookie", request.COOKIES)):
            if (name := _nul_in(params)) is not None:
                return refuse(request, f"{kind} {name!r}", name)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if getattr(view_func, "csrf_exempt", False) or request.content_type not in FORM_TYPES:
            return None
        if (name := _nul_in(request.POST)) is not None:
            return refuse(request, f"form field {name!r}", name)
        return None


def refuse(request, where: str, field: str | None = None):
    message = f"a NUL character (\\0) is not allowed: there is one in the {where}"
    if request.path_info.startswith("/api/"):  # the API answers every error in JSON
        body = {"error": message} | ({"field": field} if field else {})
        return JsonResponse(body, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
