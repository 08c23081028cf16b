"""The generated Kong configuration enforces the edge's body limit and answers it in the error
shape (ADR 0160). Kong is in no package registry: the rendered declarative file is checked, and
the decision's access chunk is run by LuaJIT (Kong's runtime) against a stand-in of the few PDK
calls it makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lupa.luajit21 import LuaRuntime

from plexica.gateway.config import BODY_LIMIT, kong_config

DEPLOY = Path(__file__).parents[2] / "deploy"
STAND_IN = """
local method, path, headers, decision = ...
package.loaded["resty.http"] = {new = function()
  return {request_uri = function() return decision end}
end}
ngx = {null = setmetatable({}, {__tostring = function() return "null" end})}
local answer = nil
kong = {
  request = {
    get_method = function() return method end,
    get_raw_path = function() return path end,
    get_raw_query = function() return "" end,
    get_host = function() return "edge.example" end,
    get_header = function(name) return headers[string.lower(name)] end,
  },
  service = {request = {clear_header = function() end, set_header = function() end}},
  response = {exit = function(status, body, out)
    answer = {status = status, body = body, headers = out}
    return answer
  end},
  log = {err = function() end},
}
return function(chunk)
  assert(load(chunk))()
  return answer
end
"""


def routes(config: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Route name → (route, its service)."""
    return {r["name"]: (r, s) for s in config["services"] for r in s["routes"]}


def access_chunk(service: dict[str, Any]) -> str:
    (pre,) = [p for p in service["plugins"] if p["name"] == "pre-function"]
    return str(pre["config"]["access"][0])


def run(chunk: str, method: str, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    lua = LuaRuntime(unpack_returned_tuples=True)
    decision = lua.table_from(
        {"status": 200, "body": "", "headers": lua.table_from({"X-Request-ID": "rid-1"})}
    )
    execute = lua.execute(STAND_IN, method, path, lua.table_from(headers), decision)
    answer = execute(chunk)
    if answer is None:
        return None
    body = answer["body"]
    error = body["error"]
    return {
        "status": answer["status"],
        "error": {"code": error["code"], "message": error["message"]},
        "headers": dict(answer["headers"].items()),
    }


def config() -> dict[str, Any]:
    return kong_config("http://core:3000", {"crm": "http://plugin-crm:3000"})


def test_every_api_route_but_uploads_limits_bodies_to_one_mib() -> None:
    for name, (route, _) in routes(config()).items():
        limits = [p for p in route.get("plugins", []) if p["name"] == "request-size-limiting"]
        if name in ("core-uploads", "core-signed", "realms", "web", "api-unknown"):
            assert not limits, name
            continue
        (limit,) = limits
        assert limit["config"] == {
            "allowed_payload_size": BODY_LIMIT,
            "size_unit": "bytes",
            "require_content_length": False,  # a chunked body is counted too
        }, name


def test_upload_routes_take_only_put_and_keep_the_core_path() -> None:
    found = routes(config())
    for name, path in (("core-uploads", "/v1/files/objects"), ("core-signed", "/v1/files/signed")):
        route, service = found[name]
        assert route["methods"] == ["PUT"]
        assert route["paths"] == ["/api/core" + path]
        assert route["strip_path"] is True
        assert service["url"] == "http://core:3000" + path  # what is stripped is put back


def test_a_declared_body_over_the_limit_is_413_in_the_error_shape_before_it_is_read() -> None:
    found = routes(config())
    for name in ("core-api", "plugin-crm"):
        chunk = access_chunk(found[name][1])
        over = {"content-length": str(BODY_LIMIT + 1), "content-type": "application/json"}
        answer = run(chunk, "POST", "/api/plugins/crm/v1/companies", over)
        assert answer is not None, name
        assert answer["status"] == 413
        assert answer["error"]["code"] == "payload_too_large"
        assert answer["headers"]["X-Request-ID"] == "rid-1"
        assert answer["headers"]["Content-Type"] == "application/json"
        assert run(chunk, "POST", "/x", {"content-length": str(BODY_LIMIT)}) is None
        assert run(chunk, "GET", "/x", {}) is None


def test_uploads_are_not_cut_at_the_json_limit() -> None:
    chunk = access_chunk(routes(config())["core-uploads"][1])
    big = {"content-length": str(50 * BODY_LIMIT)}
    assert run(chunk, "PUT", "/api/core/v1/files/objects/a.bin", big) is None


def test_kong_s_own_pages_are_the_error_shape() -> None:
    template = (DEPLOY / "kong" / "error-template.json").read_text()
    body = json.loads(template.replace("%s", "Request size limit exceeded"))
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
