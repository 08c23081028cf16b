-- An activity linked to both a contact and a deal keeps the link that is left when the other
-- record is deleted (ADR 0222); one linked to nothing else is deleted by the CRM before its
-- record, so the CHECK that an activity has a link still holds.
ALTER TABLE crm_activities
    DROP CONSTRAINT crm_activities_contact_id_fkey,
    ADD CONSTRAINT crm_activities_contact_id_fkey FOREIGN KEY (contact_id)
        REFERENCES crm_contacts (id) ON DELETE SET NULL,
    DROP CONSTRAINT crm_activities_deal_id_fkey,
    ADD CONSTRAINT crm_activities_deal_id_fkey FOREIGN KEY (deal_id)
        REFERENCES crm_deals (id) ON DELETE SET NULL;
