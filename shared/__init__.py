"""Code both the API and the workers import: settings, database, models, storage, job states."""
