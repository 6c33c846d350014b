-- OutboundHQ backend: the one change to the hosted schema.
-- Run it in the Supabase SQL editor (or let `manage.py migrate` run it). Safe to run twice.
ALTER TABLE profiles
ADD COLUMN IF NOT EXISTS smartlead_api_key TEXT,
ADD COLUMN IF NOT EXISTS smartlead_email_account_id TEXT;
