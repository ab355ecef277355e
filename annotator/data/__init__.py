"""The database: schema, the queue's writes, read models, migrations. Imports core and SQLAlchemy/pandas, never media or service."""
