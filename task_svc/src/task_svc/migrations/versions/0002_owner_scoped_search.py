"""Word search scoped to the task's owner in the index itself.

The GIN index of 0001 on (user_id, search) holds one posting list per word for
all users and intersects it with the user's, so a search for a common word cost
time in proportion to that word's frequency across every user. Here each search
lexeme is prefixed with a short key of the task's owner, so one index entry
holds one user's tasks with one word, and a search reads only the searching
user's entries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 8 hex digits keep index entries short. Two users sharing a key only share
    # index entries (each still filters on user_id), so a collision costs time,
    # never correctness.
    # SQL-standard bodies (RETURN / BEGIN ATOMIC) bind names when created, so
    # they work under the restricted search_path (pg_catalog, pg_temp) that
    # CREATE INDEX, ANALYZE and REINDEX run index expressions with.
    op.execute(
        "CREATE FUNCTION task_owner_key(user_id text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "RETURN left(md5(user_id), 8)"
    )
    # Built from the stored `search` column rather than from title, tags and
    # description again: the lexemes are the very ones ranking uses, and only the
    # cheap prefixing runs per row.
    op.execute(
        """
        CREATE FUNCTION owner_scoped_search(user_id text, search tsvector) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN array_to_tsvector(ARRAY(
            SELECT owner.key || lexeme
            FROM task_owner_key(user_id) AS owner(key), unnest(tsvector_to_array(search)) AS lexeme
        ))
        """
    )
    # The typed words as a query on owner_scoped_search: each word stemmed the
    # way to_tsquery('english', ...) stems it (same parser and dictionaries), every
    # lexeme required, the last word's as prefixes (search as you type). NULL when
    # no word has a lexeme (only stop words), which matches nothing. Lexemes are
    # quoted for tsquery input, so no typed character can act as an operator.
    op.execute(
        r"""
        CREATE FUNCTION owner_scoped_query(user_id text, words text[]) RETURNS tsquery
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        BEGIN ATOMIC
            SELECT string_agg(
                       '''' || replace(replace(owner.key || lexeme, '\', '\\'), '''', '''''') || ''''
                           || CASE WHEN typed.position = cardinality(words) THEN ':*' ELSE '' END,
                       ' & ')::tsquery
            FROM task_owner_key(user_id) AS owner(key),
                 unnest(words) WITH ORDINALITY AS typed(word, position),
                 unnest(tsvector_to_array(to_tsvector('english', typed.word))) AS lexeme;
        END
        """
    )
    # An index on an expression rather than a second stored column: no table
    # rewrite, and rows keep their size, so listings that read rows read no more
    # pages. The expression is computed when a row is written (and by ANALYZE);
    # a search reads it from the index and computes it again only where the
    # index cannot answer alone (a lossy bitmap page, a plan that filters a few
    # rows instead).
    # GIN's fast-update pending list is shared by all users and every search
    # reads all of it; 128 kB (instead of 4 MB) bounds that read to a few pages
    # while inserts still merge into the index in batches.
    op.execute(
        "CREATE INDEX tasks_owner_search ON tasks USING gin (owner_scoped_search(user_id, search)) "
        "WITH (gin_pending_list_limit = 128)"
    )
    # Searches no longer use it, and every write paid to maintain it.
    op.drop_index("tasks_user_search", table_name="tasks")
    # The tag filter's index has the same shared pending list: bound it alike,
    # so a tag filter does not slow down while other users create tasks.
    op.execute("ALTER INDEX tasks_user_tags SET (gin_pending_list_limit = 128)")


def downgrade() -> None:
    op.execute("ALTER INDEX tasks_user_tags RESET (gin_pending_list_limit)")
    op.create_index("tasks_user_search", "tasks", ["user_id", "search"], postgresql_using="gin")
    op.drop_index("tasks_owner_search", table_name="tasks")
    op.execute("DROP FUNCTION owner_scoped_query(text, text[])")
    op.execute("DROP FUNCTION owner_scoped_search(text, tsvector)")
    op.execute("DROP FUNCTION task_owner_key(text)")
