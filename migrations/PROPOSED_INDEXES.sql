-- OutboundHQ backend: indexes proposed for the hosted tables (not created by `migrate`).
--
-- The hosted schema has only the primary keys, unique constraints and the three indexes listed
-- in supabase-schema.md. These make the backend's remaining lookups index scans as the tables
-- grow. Run them in the Supabase SQL editor one statement at a time (CONCURRENTLY cannot run
-- inside a transaction block); each is safe to run again.

-- The executor judges step conditions (opened, clicked, replied) from an enrollment's
-- engagements, by enrollment and by contact within a sequence.
CREATE INDEX CONCURRENTLY IF NOT EXISTS engagements_enrollment_id_idx
    ON engagements (enrollment_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS engagements_contact_id_sequence_id_idx
    ON engagements (contact_id, sequence_id);

-- The webhook receiver finds the contact of an event by its email address, case-insensitively.
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_lower_email_idx
    ON contacts (lower(email));

-- Call tasks are looked up per enrollment (admin, why-not-sent).
CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_enrollment_id_idx
    ON calls (enrollment_id);

-- The webhook receiver resolves a lead to its enrollment in the event's sequence by contact.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sequence_enrollments_contact_id_idx
    ON sequence_enrollments (contact_id);
