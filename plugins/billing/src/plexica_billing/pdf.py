"""The invoice as a PDF (fpdf2, core fonts: Latin-1 text, anything else replaced)."""

from __future__ import annotations

from plexica_billing.schemas import Customer, Invoice


def _latin1(value: object) -> str:
    return str(value).encode("latin-1", "replace").decode("latin-1")


def render_invoice(invoice: Invoice, customer: Customer) -> bytes:
    # fpdf2 and its image and font parsers are a fifth of the platform's start-up: loaded on
    # the first invoice rendered, not when the plugin is mounted.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Invoice {invoice.number or 'draft'}"))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(
        0, 10, _latin1(f"Invoice {invoice.number or '(draft)'}"), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, _latin1(customer.name), new_x="LMARGIN", new_y="NEXT")
    if invoice.issued_at:
        pdf.cell(0, 6, f"Issued {invoice.issued_at.date()}", new_x="LMARGIN", new_y="NEXT")
    if invoice.due_at:
        pdf.cell(0, 6, f"Due {invoice.due_at.date()}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    with pdf.table(col_widths=(70, 20, 30, 20, 30), text_align="LEFT") as table:
        table.row(["Description", "Qty", "Unit price", "Tax %", "Amount"])
        for line in invoice.lines:
            table.row(
                [
                    _latin1(line.description),
                    str(line.quantity),
                    str(line.unit_price),
                    str(line.tax_rate),
                    str(line.amount),
                ]
            )
    pdf.ln(4)
    totals = [("Subtotal", invoice.subtotal), ("Tax", invoice.tax), ("Total", invoice.total)]
    if invoice.credited:
        totals.append(("Credited", -invoice.credited))
    if invoice.status == "open":
        totals.append(("Amount due", invoice.amount_due))
    for label, value in totals:
        pdf.cell(
            0, 6, f"{label}: {value} {invoice.currency}", align="R", new_x="LMARGIN", new_y="NEXT"
        )
    if invoice.credit_notes:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, "Credit notes", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        with pdf.table(col_widths=(30, 25, 20, 65, 30), text_align="LEFT") as table:
            table.row(["Number", "Date", "Kind", "Reason", "Amount"])
            for note in invoice.credit_notes:
                table.row(
                    [
                        note.number,
                        str(note.created_at.date()),
                        note.kind,
                        _latin1(note.reason),
                        f"{note.amount} {note.currency}",
                    ]
                )
    return bytes(pdf.output())
