-- OutboundHQ: the browser roles can no longer read (or write) profiles.smartlead_api_key.
--
-- WHEN TO RUN: in the Supabase SQL editor, once the web app connects Smartlead through the
-- backend (POST /api/smartlead/connection) and selects named columns from `profiles` (below).
-- Run it again after anything that adds a column to `profiles` or re-grants table privileges
-- (Supabase's dashboard and `GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated`
-- both do): a new column is not readable by the browser until this runs. Safe to run any number
-- of times. The backend connects as the table owner and is not affected.
--
-- WHY NOT JUST `REVOKE SELECT (smartlead_api_key) ON profiles FROM authenticated`: column
-- privileges only ever add to table privileges. Supabase grants SELECT on the whole table to
-- `anon` and `authenticated`, and a table-level SELECT covers every column, so a column REVOKE
-- changes nothing while it stands. The table-level SELECT has to go; SELECT is then granted back
-- column by column, on every column except the key. (A table-level REVOKE also drops any
-- column-level grants, which is what makes this script repeatable.)
--
-- UPDATE AND INSERT: `UPDATE … RETURNING smartlead_api_key`, or a WHERE clause that tests the
-- key, needs SELECT on the key, so the SELECT change alone stops reading it that way. But a
-- table-level UPDATE/INSERT would still let the browser *write* a key (or a mailbox id) the
-- backend never checked with Smartlead. The backend owns both Smartlead columns, so UPDATE and
-- INSERT are granted back on every other column only.
--
-- WHAT THE WEB APP MUST DO: name its columns. `select('*')` (and `.update(...).select()`) on
-- profiles now fails with "permission denied", because `*` includes the key. Row Level Security
-- still decides which rows a user sees; these grants decide which columns.
--
-- ALSO CHECK: a view over `profiles` runs with its owner's privileges by default, so a view that
-- selects the key would hand it to the browser; use `security_invoker = true` or leave the key
-- out of the view.

DO $$
DECLARE
    browser_role text;
    privilege text;
    allowed text;
BEGIN
    FOREACH browser_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        -- Projects without a role (a local database) have nothing to fix for it.
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = browser_role);
        FOREACH privilege IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE'] LOOP
            -- Only narrow what the role has; never grant what it was not given.
            CONTINUE WHEN NOT has_any_column_privilege(browser_role, 'public.profiles', privilege);
            SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
              INTO allowed
              FROM information_schema.columns
             WHERE table_schema = 'public'
               AND table_name = 'profiles'
               AND column_name <> 'smartlead_api_key'
               -- The browser may read which mailbox is chosen, but only the backend sets it.
               AND (privilege = 'SELECT' OR column_name <> 'smartlead_email_account_id');
            EXECUTE format('REVOKE %s ON public.profiles FROM %I', privilege, browser_role);
            EXECUTE format(
                'GRANT %s (%s) ON public.profiles TO %I', privilege, allowed, browser_role
            );
        END LOOP;
        -- A grant to PUBLIC, or to a role this one inherits from, would still let it read the
        -- key: stop (and roll back) rather than report success.
        IF has_column_privilege(browser_role, 'public.profiles', 'smartlead_api_key', 'SELECT')
        THEN
            RAISE EXCEPTION
                'Role % can still read profiles.smartlead_api_key through PUBLIC or an inherited '
                'role; revoke that grant and run this again.', browser_role;
        END IF;
    END LOOP;
END
$$;
