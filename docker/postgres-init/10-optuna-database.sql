-- Optuna's own database: the sweep workers' storage (docker-compose.yml, sweep-worker). Not MLflow's `mlflow`
-- database, because Optuna and MLflow both keep an `alembic_version` table there.
-- The postgres image runs this once, on an empty data volume. On an existing one, create it by hand:
--   docker compose exec postgres createdb -U mlflow optuna
CREATE DATABASE optuna;
