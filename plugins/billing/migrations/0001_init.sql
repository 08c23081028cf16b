CREATE TABLE billing_processed_events (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- One row per numbered series, locked by the transaction that issues an invoice: numbers
-- advance only when that transaction commits, so they have no gaps.
CREATE TABLE billing_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0 CHECK (value >= 0)
);
INSERT INTO billing_counters (name, value) VALUES ('invoice', 0);

CREATE TABLE billing_customers (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email text,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    crm_company_id uuid UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_customers_name ON billing_customers (lower(name));

CREATE TABLE billing_plans (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    code text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    pricing text NOT NULL CHECK (pricing IN ('flat', 'per_seat')),
    billing_interval text NOT NULL CHECK (billing_interval IN ('month', 'year')),
    price numeric(14, 2) NOT NULL CHECK (price >= 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    tax_rate numeric(5, 2) NOT NULL DEFAULT 0 CHECK (tax_rate BETWEEN 0 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing_subscriptions (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    customer_id uuid NOT NULL REFERENCES billing_customers (id),
    plan_id uuid NOT NULL REFERENCES billing_plans (id),
    status text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    quantity integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 1000000),
    -- Periods follow the first day's date (31 Jan, 28 Feb, 31 Mar), not the previous end.
    anchor date NOT NULL,
    current_period_start date NOT NULL,
    current_period_end date NOT NULL CHECK (current_period_end > current_period_start),
    canceled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_subscriptions_due ON billing_subscriptions (current_period_end)
    WHERE status IN ('active', 'past_due');
CREATE INDEX billing_subscriptions_customer ON billing_subscriptions (customer_id);

CREATE TABLE billing_invoices (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    customer_id uuid NOT NULL REFERENCES billing_customers (id),
    subscription_id uuid REFERENCES billing_subscriptions (id),
    period_start date,
    period_end date,
    crm_deal_id uuid UNIQUE,
    status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    number text UNIQUE,
    sequence bigint UNIQUE,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal numeric(14, 2) NOT NULL DEFAULT 0,
    tax numeric(14, 2) NOT NULL DEFAULT 0,
    total numeric(14, 2) NOT NULL DEFAULT 0,
    issued_at timestamptz,
    due_at timestamptz,
    paid_at timestamptz,
    voided_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A subscription's period is billed at most once: the invoice run's idempotency.
    UNIQUE (subscription_id, period_start),
    -- Drafts have no number (a voided draft never gets one); issued invoices always do.
    CHECK (status <> 'draft' OR number IS NULL),
    CHECK (status IN ('draft', 'void') OR number IS NOT NULL)
);
CREATE INDEX billing_invoices_status ON billing_invoices (status, created_at DESC);
CREATE INDEX billing_invoices_customer ON billing_invoices (customer_id);

CREATE TABLE billing_invoice_lines (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    invoice_id uuid NOT NULL REFERENCES billing_invoices (id) ON DELETE CASCADE,
    position integer NOT NULL,
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    quantity numeric(12, 2) NOT NULL CHECK (quantity > 0),
    unit_price numeric(14, 2) NOT NULL CHECK (unit_price >= 0),
    tax_rate numeric(5, 2) NOT NULL CHECK (tax_rate BETWEEN 0 AND 100),
    amount numeric(14, 2) NOT NULL,
    tax numeric(14, 2) NOT NULL,
    UNIQUE (invoice_id, position)
);

CREATE TABLE billing_payments (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    -- Invoices are paid in full, once: a second payment is refused by the service and here.
    invoice_id uuid NOT NULL UNIQUE REFERENCES billing_invoices (id),
    amount numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    provider text NOT NULL,
    reference text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
