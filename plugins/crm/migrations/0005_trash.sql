-- Soft delete (ADR 0236): a deleted company, contact or deal stays for 30 days, in the trash,
-- with when and by whom; the rows that point at it are not changed (a restore brings the links
-- back), the CRM's reads hide the record and read a link to it as none. Past 30 days a delete
-- purges it for good, and the foreign keys then clear the links as before.
ALTER TABLE crm_companies ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by text;
ALTER TABLE crm_contacts ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by text;
ALTER TABLE crm_deals ADD COLUMN deleted_at timestamptz, ADD COLUMN deleted_by text;
CREATE INDEX crm_companies_trash ON crm_companies (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX crm_contacts_trash ON crm_contacts (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX crm_deals_trash ON crm_deals (deleted_at) WHERE deleted_at IS NOT NULL;
