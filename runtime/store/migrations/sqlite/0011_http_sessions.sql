-- MCP Streamable HTTP sessions (Mcp-Session-Id), shared by every
-- `sessionplane --http` instance on this database so that a client's next
-- request may land on any of them. principal..own_session identify the
-- token's principal (never the token); client_info, capabilities and
-- protocol_version are what initialize negotiated, re-applied by an
-- instance that did not see it. last_seen (ms) drives idle expiry.
CREATE TABLE http_sessions (
    id               TEXT PRIMARY KEY,
    principal        TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    preset           TEXT NOT NULL DEFAULT '',
    own_session      TEXT NOT NULL,
    protocol_version TEXT NOT NULL DEFAULT '',
    client_info      TEXT NOT NULL DEFAULT '',
    capabilities     TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL
);
CREATE INDEX http_sessions_last_seen ON http_sessions (last_seen);
