-- Run once by the postgres image, on first start with an empty data volume
-- (/docker-entrypoint-initdb.d), as $POSTGRES_USER, which then owns both databases.
--
--   dagster          the Dagster instance: runs, event log, schedules, sensors (dagster.yaml,
--                    DAGSTER_POSTGRES_URL); Dagster creates its tables on first start.
--   vision_pipeline  the job records (VISION_PIPELINE_DATABASE_URL); its tables come from the
--                    Alembic migrations: `vision-pipeline db upgrade` (the first run also applies them).
--
-- Changing this file later has no effect on an existing volume: create a database by hand instead
-- (docker compose exec postgres createdb -U "$POSTGRES_USER" NAME).

CREATE DATABASE dagster;
CREATE DATABASE vision_pipeline;

-- Timestamps are stored with time zones; keep the sessions' zone fixed so plain SQL output is in UTC.
ALTER DATABASE dagster SET timezone TO 'UTC';
ALTER DATABASE vision_pipeline SET timezone TO 'UTC';
