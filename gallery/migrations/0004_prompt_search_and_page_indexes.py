"""Indexes every gallery filter and page can use, and a prompt index for search.

- (user, role, -created_at, -id) replaces (user, role, -created_at): the gallery's full order, so
  a page (keyset or OFFSET) and the count read the index alone, with no sort;
- (conversation, -created_at, -id) replaces (conversation, created_at) for the conversation filter;
- (user, role, favorite, ...) and (user, role, model, ...) for those filters and their counts;
- prompt search: on SQLite an FTS5 table with the trigram tokenizer (substring matches, like the
  LIKE it narrows), kept in step by triggers; on PostgreSQL a pg_trgm GIN index on UPPER(prompt),
  which is what Django's icontains compares.
"""

from django.db import migrations, models

DELETE_ROW = (
    "INSERT INTO gallery_image_prompt(gallery_image_prompt, rowid, prompt) VALUES ('delete', old.rowid, old.prompt);"
)
SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE gallery_image_prompt USING fts5("
    "prompt, content='gallery_image', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER gallery_image_prompt_insert AFTER INSERT ON gallery_image BEGIN "
    "INSERT INTO gallery_image_prompt(rowid, prompt) VALUES (new.rowid, new.prompt); END",
    f"CREATE TRIGGER gallery_image_prompt_delete AFTER DELETE ON gallery_image BEGIN {DELETE_ROW} END",
    "CREATE TRIGGER gallery_image_prompt_update AFTER UPDATE OF prompt ON gallery_image BEGIN "
    f"{DELETE_ROW} INSERT INTO gallery_image_prompt(rowid, prompt) VALUES (new.rowid, new.prompt); END",
    "INSERT INTO gallery_image_prompt(gallery_image_prompt) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER gallery_image_prompt_update",
    "DROP TRIGGER gallery_image_prompt_delete",
    "DROP TRIGGER gallery_image_prompt_insert",
    "DROP TABLE gallery_image_prompt",
]
POSTGRESQL_FORWARD = [
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    'CREATE INDEX gallery_image_prompt ON gallery_image USING gin ((UPPER("prompt"::text)) gin_trgm_ops)',
]
POSTGRESQL_BACKWARD = ["DROP INDEX gallery_image_prompt"]


def prompt_index(forward: bool):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        vendor = schema_editor.connection.vendor
        statements = {
            ("sqlite", True): SQLITE_FORWARD,
            ("sqlite", False): SQLITE_BACKWARD,
            ("postgresql", True): POSTGRESQL_FORWARD,
            ("postgresql", False): POSTGRESQL_BACKWARD,
        }.get((vendor, forward), [])
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("gallery", "0003_lineage_and_boards")]

    operations = [
        migrations.RemoveIndex(model_name="image", name="gallery_ima_user_id_3e5eea_idx"),
        migrations.RemoveIndex(model_name="image", name="gallery_ima_convers_46bbd8_idx"),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(fields=["user", "role", "-created_at", "-id"], name="gallery_image_order"),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(fields=["conversation", "-created_at", "-id"], name="gallery_image_conversation"),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(
                fields=["user", "role", "favorite", "-created_at", "-id"], name="gallery_image_favorite"
            ),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(fields=["user", "role", "model", "-created_at", "-id"], name="gallery_image_model"),
        ),
        migrations.RunPython(prompt_index(True), prompt_index(False)),
    ]
