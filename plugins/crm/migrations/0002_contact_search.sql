ALTER TABLE crm_contacts ADD COLUMN search text GENERATED ALWAYS AS (
    lower(first_name || ' ' || last_name || ' ' || coalesce(email, ''))
) STORED;
CREATE INDEX crm_contacts_search ON crm_contacts (search text_pattern_ops);
