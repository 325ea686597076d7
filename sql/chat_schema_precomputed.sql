-- The chat schema of seed 004 with a precomputed embedding column (real[]), mirrored by
-- config/chat_history_precomputed.toml. sql/chat_schema.sql is seed 004 exactly (no embedding column).
CREATE TABLE IF NOT EXISTS chat_sessions (
  session_id uuid PRIMARY KEY,
  user_id varchar(255),
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS chat_sessions_user_id ON chat_sessions (user_id);

CREATE TABLE IF NOT EXISTS chat_messages (
  id bigserial PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES chat_sessions(session_id) ON DELETE CASCADE,
  role varchar(50) NOT NULL,
  content text NOT NULL,
  "timestamp" timestamp NOT NULL DEFAULT now(),
  vector_id varchar(255),
  embedding real[]
);
CREATE INDEX IF NOT EXISTS chat_messages_session_id ON chat_messages (session_id);
CREATE INDEX IF NOT EXISTS chat_messages_timestamp ON chat_messages ("timestamp");
CREATE INDEX IF NOT EXISTS chat_messages_vector_id ON chat_messages (vector_id);
