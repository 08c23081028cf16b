-- A version per company, contact and deal, bumped by every UPDATE of the row (the CRM's own,
-- a stage move, or a reference cleared by ON DELETE SET NULL): the ETag that If-Match is
-- compared with (ADR 0226). Existing rows start at 1; code that does not know the column is
-- unaffected (a constant default rewrites no table).
ALTER TABLE crm_companies ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE crm_contacts ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE crm_deals ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION crm_next_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER crm_companies_version BEFORE UPDATE ON crm_companies
    FOR EACH ROW EXECUTE FUNCTION crm_next_version();
CREATE TRIGGER crm_contacts_version BEFORE UPDATE ON crm_contacts
    FOR EACH ROW EXECUTE FUNCTION crm_next_version();
CREATE TRIGGER crm_deals_version BEFORE UPDATE ON crm_deals
    FOR EACH ROW EXECUTE FUNCTION crm_next_version();
