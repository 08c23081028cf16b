-- 1.1: usage-based plans, proration of mid-period changes, usage records, credit notes.
-- Expand only: every column added is nullable or has a default, so 1.0 code keeps working.

ALTER TABLE billing_plans DROP CONSTRAINT billing_plans_pricing_check;
ALTER TABLE billing_plans ADD CONSTRAINT billing_plans_pricing_check
    CHECK (pricing IN ('flat', 'per_seat', 'usage'));

-- The plan and seats the current period's base line bills (NULL: the subscription's own).
-- A mid-period change keeps them and adds proration items; the next period starts afresh.
ALTER TABLE billing_subscriptions ADD COLUMN period_plan_id uuid REFERENCES billing_plans (id);
ALTER TABLE billing_subscriptions ADD COLUMN period_quantity integer
    CHECK (period_quantity BETWEEN 1 AND 1000000);

ALTER TABLE billing_invoice_lines ADD COLUMN kind text NOT NULL DEFAULT 'charge'
    CHECK (kind IN ('charge', 'proration', 'usage'));
-- Proration credits are negative lines; a period without usage is billed as zero units.
ALTER TABLE billing_invoice_lines DROP CONSTRAINT billing_invoice_lines_unit_price_check;
ALTER TABLE billing_invoice_lines ADD CONSTRAINT billing_invoice_lines_unit_price_check
    CHECK (unit_price >= 0 OR kind = 'proration');
ALTER TABLE billing_invoice_lines DROP CONSTRAINT billing_invoice_lines_quantity_check;
ALTER TABLE billing_invoice_lines ADD CONSTRAINT billing_invoice_lines_quantity_check
    CHECK (quantity > 0 OR (kind = 'usage' AND quantity = 0));

-- Proration items wait on their subscription until the invoice run bills its period.
CREATE TABLE billing_subscription_items (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    subscription_id uuid NOT NULL REFERENCES billing_subscriptions (id),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    amount numeric(14, 2) NOT NULL,
    tax_rate numeric(5, 2) NOT NULL CHECK (tax_rate BETWEEN 0 AND 100),
    invoice_id uuid REFERENCES billing_invoices (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscription_items_pending ON billing_subscription_items (subscription_id)
    WHERE invoice_id IS NULL;

CREATE TABLE billing_usage_records (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    subscription_id uuid NOT NULL REFERENCES billing_subscriptions (id),
    -- The client's key: a retried report is recorded once.
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    quantity numeric(12, 2) NOT NULL CHECK (quantity >= 0),
    -- The plan's unit price when the usage was reported: a later plan change does not reprice it.
    unit_price numeric(14, 2) NOT NULL CHECK (unit_price >= 0),
    tax_rate numeric(5, 2) NOT NULL CHECK (tax_rate BETWEEN 0 AND 100),
    occurred_at timestamptz NOT NULL,
    invoice_id uuid REFERENCES billing_invoices (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_usage_records_unbilled ON billing_usage_records (subscription_id, occurred_at)
    WHERE invoice_id IS NULL;

ALTER TABLE billing_invoices ADD COLUMN credited numeric(14, 2) NOT NULL DEFAULT 0
    CHECK (credited >= 0);

INSERT INTO billing_counters (name, value) VALUES ('credit_note', 0);

CREATE TABLE billing_credit_notes (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    invoice_id uuid NOT NULL REFERENCES billing_invoices (id),
    number text NOT NULL UNIQUE,
    sequence bigint NOT NULL UNIQUE,
    -- 'credit' lowers what an open invoice still asks; 'refund' gives back paid money.
    kind text NOT NULL CHECK (kind IN ('credit', 'refund')),
    amount numeric(14, 2) NOT NULL CHECK (amount > 0),
    tax numeric(14, 2) NOT NULL,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
CREATE INDEX billing_credit_notes_invoice ON billing_credit_notes (invoice_id);
