"""The pure parts of the console and plugin-form flows: CSRF fields added to plugin forms,
where a plugin's redirect may lead, the variants a flag form accepts, the progress view."""

from __future__ import annotations

from plexica.web.console_flags import parse_variants
from plexica.web.plugin_forms import shell_target, with_csrf
from plexica.web.provisioning import progress_view

PAGES = [{"id": "contacts", "path": "/ui/contacts"}, {"id": "deals", "path": "/ui/deals"}]
FIELD = '<input type="hidden" name="csrf" value="t&amp;k">'


def test_csrf_goes_into_post_forms_only() -> None:
    html = (
        '<form method="post" action="ui/contacts"><input name="a"></form>'
        '<FORM class="x" METHOD=POST>'
        '<form method="get" action="ui/contacts">'
        "<form>"
        "<td>&lt;form method=&#34;post&#34;&gt;</td>"
    )
    out = with_csrf(html, "t&k")
    assert out.count(FIELD) == 2
    assert out.startswith('<form method="post" action="ui/contacts">' + FIELD)
    assert '<FORM class="x" METHOD=POST>' + FIELD in out
    assert '<form method="get" action="ui/contacts"><form><td>' in out
    # Escaped user data stays text: no field is added inside it.
    assert out.endswith("<td>&lt;form method=&#34;post&#34;&gt;</td>")


def test_a_plugin_redirect_stays_among_its_pages() -> None:
    assert shell_target("crm", PAGES, "ui/contacts?added=1") == "/t/p/crm/contacts?added=1"
    assert shell_target("crm", PAGES, "ui/deals#deal-7") == "/t/p/crm/deals#deal-7"
    assert shell_target("crm", PAGES, "ui/contacts/42") == "/t/p/crm/ui/contacts/42"
    for outside in (
        "https://evil.example/ui/x",
        "//evil.example/ui/x",
        "/t/admin/users",
        "ui/../../admin",
        "contacts",
        "ui\\..\\x",
        "",
    ):
        assert shell_target("crm", PAGES, outside) is None, outside


def test_variant_lines() -> None:
    assert parse_variants("blue=#00f\n green = #0f0 ,red=") == (
        {"blue": "#00f", "green": "#0f0", "red": ""},
        None,
    )
    bad, problem = parse_variants("no equals sign")
    assert bad is None
    assert problem is not None
    assert "name=value" in problem
    assert parse_variants(" \n ")[0] is None
    assert parse_variants("bad name=1")[0] is None


def test_the_progress_view_ends_with_the_event() -> None:
    status = {
        "state": "failed",
        "finished": True,
        "steps": [
            {"name": "schema", "status": "undone", "error": None},
            {"name": "bucket", "status": "undone", "error": "boom"},
        ],
    }
    view = progress_view(status)
    assert [s["label"] for s in view["view_steps"]] == [
        "Database schema",
        "Storage bucket",
        "Event plexica.tenant.failed",
    ]
    assert view["undone"] == ["Database schema", "Storage bucket"]
    running = progress_view({"state": "provisioning", "finished": False, "steps": []})
    assert running["view_steps"][-1]["status"] == "pending"
