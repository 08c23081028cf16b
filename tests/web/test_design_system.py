"""The design system the SDK gives plugins: the shell's own macros, escaped, from a plugin's
Fragments renderer."""

from __future__ import annotations

from pathlib import Path

from plexica_sdk.ui import Fragments


def test_plugin_fragments_use_the_shell_macros_escaped(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '{% from "plexica/macros.html" import field, alert, button %}'
        '{{ alert(message) }}{{ field("name", "Name", value, error) }}{{ button("Save") }}'
    )
    html = Fragments(tmp_path).html(
        "page.html", message="<b>oops</b>", value='"><script>x</script>', error="Too long"
    )
    assert 'class="px-alert px-alert--error" role="alert"' in html
    assert "&lt;b&gt;oops&lt;/b&gt;" in html
    assert '<label for="f-name">Name</label>' in html
    assert "&#34;&gt;&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
    assert 'aria-describedby="e-name"' in html
    assert '<button type="submit" class="px-btn">Save</button>' in html


def test_fields_of_several_forms_on_one_page_and_selects(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '{% from "plexica/macros.html" import field, select %}'
        '{{ field("amount", "Paid", "5", "Too much", id="pay-amount") }}'
        '{{ select("plan", "Plan", [(1, "<b>Basic</b>"), (2, "Pro")], 2, "Gone", id="p") }}'
    )
    html = Fragments(tmp_path).html("page.html")
    assert '<input id="f-pay-amount" name="amount" type="text" value="5"' in html
    assert 'aria-describedby="e-pay-amount"' in html
    assert '<span class="px-field-error" id="e-pay-amount">Too much</span>' in html
    assert '<select id="f-p" name="plan" aria-invalid="true" aria-describedby="e-p">' in html
    assert '<option value="1">&lt;b&gt;Basic&lt;/b&gt;</option>' in html
    assert '<option value="2" selected>Pro</option>' in html
