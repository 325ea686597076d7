#!/bin/sh
# The sample writer of docker-compose.yml: a few chat sessions, then a message every second
# (now and then an edit or a delete), so the dashboard shows changes flowing.
set -eu
export PGPASSWORD="$POSTGRES_PASSWORD"
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h postgres -U postgres -d chatbot"
until $PSQL -c 'SELECT 1' >/dev/null 2>&1; do sleep 1; done
$PSQL -c "INSERT INTO chat_sessions (session_id, user_id) SELECT ('a1b2c3d4-0000-4000-8000-00000000000' || g)::uuid, 'user' || g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING"
i=0
while true; do
  i=$((i + 1))
  s=$(( (i % 5) + 1 ))
  $PSQL -c "INSERT INTO chat_messages (session_id, role, content) VALUES ('a1b2c3d4-0000-4000-8000-00000000000$s', CASE WHEN $i % 2 = 0 THEN 'assistant' ELSE 'user' END, (ARRAY['How do I keep Qdrant in sync with Postgres?', 'Stream the WAL through a logical replication slot.', 'What happens when Qdrant is down?', 'Nothing is acknowledged until the write is durable.', 'Can I search old conversations by meaning?', 'Yes: every message is embedded as it is written.'])[1 + $i % 6] || ' (#$i)')"
  if [ $((i % 10)) -eq 0 ]; then
    $PSQL -c "UPDATE chat_messages SET content = content || ' (edited)' WHERE id = (SELECT max(id) - 3 FROM chat_messages)"
  fi
  if [ $((i % 25)) -eq 0 ]; then
    $PSQL -c "DELETE FROM chat_messages WHERE id = (SELECT min(id) FROM chat_messages)"
  fi
  sleep 1
done
