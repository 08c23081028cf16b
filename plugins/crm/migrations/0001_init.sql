CREATE TABLE crm_companies (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domain text,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
CREATE INDEX crm_companies_name ON crm_companies (lower(name));

CREATE TABLE crm_contacts (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    company_id uuid REFERENCES crm_companies (id) ON DELETE SET NULL,
    first_name text NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
    last_name text NOT NULL DEFAULT '',
    email text,
    phone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
CREATE INDEX crm_contacts_name ON crm_contacts (lower(last_name), lower(first_name));
CREATE INDEX crm_contacts_company ON crm_contacts (company_id);

CREATE TABLE crm_stages (
    id text PRIMARY KEY,
    name text NOT NULL,
    position integer NOT NULL UNIQUE,
    is_won boolean NOT NULL DEFAULT false,
    is_lost boolean NOT NULL DEFAULT false
);
INSERT INTO crm_stages (id, name, position, is_won, is_lost) VALUES
    ('lead', 'Lead', 1, false, false),
    ('qualified', 'Qualified', 2, false, false),
    ('proposal', 'Proposal', 3, false, false),
    ('negotiation', 'Negotiation', 4, false, false),
    ('won', 'Won', 5, true, false),
    ('lost', 'Lost', 6, false, true);

CREATE TABLE crm_deals (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    amount numeric(14, 2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    currency text NOT NULL DEFAULT 'EUR',
    stage_id text NOT NULL REFERENCES crm_stages (id),
    company_id uuid REFERENCES crm_companies (id) ON DELETE SET NULL,
    contact_id uuid REFERENCES crm_contacts (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    created_by text NOT NULL
);
CREATE INDEX crm_deals_stage ON crm_deals (stage_id);

CREATE TABLE crm_activities (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    kind text NOT NULL CHECK (kind IN ('note', 'call', 'task')),
    subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    body text NOT NULL DEFAULT '',
    due_at timestamptz,
    done boolean NOT NULL DEFAULT false,
    contact_id uuid REFERENCES crm_contacts (id) ON DELETE CASCADE,
    deal_id uuid REFERENCES crm_deals (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    CHECK (contact_id IS NOT NULL OR deal_id IS NOT NULL)
);
CREATE INDEX crm_activities_contact ON crm_activities (contact_id);
CREATE INDEX crm_activities_deal ON crm_activities (deal_id);
