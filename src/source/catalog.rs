//! Catalog queries and setup on an ordinary (non-replication) connection: prerequisites,
//! primary keys, slot creation (the publication: `publication`), current rows for TOAST fallbacks, lag.

use crate::config::{SourceConfig, TableConfig, TlsMode};
use crate::error::Error;
use crate::event::{quote_ident, Column, Datum, Row, TableName};
use crate::lsn::{parse_lsn, Lsn};
use tokio_postgres::{Client, NoTls};

/// A row of `pg_replication_slots`, as far as health goes.
#[derive(Debug, Clone)]
pub struct SlotHealth {
    /// reserved, extended, unreserved or lost (None before the slot reserved WAL).
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is lost (None: no limit).
    pub safe_wal_size: Option<i64>,
    /// WAL held on the server for the slot.
    pub retained: Option<i64>,
}

/// Runs the connection's I/O in the background; the client stays.
fn drive<S, T>((client, conn): (Client, tokio_postgres::Connection<S, T>)) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "catalog connection closed");
        }
    });
    client
}

/// An open catalog connection.
pub struct Catalog {
    client: Client,
    /// Type names by oid, looked up once per connection (`fetch_row` casts key values).
    type_names: std::sync::Mutex<std::collections::HashMap<u32, String>>,
}

/// One line of `pg2qdrant check`.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

/// What the server says about our slot.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub confirmed_flush: Option<Lsn>,
    pub wal_status: Option<String>,
    pub active: bool,
    pub plugin: String,
}

