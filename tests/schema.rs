//! Schema changes under a running connector (`mapping::schema`): payload columns follow; a column
//! the mapping needs (the vector, a row filter's, the embedded text's), renamed or dropped,
//! stops its table alone, names the column, and parks nothing. One scenario each.

use crate::harness::*;
use crate::recovery::{DIM, LOAD};
use crate::verify::verify;
use std::path::{Path, PathBuf};

/// A second table that must go on while the first one stops.
const KEEP: &str =
    "CREATE TABLE keep (id bigint PRIMARY KEY, title text NOT NULL, n int, v real[]);";

fn keep_row(id: i64) -> String {
    format!("INSERT INTO keep VALUES ({id}, 'row {id}', {id}, array_fill(1::real, ARRAY[{DIM}]));")
}

fn dead_letters_empty(config: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2qdrant"))
        .args(["dead-letter", "list", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing parked: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `pg2qdrant run` (a process, its log in a file) on a table under test beside `keep`, which
/// must go on while the other stops.
struct Watched {
    db: TestDb,
    config: PathBuf,
    log: PathBuf,
    run: Process,
}

impl Watched {
    /// Creates `schema` and `keep`, runs the connector on `tables` (the table under test, into
    /// the collection named after the test) and `keep`, then `seed` (giving `points` points)
    /// and keep's row 1, and waits for both.
    async fn start(name: &str, schema: &str, tables: &str, seed: &str, points: u64) -> Self {
        let db = TestDb::new(name, &format!("{schema}{KEEP}")).await;
        let keep = table("keep", &format!("{name}_keep"), DIM as u64, "");
        let config = work_dir(name).join("config.toml");
        std::fs::write(
            &config,
            db.config_text(&format!("{tables}{keep}"), &qdrant_url()),
        )
        .unwrap();
        let log = config.with_file_name("run.log");
        let run = Process::start("run", &config, "run.log");
        db.exec(&format!("{seed}{}", keep_row(1))).await;
        wait_count(name, points).await;
        wait_count(&format!("{name}_keep"), 1).await;
        Watched {
            db,
            config,
            log,
            run,
        }
    }

    /// Runs `ddl`, then `after` (changes of the table under test), then keep's row 2: once that
    /// row is in, the stream is past the table's changes. Asserts the table stopped (its log
    /// line names `column` and `field`), wrote nothing more (its collection still holds
    /// `points`), parked nothing, and that `keep` went on. Returns the log line.
    async fn stops_on(
        &self,
        ddl: &str,
        after: &str,
        points: u64,
        column: &str,
        field: &str,
    ) -> String {
        self.db.exec(ddl).await;
        self.db.exec(after).await;
        self.db.exec(&keep_row(2)).await;
        wait_count(&format!("{}_keep", self.db.name), 2).await;
        let said = self.logged("The table is stopped").await;
        let named = said.contains(&format!("column \"{column}\""))
            || said.contains(&format!("column \\\"{column}\\\""));
        assert!(
            named && said.contains(field),
            "the message names the column {column} and {field}: {said}"
        );
        assert_eq!(
            count(&self.db.name).await,
            points,
            "nothing written after the stop"
        );
        dead_letters_empty(&self.config);
        said
    }

    /// The first line of the connector's log holding `text` (waits for it).
    async fn logged(&self, text: &str) -> String {
        wait_for(text, WAIT, || async {
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains(text))
                .map(str::to_owned)
        })
        .await
    }
}

/// `docs` (ids 1..=`n`) in the collection named after the test.
fn docs_rows(n: i64) -> String {
    format!(
        "INSERT INTO docs SELECT g, 'row ' || g, g, array_fill(g::real, ARRAY[{DIM}]) FROM generate_series(1, {n}) g;"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_columns_added_renamed_retyped_and_dropped_under_a_writer_follow() {
    let db = TestDb::new(
        "t_schema_payload",
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, n int, v real[]);",
    )
    .await;
    let config = work_dir(&db.name).join("config.toml");
    std::fs::write(
        &config,
        db.config_text(&table("docs", &db.name, DIM as u64, ""), &qdrant_url()),
    )
    .unwrap();
    let run = db.start(pg2qdrant::config::load(&config).unwrap()).await;
    db.exec(&format!(
        "INSERT INTO docs SELECT g, 'row ' || g, g, array_fill(g::real, ARRAY[{DIM}]) FROM generate_series(1, 200) g"
    ))
    .await;
    wait_count(&db.name, 200).await;
    // The writer touches only the key and the vector, which no step changes.
    let writer = {
        let url = db.url.clone();
        tokio::spawn(async move {
            let c = connect(&url).await;
            for r in 0..60i64 {
                c.batch_execute(&format!(
                    "INSERT INTO docs (id, v) VALUES ({id}, array_fill({r}::real, ARRAY[{DIM}])) ON CONFLICT (id) DO NOTHING;
                     UPDATE docs SET v[1] = {r} WHERE id = {upd};",
                    id = 1_000 + r,
                    upd = r % 200 + 1,
                ))
                .await
                .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    assert_eq!(DIM, 8, "the rows below write 8 floats");
    for (ddl, then) in [
        (
            "ALTER TABLE docs ADD COLUMN color text DEFAULT 'red'",
            "INSERT INTO docs (id, v, color) VALUES (500, array_fill(1::real, ARRAY[8]), 'blue'); UPDATE docs SET color = 'green' WHERE id = 2",
        ),
        (
            "ALTER TABLE docs RENAME COLUMN title TO headline",
            "INSERT INTO docs (id, headline, v) VALUES (501, 'renamed', array_fill(1::real, ARRAY[8])); UPDATE docs SET headline = 'h' WHERE id = 3",
        ),
        (
            "ALTER TABLE docs ALTER COLUMN n TYPE text USING 'n' || n",
            "INSERT INTO docs (id, n, v) VALUES (502, 'text now', array_fill(1::real, ARRAY[8])); UPDATE docs SET n = 'x' WHERE id = 4",
        ),
        (
            "ALTER TABLE docs DROP COLUMN color",
            "INSERT INTO docs (id, v) VALUES (503, array_fill(1::real, ARRAY[8])); UPDATE docs SET n = 'y' WHERE id = 5",
        ),
    ] {
        db.exec(ddl).await;
        db.exec(then).await;
    }
    writer.await.unwrap();
    // Rows written after each change carry the new shape.
    let p = wait_for("the last row", WAIT, || point(&db.name, 503u64)).await;
    assert!(
        p.payload.get("color").is_none() && p.payload.get("title").is_none(),
        "{}",
        p.payload
    );
    let p = wait_for("row 4 retyped", WAIT, || async {
        point(&db.name, 4u64)
            .await
            .filter(|p| p.payload["n"] == "x")
    })
    .await;
    assert_eq!(p.payload["headline"], "row 4", "{}", p.payload);
    dead_letters_empty(&config);
    // Older points keep the old shape until verify --repair brings them to it.
    let (code, report) = verify(&config, &["--repair"]);
    assert_eq!(code, 0, "--repair fixed every drifted point: {report}");
    let (code, report) = verify(&config, &[]);
    assert_eq!(
        code, 0,
        "every row equals its point after --repair: {report}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_vector_column_stops_its_table_until_the_config_follows_and_a_resync() {
    let name = "t_schema_vector";
    let w = Watched::start(
        name,
        LOAD,
        &table("docs", name, DIM as u64, ""),
        &docs_rows(50),
        50,
    )
    .await;
    w.stops_on(
        "ALTER TABLE docs RENAME COLUMN v TO emb",
        &format!(
            "INSERT INTO docs VALUES (51, 'new', 51, array_fill(5::real, ARRAY[{DIM}]));
             UPDATE docs SET title = 'changed' WHERE id <= 10; DELETE FROM docs WHERE id = 50"
        ),
        50,
        "v",
        "vector.column",
    )
    .await;
    // The fix: the config names the column as it is now, a restart, a resync.
    let Watched {
        db, config, run, ..
    } = w;
    drop(run);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("column = \"v\"", "column = \"emb\"", 1),
    )
    .unwrap();
    let _run = Process::start("run", &config, "run2.log");
    cli_ok(&["resync", "--table", "docs"], &config);
    let state = config.with_file_name("checkpoint.snapshot.json");
    wait_for("the resync to finish", WAIT, || async {
        let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).ok()?).ok()?;
        let c = &s["tables"]["public.docs"];
        (c["reason"] == "resync" && c["status"] == "done").then_some(())
    })
    .await;
    wait_count(name, 50).await;
    let p = point(name, 1u64).await.expect("point 1");
    assert_eq!(p.payload["title"], "changed", "{}", p.payload);
    assert!(
        point(name, 50u64).await.is_none(),
        "the row deleted while stopped is swept"
    );
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_vector_column_stops_its_table_and_parks_nothing() {
    let name = "t_schema_vdrop";
    let w = Watched::start(
        name,
        LOAD,
        &table("docs", name, DIM as u64, ""),
        &docs_rows(1),
        1,
    )
    .await;
    w.stops_on(
        "ALTER TABLE docs DROP COLUMN v",
        "INSERT INTO docs VALUES (2, 'b', 2); UPDATE docs SET title = 'c' WHERE id = 1",
        1,
        "v",
        "vector.column",
    )
    .await;
}

/// `docs` filtered by `n > 0`, rows 1 (in) and 2 (out).
async fn filtered_docs(name: &str) -> Watched {
    Watched::start(
        name,
        &format!("{LOAD} ALTER TABLE docs REPLICA IDENTITY FULL;"),
        &table("docs", name, DIM as u64, "where = \"n > 0\""),
        &format!("{} UPDATE docs SET n = 0 WHERE id = 2;", docs_rows(2)),
        1,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_row_filter_column_stops_its_table() {
    let w = filtered_docs("t_schema_filter").await;
    w.stops_on(
        "ALTER TABLE docs RENAME COLUMN n TO level",
        &format!(
            "INSERT INTO docs VALUES (3, 'c', 5, array_fill(3::real, ARRAY[{DIM}])); UPDATE docs SET title = 'x' WHERE id = 1"
        ),
        1,
        "n",
        "where",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_filter_column_dropped_with_cascade_takes_the_table_out_of_the_publication_and_says_so(
) {
    let w = filtered_docs("t_schema_cascade").await;
    // PostgreSQL refuses to drop a column a publication's row filter reads, unless CASCADE,
    // which takes the table out of the publication: its changes stop arriving, silently.
    w.db.exec("ALTER TABLE docs DROP COLUMN n CASCADE").await;
    w.db.exec(&format!(
        "INSERT INTO docs VALUES (3, 'c', array_fill(2::real, ARRAY[{DIM}])); {}",
        keep_row(2)
    ))
    .await;
    wait_count(&format!("{}_keep", w.db.name), 2).await;
    let said = w.logged("is no longer in publication").await;
    assert!(
        said.contains("public.docs") && said.contains("resync"),
        "{said}"
    );
    assert_eq!(count(&w.db.name).await, 1);
    dead_letters_empty(&w.config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_embedded_text_column_stops_its_table() {
    let name = "t_schema_text";
    let notes = format!(
        "[[tables]]\ntable = \"notes\"\ncollection = \"{name}\"\n\
         vector = {{ embed = \"minilm\", text = \"{{title}}\\n{{body}}\", size = 384, distance = \"Cosine\" }}\n{}",
        crate::embedding::embedder_toml()
    );
    let w = Watched::start(
        name,
        crate::embedding::NOTES,
        &notes,
        "INSERT INTO notes VALUES (1, 'Password reset', 'How do I reset my password?', 1);",
        1,
    )
    .await;
    w.stops_on(
        "ALTER TABLE notes RENAME COLUMN body TO content",
        "INSERT INTO notes VALUES (2, 'Refunds', 'How long does a refund take?', 2); UPDATE notes SET content = 'edited' WHERE id = 1",
        1,
        "body",
        "vector.text",
    )
    .await;
}
