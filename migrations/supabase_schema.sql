-- OutboundHQ: the hosted Supabase schema the backend works on, as it stands before
-- DATABASE_MIGRATION.sql (the contract: ../shared/docs/supabase-schema.md).
--
-- Use it to bootstrap a fresh Supabase project (run it in the SQL editor, then
-- DATABASE_MIGRATION.sql), or a local/empty Postgres: `manage.py migrate` runs it for you
-- when the tables are missing. Idempotent: every statement is IF NOT EXISTS.

CREATE TABLE IF NOT EXISTS profiles (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text,
    first_name text,
    last_name text,
    role text DEFAULT 'sdr',
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

-- On Supabase a profile is its auth user; locally there is no auth schema.
DO $$
BEGIN
    IF to_regclass('auth.users') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_constraint WHERE conname = 'profiles_id_fkey'
    ) THEN
        ALTER TABLE profiles
            ADD CONSTRAINT profiles_id_fkey FOREIGN KEY (id) REFERENCES auth.users (id) ON DELETE CASCADE;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text,
    first_name text,
    last_name text,
    company text,
    title text,
    phone text,
    engagement_score integer DEFAULT 0,
    unsubscribed_at timestamptz,
    created_by uuid REFERENCES profiles (id),
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sequences (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    description text,
    status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    created_by uuid REFERENCES profiles (id),
    smartlead_campaign_id text,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sequence_steps (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_id uuid REFERENCES sequences (id) ON DELETE CASCADE,
    step_number integer NOT NULL,
    step_type text NOT NULL DEFAULT 'email' CHECK (step_type IN ('email', 'call')),
    subject text,
    body text,
    delay_days integer DEFAULT 0,
    delay_hours integer DEFAULT 0,
    call_objective text,
    call_script text,
    condition_previous_opened boolean DEFAULT false,
    condition_previous_clicked boolean DEFAULT false,
    condition_not_replied boolean DEFAULT false,
    UNIQUE (sequence_id, step_number)
);

CREATE TABLE IF NOT EXISTS sequence_enrollments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sequence_id uuid REFERENCES sequences (id) ON DELETE CASCADE,
    contact_id uuid REFERENCES contacts (id) ON DELETE CASCADE,
    enrolled_by uuid REFERENCES profiles (id),
    status text NOT NULL DEFAULT 'active' CHECK (status IN (
        'active', 'paused', 'completed', 'replied', 'bounced', 'unsubscribed', 'failed'
    )),
    current_step integer NOT NULL DEFAULT 1,
    next_send_at timestamptz DEFAULT now(),
    enrolled_at timestamptz DEFAULT now(),
    completed_at timestamptz,
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS engagements (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id uuid REFERENCES contacts (id) ON DELETE CASCADE,
    sequence_id uuid REFERENCES sequences (id) ON DELETE SET NULL,
    enrollment_id uuid REFERENCES sequence_enrollments (id) ON DELETE SET NULL,
    engagement_type text NOT NULL CHECK (engagement_type IN (
        'email_sent', 'email_opened', 'email_clicked', 'email_replied', 'email_bounced',
        'email_unsubscribed', 'lead_category_updated', 'call_scheduled'
    )),
    metadata jsonb DEFAULT '{}'::jsonb,
    engaged_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS calls (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contact_id uuid REFERENCES contacts (id),
    sequence_id uuid REFERENCES sequences (id),
    enrollment_id uuid REFERENCES sequence_enrollments (id),
    call_objective text,
    call_script text,
    status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'completed', 'skipped')),
    scheduled_at timestamptz,
    created_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS sequence_enrollments_status_next_send_at_idx
    ON sequence_enrollments (status, next_send_at);
CREATE INDEX IF NOT EXISTS sequence_enrollments_sequence_id_idx ON sequence_enrollments (sequence_id);
CREATE INDEX IF NOT EXISTS sequences_smartlead_campaign_id_idx ON sequences (smartlead_campaign_id);

ALTER TABLE profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE sequences ENABLE ROW LEVEL SECURITY;
ALTER TABLE sequence_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE sequence_enrollments ENABLE ROW LEVEL SECURITY;
ALTER TABLE engagements ENABLE ROW LEVEL SECURITY;
ALTER TABLE calls ENABLE ROW LEVEL SECURITY;