impl Catalog {
    pub async fn connect(cfg: &SourceConfig) -> Result<Self, Error> {
        let mut pg: tokio_postgres::Config =
            cfg.url.parse().map_err(Error::pg("parse source.url"))?;
        let client = if cfg.tls == TlsMode::Disable {
            drive(pg.connect(NoTls).await.map_err(Error::pg("connect"))?)
        } else {
            // The same trust settings as the replication stream (`source::tls`); a server that
            // refuses TLS is an error, never plain text.
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            drive(
                pg.connect(super::tls::make_tls(cfg)?)
                    .await
                    .map_err(|e| super::tls::explain(cfg, e))?,
            )
        };
        Ok(Self {
            client,
            type_names: Default::default(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `server_version_num` (150004 for 15.4).
    pub async fn server_version_num(&self) -> Result<u32, Error> {
        let row = self
            .client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .map_err(Error::pg("server_version_num"))?;
        Ok(row.get::<_, i32>(0) as u32)
    }

    pub async fn wal_level(&self) -> Result<String, Error> {
        let row = self
            .client
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(Error::pg("SHOW wal_level"))?;
        Ok(row.get(0))
    }

    /// Whether the table exists, its replica identity (`d`, `n`, `f`, `i`) and primary key columns.
    pub async fn table_info(&self, t: &TableName) -> Result<Option<(char, Vec<String>)>, Error> {
        let row = self
            .client
            .query_opt(
                "SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(Error::pg(format!("look up table {t}")))?;
        let Some(row) = row else { return Ok(None) };
        let oid: u32 = row.get(0);
        let ident: String = row.get(1);
        let pk = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
                &[&oid],
            )
            .await
            .map_err(Error::pg(format!("primary key of {t}")))?;
        Ok(Some((
            ident.chars().next().unwrap_or('d'),
            pk.iter().map(|r| r.get(0)).collect(),
        )))
    }

    /// Resolves each table's key columns: the configured ones, else the primary key. Errors
    /// name the table and what to do.
    pub async fn resolve_keys(&self, tables: &[TableConfig]) -> Result<Vec<Vec<String>>, Error> {
        let mut keys = Vec::with_capacity(tables.len());
        for (i, t) in tables.iter().enumerate() {
            let name = TableName::parse(&t.table);
            let Some((ident, pk)) = self.table_info(&name).await? else {
                return Err(Error::prerequisite(
                    format!("tables[{i}].table: table {name} does not exist"),
                    "create it, or fix the name (schema.table)",
                ));
            };
            let key = match &t.key {
                Some(k) => k.clone(),
                None if !pk.is_empty() => pk.clone(),
                None => {
                    return Err(Error::prerequisite(
                        format!("tables[{i}].key: table {name} has no primary key"),
                        "add a primary key, or set key = [columns] and REPLICA IDENTITY FULL on the table",
                    ))
                }
            };
            // Deletes and key-changing updates carry only the replica identity columns.
            let usable = match ident {
                'f' => true,
                'd' => key.iter().all(|k| pk.contains(k)),
                _ => false,
            };
            if !usable {
                return Err(Error::prerequisite(
                    format!("tables[{i}]: replica identity of {name} does not include the key columns {key:?}"),
                    format!("run ALTER TABLE {} REPLICA IDENTITY FULL, or use the primary key as key", name.quoted()),
                ));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// The database's types that are not built in (domains, enums, arrays, pgvector, citext).
    pub async fn types(&self) -> Result<crate::mapping::types::Types, Error> {
        use crate::mapping::types::{TypeRow, Types, CATALOG_SQL};
        let rows = self
            .client
            .query(CATALOG_SQL, &[])
            .await
            .map_err(Error::pg("list types"))?;
        let rows: Vec<TypeRow> = rows.iter().map(type_row).collect();
        Ok(Types::from_catalog(&rows))
    }

    /// The type of each column of `table`, by name.
    /// Each column's type oid and type modifier (`atttypid`, `atttypmod`), as a Relation message
    /// gives them.
    pub async fn column_shapes(
        &self,
        table: &TableName,
    ) -> Result<std::collections::HashMap<String, (u32, i32)>, Error> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, a.atttypid, a.atttypmod FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(Error::pg(format!("column types of {table}")))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    pub async fn publication_tables(
        &self,
        publication: &str,
    ) -> Result<Option<Vec<TableName>>, Error> {
        let exists = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&publication],
            )
            .await
            .map_err(Error::pg("look up publication"))?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = self
            .client
            .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[&publication])
            .await
            .map_err(Error::pg("list publication tables"))?;
        Ok(Some(
            rows.iter()
                .map(|r| TableName {
                    schema: r.get(0),
                    name: r.get(1),
                })
                .collect(),
        ))
    }

    pub async fn slot_info(&self, slot: &str) -> Result<Option<SlotInfo>, Error> {
        let row = self
            .client
            .query_opt(
                "SELECT confirmed_flush_lsn::text, wal_status, active, plugin::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(Error::pg("look up slot"))?;
        Ok(row.map(|r| SlotInfo {
            confirmed_flush: r
                .get::<_, Option<String>>(0)
                .and_then(|s| parse_lsn(&s).ok()),
            wal_status: r.get(1),
            active: r.get(2),
            plugin: r.get::<_, Option<String>>(3).unwrap_or_default(),
        }))
    }

    /// Moves an inactive slot's confirmed position on to `lsn` (never back): `Ok(true)` when the
    /// slot is there at `lsn` or past it, `Ok(false)` while a stream still holds it; an error
    /// when the slot is gone.
    pub async fn advance_slot(&self, slot: &str, lsn: Lsn) -> Result<bool, Error> {
        let lsn = lsn.to_string();
        let row = self
            .client
            .query_opt(
                // CASE: the advance runs only on a slot that is behind and free, in this order.
                "SELECT CASE WHEN confirmed_flush_lsn >= $2::text::pg_lsn THEN true WHEN active THEN false \
                 ELSE pg_replication_slot_advance(slot_name, $2::text::pg_lsn) IS NOT NULL END \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &lsn],
            )
            .await
            .map_err(Error::pg(format!("advance slot {slot} to {lsn}")))?;
        match row {
            Some(r) => Ok(r.get::<_, Option<bool>>(0) == Some(true)),
            None => Err(Error::Prerequisite {
                what: format!("replication slot {slot} is gone"),
                hint: "the next start handles it as a lost slot".into(),
            }),
        }
    }

    /// Makes sure the slot exists and can resume. When changes were lost — the slot is `lost`
    /// (the WAL it needed is gone), or missing although the connector had streamed before
    /// (`had_progress`) — `on_loss` is called before a new slot is created (it must record
    /// durably that every table is to be copied again, so a failure after this point cannot
    /// forget it); with `recopy = false` that is an error instead, never a silent gap.
    pub async fn ensure_slot(
        &self,
        slot: &str,
        create: bool,
        had_progress: bool,
        recopy: bool,
        on_loss: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let lost = match self.slot_info(slot).await? {
            Some(info) if info.plugin != "pgoutput" => {
                return Err(Error::prerequisite(
                    format!("source.slot: slot {slot} uses plugin {}", info.plugin),
                    "use a pgoutput slot: drop it or choose another slot name",
                ))
            }
            Some(info) if info.wal_status.as_deref() == Some("lost") => Some(
                format!("source.slot: slot {slot} has wal_status = lost (WAL it needed was removed)"),
            ),
            Some(_) => return Ok(()),
            None if had_progress => Some(format!(
                "source.slot: slot {slot} is gone but the checkpoint shows the connector streamed from it"
            )),
            None => None,
        };
        if let Some(what) = lost {
            if !recopy {
                return Err(Error::prerequisite(
                    what,
                    "changes were lost: set source.snapshot_on_slot_loss = true to copy every table again, or delete the checkpoint files and drop the slot to start over (raise max_slot_wal_keep_size)",
                ));
            }
            tracing::error!(slot, problem = %what, "changes were missed: every table is copied again on a new slot");
            on_loss()?;
            self.client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(Error::pg("drop lost slot"))?;
        }
        if !create {
            return Err(Error::prerequisite(
                format!("source.slot: slot {slot} does not exist"),
                "create it with pg_create_logical_replication_slot(slot, 'pgoutput') or set source.create_slot = true",
            ));
        }
        let row = self
            .client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await
            .map_err(Error::pg("create slot"))?;
        let lsn: String = row.get(0);
        tracing::info!(slot, lsn = %lsn, "created replication slot");
        Ok(())
    }

    /// Where the next WAL record goes (`pg_current_wal_insert_lsn`): every transaction that
    /// commits after this call has a commit LSN at or above it.
    pub async fn wal_insert_lsn(&self) -> Result<Lsn, Error> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(Error::pg("pg_current_wal_insert_lsn"))?;
        parse_lsn(row.get(0)).map_err(|e| Error::prerequisite("pg_current_wal_insert_lsn", e))
    }

    pub async fn current_wal_lsn(&self) -> Result<Lsn, Error> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(Error::pg("pg_current_wal_lsn"))?;
        parse_lsn(row.get(0)).map_err(|e| Error::prerequisite("pg_current_wal_lsn", e))
    }

    /// The slot's health as PostgreSQL sees it, or None when the slot does not exist.
    pub async fn slot_health(&self, slot: &str) -> Result<Option<SlotHealth>, Error> {
        let row = self
            .client
            .query_opt(
                "SELECT wal_status, safe_wal_size, \
                        (pg_current_wal_lsn() - restart_lsn)::int8 \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(Error::pg("read pg_replication_slots"))?;
        Ok(row.map(|r| SlotHealth {
            wal_status: r.get(0),
            safe_wal_size: r.get(1),
            retained: r.get(2),
        }))
    }

    /// Writes a heartbeat into the WAL: a transactional logical message, so the stream gets a
    /// commit (with its time) even when no watched table changes (`pipeline::heartbeat`).
    pub async fn heartbeat(&self, prefix: &str) -> Result<(), Error> {
        self.client
            .execute("SELECT pg_logical_emit_message(true, $1, '')", &[&prefix])
            .await
            .map(drop)
            .map_err(Error::pg("heartbeat (pg_logical_emit_message)"))
    }

    /// The SQL name of a type (cached: the same keys are looked up row after row).
    pub async fn type_name(&self, oid: u32) -> Result<String, Error> {
        if let Some(n) = self.type_names.lock().expect("type names").get(&oid) {
            return Ok(n.clone());
        }
        let row = self
            .client
            .query_one("SELECT $1::oid::regtype::text", &[&oid])
            .await
            .map_err(Error::pg("type name"))?;
        let name: String = row.get(0);
        self.type_names
            .lock()
            .expect("type names")
            .insert(oid, name.clone());
        Ok(name)
    }

    /// The current row with the key of `key_row`, as text values aligned with `columns`; `None`
    /// when the row no longer exists. Used when a TOAST merge finds no point to merge into.
    pub async fn fetch_row(
        &self,
        table: &TableName,
        columns: &[Column],
        key: &[(String, String, u32)],
    ) -> Result<Option<Row>, Error> {
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(&c.name)))
            .collect();
        let mut types = Vec::with_capacity(key.len());
        for (_, _, oid) in key {
            types.push(self.type_name(*oid).await?);
        }
        let wheres: Vec<String> = key
            .iter()
            .zip(&types)
            .enumerate()
            .map(|(i, ((col, _, _), ty))| {
                format!("{} = ${}::text::{}", quote_ident(col), i + 1, ty)
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            select.join(", "),
            table.quoted(),
            wheres.join(" AND ")
        );
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = key
            .iter()
            .map(|(_, v, _)| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let row = self
            .client
            .query_opt(&sql, &params)
            .await
            .map_err(Error::pg(format!("fetch current row of {table}")))?;
        Ok(row.map(|r| Row {
            columns: columns.to_vec().into(),
            values: (0..columns.len())
                .map(|i| {
                    r.get::<_, Option<String>>(i)
                        .map_or(Datum::Null, Datum::Text)
                })
                .collect(),
        }))
    }

    /// The prerequisite checks of `pg2qdrant check`, one line each.
    pub async fn check(
        &self,
        source: &crate::config::SourceConfig,
        tables: &[crate::config::TableConfig],
    ) -> Vec<CheckLine> {
        let mut lines = Vec::new();
        let mut line =
            |ok: bool, what: String, detail: String| lines.push(CheckLine { ok, what, detail });
        match self.wal_level().await {
            Ok(l) if l == "logical" => line(true, "wal_level".into(), "logical".into()),
            Ok(l) => line(
                false,
                "wal_level".into(),
                format!("{l}: set wal_level = logical in postgresql.conf and restart"),
            ),
            Err(e) => line(false, "wal_level".into(), e.to_string()),
        }
        for (i, t) in tables.iter().enumerate() {
            let what = format!("tables[{i}] {}", t.table);
            match self.resolve_keys(std::slice::from_ref(t)).await {
                Ok(k) => line(true, what, format!("key {:?}", k[0])),
                Err(e) => line(false, what, e.to_string()),
            }
        }
        let slot = &source.slot;
        match self.slot_info(slot).await {
            Ok(None) if source.create_slot => line(
                true,
                format!("slot {slot}"),
                "missing; will be created at start".into(),
            ),
            Ok(None) => line(
                false,
                format!("slot {slot}"),
                "missing and source.create_slot = false".into(),
            ),
            Ok(Some(s)) if s.wal_status.as_deref() == Some("lost") => line(
                false,
                format!("slot {slot}"),
                "wal_status = lost: drop the slot and resync".into(),
            ),
            Ok(Some(s)) if s.plugin != "pgoutput" => line(
                false,
                format!("slot {slot}"),
                format!("plugin {} (need pgoutput)", s.plugin),
            ),
            Ok(Some(s)) => line(
                true,
                format!("slot {slot}"),
                format!(
                    "confirmed_flush_lsn {}, wal_status {}, {}",
                    s.confirmed_flush
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.wal_status.unwrap_or_else(|| "-".into()),
                    if s.active { "active" } else { "inactive" }
                ),
            ),
            Err(e) => line(false, format!("slot {slot}"), e.to_string()),
        }
        lines
    }
}

/// A row of [`CATALOG_SQL`](crate::mapping::types::CATALOG_SQL).
pub fn type_row(r: &tokio_postgres::Row) -> crate::mapping::types::TypeRow {
    let first = |i: usize| r.get::<_, String>(i).chars().next().unwrap_or(' ');
    crate::mapping::types::TypeRow {
        oid: r.get(0),
        name: r.get(1),
        typtype: first(2),
        base: r.get(3),
        element: r.get(4),
        category: first(5),
    }
}
